"""styledrop: teach an open masked generative text-to-image model a style from one image (StyleDrop)."""

__version__ = "0.1.0"
