"""Sampling the shapes world: which contents and styles the base sees, which are held out, and the named
held-out styles that StyleDrop is evaluated on."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from .render import BACKDROPS, COLOUR_NAMES, FAMILIES, INK, SHAPES, SIZE, Content, Scene, Style, render

# Parameter regions the base never sees. Each named evaluation style below lies inside one of them, so the
# base can draw its family but not its exact look: only an adapter can pin that down.
HELD_OUT = {
    "striped": ("angle", 50.0, 80.0),
    "checkered": ("period", 4.6, 5.4),
    "dotted": ("width", 0.72, 0.9),
    "gradient": ("angle", 200.0, 250.0),
    "hatched": ("angle", 35.0, 55.0),
    "grainy": ("grain", 0.33, 0.45),
}
HELD_OUT_HUE = (6.0, 10.0)

EVAL_STYLES = {
    "candy": Style(
        "striped", angle=65, period=6, width=0.5, ink="white", ink_strength=0.85, background="colour", backdrop="navy"
    ),
    "blueprint": Style(
        "checkered",
        period=5,
        ink="black",
        ink_strength=0.6,
        background="grid",
        backdrop="slate",
        outline="white",
        outline_width=1,
    ),
    "polka": Style(
        "dotted", period=7, width=0.8, ink="white", ink_strength=0.9, background="colour", backdrop="charcoal"
    ),
    "dusk": Style(
        "gradient",
        angle=225,
        ink="black",
        ink_strength=0.75,
        background="texture",
        backdrop="sand",
        hue_shift=8,
        seed=3,
    ),
    "etching": Style(
        "hatched",
        angle=45,
        period=5,
        width=0.35,
        ink="black",
        ink_strength=0.9,
        outline="black",
        outline_width=1,
        background="colour",
        backdrop="paper",
    ),
    "sandstorm": Style(
        "grainy",
        grain=0.4,
        ink="white",
        ink_strength=0.8,
        background="texture",
        backdrop="mint",
        brightness=0.9,
        seed=5,
    ),
}


def in_held_out_region(style: Style) -> bool:
    region = HELD_OUT.get(style.family)
    if region is not None:
        name, lo, hi = region
        if lo <= getattr(style, name) <= hi:
            return True
    return HELD_OUT_HUE[0] <= style.hue_shift <= HELD_OUT_HUE[1]


def sample_content(rng: np.random.Generator) -> Content:
    return Content(
        shape=SHAPES[rng.integers(len(SHAPES))],
        colour=COLOUR_NAMES[rng.integers(len(COLOUR_NAMES))],
        dx=float(rng.uniform(-2, 2)),
        dy=float(rng.uniform(-2, 2)),
        scale=float(rng.uniform(0.85, 1.1)),
    )


def pool_contents() -> list[Content]:
    """A feedback round's prompts: every shape in four colours, every colour four times (32 contents)."""
    return [
        Content(shape, COLOUR_NAMES[(i + 2 * j) % len(COLOUR_NAMES)])
        for i, shape in enumerate(SHAPES)
        for j in range(4)
    ]


def _draw_style(rng: np.random.Generator, family: str) -> Style:
    outline = str(rng.choice(["none", "none", *INK]))
    return Style(
        family=family,
        angle=float(rng.uniform(0, 360 if family == "gradient" else 180)),
        period=float(rng.uniform(3.5, 8.0)),
        width=float(rng.uniform(0.45, 0.9) if family == "dotted" else rng.uniform(0.3, 0.6)),
        ink=str(rng.choice(list(INK))),
        ink_strength=float(rng.uniform(0.5, 0.95)),
        grain=float(rng.uniform(0.15, 0.5)) if family == "grainy" else 0.0,
        outline=outline,
        outline_width=0.0 if outline == "none" else float(rng.choice([1.0, 2.0])),
        background=str(rng.choice(["plain", "colour", "grid", "texture"])),
        backdrop=str(rng.choice(list(BACKDROPS))),
        background_period=float(rng.uniform(4, 8)),
        hue_shift=float(rng.uniform(-10, 10)),
        brightness=float(rng.uniform(0.85, 1.1)),
        seed=int(rng.integers(1 << 30)),
    )


def sample_style(rng: np.random.Generator, family: str | None = None, held_out: bool = False) -> Style:
    """A random style of `family` (default: any), from the training regions or (held_out) from the held-out ones."""
    while True:
        fam = family or FAMILIES[rng.integers(len(FAMILIES))]
        style = _draw_style(rng, fam)
        if not held_out:
            if not in_held_out_region(style):
                return style
        elif fam in HELD_OUT:
            name, lo, hi = HELD_OUT[fam]
            return style.replace(**{name: float(rng.uniform(lo, hi))})
        else:
            return style.replace(hue_shift=float(rng.uniform(*HELD_OUT_HUE)))


def sample_scenes(n: int, seed: int, held_out: bool = False) -> list[Scene]:
    rng = np.random.default_rng(seed)
    return [Scene(sample_content(rng), sample_style(rng, held_out=held_out)) for _ in range(n)]


RENDER_CHUNK = 2_000  # scenes per worker process's task: fewer than two chunks render in this process


def render_serial(scenes: list[Scene]) -> np.ndarray:
    return np.stack([render(s) for s in scenes]) if scenes else np.zeros((0, SIZE, SIZE, 3), np.uint8)


def render_all(scenes: list[Scene]) -> np.ndarray:
    """(n, SIZE, SIZE, 3) uint8, in worker processes (one per core) when there are many: the build's 60k-scene
    pool takes minutes on one core. Each render depends on its scene alone, so the result is the same."""
    chunks = [scenes[i : i + RENDER_CHUNK] for i in range(0, len(scenes), RENDER_CHUNK)]
    workers = min(len(chunks), os.cpu_count() or 1)
    # fork, not spawn: spawn re-runs the caller's script in each worker. The workers only run numpy, so the
    # thread pools torch may have started in this process do not matter to them.
    if workers < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return render_serial(scenes)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        return np.concatenate(list(pool.map(render_serial, chunks)))


def random_textures(n: int, seed: int) -> np.ndarray:
    """(n, SIZE, SIZE, 3) uint8 of generic textures (any angle, period, colours) so the VQ model can represent
    looks the base never saw."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    out = np.empty((n, SIZE, SIZE, 3), np.uint8)
    for i in range(n):
        a, b = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
        angle, period = rng.uniform(0, np.pi), rng.uniform(2.5, 10)
        kind = rng.integers(4)
        along = x * np.cos(angle) + y * np.sin(angle)
        if kind == 0:
            t = ((along / period) % 1 < rng.uniform(0.2, 0.8)).astype(float)
        elif kind == 1:
            t = ((np.floor(x / period) + np.floor(y / period)) % 2).astype(float)
        elif kind == 2:
            t = (along - along.min()) / np.ptp(along)
        else:
            t = np.clip(rng.normal(0.5, rng.uniform(0.1, 0.5), (SIZE, SIZE)), 0, 1)
        image = a * (1 - t[..., None]) + b * t[..., None]
        out[i] = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    return out
