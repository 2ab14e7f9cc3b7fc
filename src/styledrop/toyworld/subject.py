"""A subject the toy base cannot draw from text, for "my object in my style": a two-tone square (yellow over
blue). No prompt names a two-tone shape, so only a subject adapter trained on a few photos of it can draw it.
Subject fidelity is read per image: the oracle sees a square, and the upper and lower halves of the image's
centre have the subject's two hues (hue survives every style's pattern ink, outline and palette shift).
"""

from __future__ import annotations

import colorsys

import numpy as np
import torch

from .metrics import Ruler, render_pixels
from .render import COLOURS, SHAPES, SIZE, Content, Scene, Style

SUBJECT = Content("square", "yellow", lower="blue")
TOKEN, CLASS_NOUN = "[V]", "square"
PROMPT = f"a {TOKEN} {CLASS_NOUN}"  # the subject's content prompt, c_t


def subject_scenes(n: int = 4, seed: int = 0, style: Style = Style()) -> list[Scene]:
    """n views of the subject in `style` (default: flat on white), each a little moved and resized."""
    rng = np.random.default_rng(seed)
    views = [
        Content(
            SUBJECT.shape,
            SUBJECT.colour,
            dx=float(rng.uniform(-2, 2)),
            dy=float(rng.uniform(-2, 2)),
            scale=float(rng.uniform(0.85, 1.1)),
            lower=SUBJECT.lower,
        )
        for _ in range(n)
    ]
    return [Scene(v, style) for v in views]


def _hue(rgb: np.ndarray) -> float:
    return colorsys.rgb_to_hsv(*(rgb / 255.0 if rgb.max() > 1 else rgb))[0] * 360.0


PALETTE_HUES = {name: _hue(np.asarray(rgb, dtype=float)) for name, rgb in COLOURS.items()}


def nearest_colour(mean_rgb: np.ndarray) -> str:
    """The palette colour whose hue is closest to that of (3,) RGB in [0, 1]."""
    hue = _hue(mean_rgb)
    return min(PALETTE_HUES, key=lambda name: min(abs(hue - PALETTE_HUES[name]), 360 - abs(hue - PALETTE_HUES[name])))


def half_colours(pixels: torch.Tensor) -> list[tuple[str, str]]:
    """(B, 3, 32, 32) -> per image, the nearest palette colour of the upper and of the lower centre band."""
    c, out = SIZE // 2, []
    for image in pixels.permute(0, 2, 3, 1).numpy():
        upper = image[c - 7 : c - 2, c - 5 : c + 5].reshape(-1, 3).mean(0)
        lower = image[c + 2 : c + 7, c - 5 : c + 5].reshape(-1, 3).mean(0)
        out.append((nearest_colour(upper), nearest_colour(lower)))
    return out


def subject_hits(ruler: Ruler, pixels: torch.Tensor) -> torch.Tensor:
    """(B,) bool: the image shows the subject (its shape, upper colour and lower colour)."""
    shape = ruler.oracle.predict(pixels)["shape"] == SHAPES.index(SUBJECT.shape)
    halves = torch.tensor([h == (SUBJECT.colour, SUBJECT.lower) for h in half_colours(pixels)])
    return shape & halves


def subject_fidelity(ruler: Ruler, pixels: torch.Tensor) -> float:
    return subject_hits(ruler, pixels).float().mean().item()


def subject_truth(style: Style, n: int = 8, seed: int = 1) -> torch.Tensor:
    """True renders of the subject in `style`: the ceiling of "my object in my style"."""
    return render_pixels(subject_scenes(n, seed, style))
