"""The shapes world: a seeded procedural renderer of (content, style) pairs with exact ground truth.

Content is a shape in a colour (with a little jitter in position and size). Style is a parametric look: a fill
pattern family with continuous parameters, an outline, a background and a palette shift. Families have names
used in prompts ("in striped style"), so a base model can learn "striped" the way a real model knows
"watercolor", while one specific striped look is something only an adapter can pin down.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

SIZE = 32
SUPERSAMPLE = 4

SHAPES = ("circle", "square", "triangle", "star", "heart", "cross", "ring", "diamond")
COLOURS = {
    "red": (215, 35, 35),
    "orange": (245, 130, 20),
    "yellow": (240, 220, 30),
    "green": (40, 165, 55),
    "cyan": (30, 200, 210),
    "blue": (35, 60, 215),
    "purple": (135, 50, 195),
    "pink": (245, 110, 185),
}
COLOUR_NAMES = tuple(COLOURS)
FAMILIES = ("flat", "striped", "checkered", "dotted", "gradient", "hatched", "grainy")
BACKGROUNDS = ("plain", "colour", "grid", "texture")
INK = {"white": (250, 250, 250), "black": (15, 15, 20), "grey": (110, 110, 115)}
BACKDROPS = {
    "paper": (245, 240, 228),
    "slate": (70, 80, 95),
    "navy": (20, 28, 60),
    "mint": (205, 235, 215),
    "sand": (225, 205, 165),
    "charcoal": (40, 40, 42),
}


def family_descriptor(family: str) -> str:
    """The words that name a style family in prompts, as "watercolor painting style" does in a real model's."""
    return f"in {family} style"


@dataclass(frozen=True)
class Content:
    shape: str
    colour: str
    dx: float = 0.0  # centre offset in pixels
    dy: float = 0.0
    scale: float = 1.0  # relative size
    lower: str | None = None  # a second colour for the lower half: a two-tone subject no prompt can name

    def prompt(self) -> str:
        return f"a {self.colour} {self.shape}"

    @classmethod
    def parse(cls, prompt: str) -> Content | None:
        """The content a prompt asks for ("a red star ..."), or None if it names no shape and colour."""
        words = prompt.lower().split()
        if len(words) >= 3 and words[0] == "a" and words[1] in COLOURS and words[2] in SHAPES:
            return cls(words[2], words[1])
        return None


@dataclass(frozen=True)
class Style:
    """One specific look. `family` is the named part; everything else is what an adapter must learn."""

    family: str = "flat"
    angle: float = 0.0  # degrees: stripe, hatch and gradient direction
    period: float = 6.0  # pixels: stripe/hatch period, checker cell, dot spacing
    width: float = 0.5  # fraction of the period covered by the pattern ink (dot radius for dots)
    ink: str = "white"  # the pattern's second colour
    ink_strength: float = 0.8  # how far the pattern pulls the shape colour toward the ink
    grain: float = 0.0  # per-pixel noise amplitude (family "grainy", and textures)
    outline: str = "none"  # "none" or an ink name
    outline_width: float = 0.0
    background: str = "plain"
    backdrop: str = "paper"
    background_period: float = 6.0  # grid spacing
    hue_shift: float = 0.0  # degrees, applied to the whole image
    brightness: float = 1.0
    seed: int = 0  # the grain/texture noise pattern

    def prompt_suffix(self) -> str:
        return family_descriptor(self.family)

    def replace(self, **changes) -> Style:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Scene:
    content: Content
    style: Style = field(default_factory=Style)

    def prompt(self, with_style: bool = True) -> str:
        return f"{self.content.prompt()} {self.style.prompt_suffix()}" if with_style else self.content.prompt()


# -- geometry ------------------------------------------------------------------------------------------------------
def _grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates of an n x n grid spanning the image, in image pixels."""
    c = (np.arange(n) + 0.5) * (SIZE / n)
    return np.meshgrid(c, c, indexing="xy")


def shape_mask(content: Content) -> np.ndarray:
    """(SIZE, SIZE) coverage in [0, 1] of the shape, antialiased by supersampling."""
    n = SIZE * SUPERSAMPLE
    x, y = _grid(n)
    r = 11.0 * content.scale
    u = (x - SIZE / 2 - content.dx) / r  # unit coordinates, y down
    v = (y - SIZE / 2 - content.dy) / r
    inside = _INSIDE[content.shape](u, v)
    return inside.reshape(SIZE, SUPERSAMPLE, SIZE, SUPERSAMPLE).mean(axis=(1, 3))


def _heart(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    x, y = u * 1.15, v * 1.15 + 0.25
    return (x**2 + y**2 - 1) ** 3 - x**2 * y**3 <= 0


# Each shape's test on unit coordinates, evaluated for the asked shape only (every scene's render calls it).
_INSIDE = {
    "circle": lambda u, v: np.hypot(u, v) <= 1.0,
    "square": lambda u, v: np.maximum(abs(u), abs(v)) <= 0.82,
    "diamond": lambda u, v: abs(u) + abs(v) <= 1.05,
    "ring": lambda u, v: ((rho := np.hypot(u, v)) <= 1.0) & (rho >= 0.58),
    "cross": lambda u, v: ((abs(u) <= 0.3) & (abs(v) <= 1.0)) | ((abs(v) <= 0.3) & (abs(u) <= 1.0)),
    "triangle": lambda u, v: (v <= 0.75) & (v >= -1.0 + 1.75 * abs(u) / 1.0) & (abs(u) <= 1.0),
    "star": lambda u, v: np.hypot(u, v) <= 0.5 + 0.5 * (0.5 + 0.5 * np.cos(5 * (np.arctan2(v, u) + np.pi / 2))) ** 2.2,
    "heart": lambda u, v: _heart(u, -v),
}


def outline_mask(coverage: np.ndarray, width: float) -> np.ndarray:
    """Coverage of a band of `width` pixels just outside the shape edge."""
    if width <= 0:
        return np.zeros_like(coverage)
    grown = coverage.copy()
    for _ in range(int(math.ceil(width))):
        padded = np.pad(grown, 1)
        grown = np.maximum.reduce(
            [padded[1:-1, 1:-1], padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]]
        )
    return np.clip(grown - coverage, 0, 1) * min(1.0, width)


# -- patterns --------------------------------------------------------------------------------------------------------
def pattern(style: Style, rng: np.random.Generator) -> np.ndarray:
    """(SIZE, SIZE) amount of pattern ink in [0, 1] over the shape, antialiased by supersampling."""
    if style.family == "grainy":
        return np.clip(rng.normal(0.5, 1.0, (SIZE, SIZE)) * style.grain * 2, 0, 1)
    n = SIZE * SUPERSAMPLE
    fine = _pattern_at(style, *_grid(n))
    return fine.reshape(SIZE, SUPERSAMPLE, SIZE, SUPERSAMPLE).mean(axis=(1, 3))


def _pattern_at(style: Style, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    a = math.radians(style.angle)
    along = x * math.cos(a) + y * math.sin(a)
    p = style.period
    if style.family == "flat":
        return np.zeros_like(x)
    if style.family == "striped":
        return ((along / p) % 1.0 < style.width).astype(float)
    if style.family == "checkered":
        return ((np.floor(x / p) + np.floor(y / p)) % 2).astype(float)
    if style.family == "dotted":
        gx, gy = (x % p) - p / 2, (y % p) - p / 2
        return (np.hypot(gx, gy) <= style.width * p / 2).astype(float)
    if style.family == "gradient":
        t = (along - along.min()) / max(1e-6, along.max() - along.min())
        return t
    if style.family == "hatched":
        across = -x * math.sin(a) + y * math.cos(a)
        return (((along / p) % 1.0 < style.width / 2) | ((across / p) % 1.0 < style.width / 2)).astype(float)
    raise ValueError(f"unknown style family {style.family!r}")


def background(style: Style, rng: np.random.Generator) -> np.ndarray:
    """(SIZE, SIZE, 3) background in [0, 1]."""
    white = np.ones((SIZE, SIZE, 3))
    if style.background == "plain":
        return white
    base = np.asarray(BACKDROPS[style.backdrop], dtype=float) / 255.0 * np.ones((SIZE, SIZE, 3))
    if style.background == "colour":
        return base
    if style.background == "grid":
        x, y = _grid(SIZE)
        lines = ((x % style.background_period) < 1.0) | ((y % style.background_period) < 1.0)
        line_colour = 1.0 - base[0, 0] * 0.6
        return np.where(lines[..., None], line_colour, base)
    if style.background == "texture":
        noise = rng.normal(0, 0.08, (SIZE, SIZE, 1))
        return np.clip(base + noise, 0, 1)
    raise ValueError(f"unknown background {style.background!r}")


def shift_palette(image: np.ndarray, hue_degrees: float, brightness: float) -> np.ndarray:
    """Rotate hues about the grey axis and scale brightness: a global colour cast."""
    if hue_degrees == 0 and brightness == 1.0:
        return image
    a = math.radians(hue_degrees)
    cos, sin = math.cos(a), math.sin(a)
    k = 1 / 3
    s3 = math.sqrt(k)
    m = np.array(
        [
            [cos + (1 - cos) * k, k * (1 - cos) - s3 * sin, k * (1 - cos) + s3 * sin],
            [k * (1 - cos) + s3 * sin, cos + k * (1 - cos), k * (1 - cos) - s3 * sin],
            [k * (1 - cos) - s3 * sin, k * (1 - cos) + s3 * sin, cos + k * (1 - cos)],
        ]
    )
    return np.clip(image @ m.T * brightness, 0, 1)


def render(scene: Scene) -> np.ndarray:
    """(SIZE, SIZE, 3) uint8 image of a scene. Deterministic: the style's seed drives all noise."""
    style, content = scene.style, scene.content
    rng = np.random.default_rng(style.seed)
    colour = np.asarray(COLOURS[content.colour], dtype=float) / 255.0 * np.ones((SIZE, SIZE, 3))
    if content.lower is not None:
        below = _grid(SIZE)[1] > SIZE / 2 + content.dy
        colour[below] = np.asarray(COLOURS[content.lower], dtype=float) / 255.0
    ink = np.asarray(INK[style.ink], dtype=float) / 255.0
    amount = pattern(style, rng)[..., None] * style.ink_strength
    fill = colour * (1 - amount) + ink * amount
    coverage = shape_mask(content)[..., None]
    image = background(style, rng) * (1 - coverage) + fill * coverage
    if style.outline != "none":
        band = outline_mask(coverage[..., 0], style.outline_width)[..., None]
        image = image * (1 - band) + np.asarray(INK[style.outline], dtype=float) / 255.0 * band
    image = shift_palette(image, style.hue_shift, style.brightness)
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
