"""`styledrop demo`: the whole StyleDrop loop on a CPU in minutes.

With the built-in shapes-world base: a round-1 adapter learns a held-out style from one bundled reference,
and the demo shows and scores outputs with and without it against ground truth. Until that base is built, it
falls back to a tiny RANDOM base, which proves only that the pipeline runs end to end.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, ImageDraw

from .adapters.config import AdapterConfig
from .images import grid, save_png, to_pil
from .models.amused import load_base
from .models.tiny import build_tiny_base
from .pipeline import SampleConfig, full_prompt, sample_images
from .train import TrainConfig, train_adapter

CONTENT, STYLE = "a circle", "in striped style"
PROMPTS = ["a square", "a triangle", "a star", "a heart"]


def reference_image(size: int = 64) -> Image.Image:
    """A red circle with diagonal white stripes on a blue background: the demo's one style reference."""
    image = Image.new("RGB", (size, size), (40, 60, 160))
    stripes = Image.new("RGB", (size, size), (220, 40, 40))
    draw = ImageDraw.Draw(stripes)
    for offset in range(-size, size, 8):
        draw.line([(offset, 0), (offset + size, size)], fill=(250, 250, 250), width=3)
    mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(mask).ellipse([size // 8, size // 8, size - size // 8, size - size // 8], fill=255)
    image.paste(stripes, (0, 0), mask)
    return image


def run_demo(
    out_dir: str | Path = "styledrop-demo", steps: int | None = None, seed: int = 0, progress: bool = True
) -> dict:
    from .models.amused import TOY_BASE

    if (TOY_BASE / "transformer").is_dir():
        return run_toy_demo(out_dir, steps or TOY_STEPS, seed, progress)
    return run_pipeline_check(out_dir, steps or 60, seed, progress)


TOY_STYLE, TOY_STEPS = "candy", 300


def run_toy_demo(out_dir: str | Path, steps: int, seed: int, progress: bool) -> dict:
    """Round 1 on the bundled reference of a held-out style; grids and scores against ground truth."""
    from .models.amused import load_base
    from .toyworld.build import ASSETS
    from .toyworld.evaluate import evaluate_style, format_table, reference_image, side_by_side, train_round1
    from .toyworld.metrics import Ruler

    out_dir = Path(out_dir)
    base = load_base(None, "cpu")
    reference = reference_image(TOY_STYLE)
    save_png(reference, out_dir / "reference.png")
    train = TrainConfig(steps=steps, batch_size=8, lr=1e-3, seed=seed, checkpoint_every=max(1, steps // 2))
    adapter_dir = train_round1(
        base, TOY_STYLE, AdapterConfig(rank=4, shared=True), train, out_dir / "adapter", progress
    )
    report = evaluate_style(
        base, Ruler.load(ASSETS), TOY_STYLE, "train", SampleConfig(steps=12), per_prompt=2, seed=seed
    )
    # One row per content: the true render, two samples of the base with the descriptor, two with the adapter.
    save_png(side_by_side(report, per_prompt=2), out_dir / "side_by_side.png")
    return {
        "adapter": adapter_dir,
        "grid": out_dir / "side_by_side.png",
        "reference": out_dir / "reference.png",
        "scores": "\n" + format_table([report]),
    }


def run_pipeline_check(out_dir: str | Path, steps: int, seed: int, progress: bool) -> dict:
    """No toy base yet: a tiny random base, to show that training and guided sampling run end to end."""
    out_dir = Path(out_dir)
    base_dir = out_dir / "base"
    if not (base_dir / "model_index.json").is_file():
        build_tiny_base(base_dir, seed=seed)
    base = load_base(str(base_dir), "cpu")
    reference = reference_image()
    save_png(reference, out_dir / "reference.png")
    adapter_dir = train_adapter(
        base,
        [reference],
        [full_prompt(CONTENT, STYLE)],
        out_dir / "adapter",
        STYLE,
        AdapterConfig(rank=4, shared=True),
        TrainConfig(steps=steps, batch_size=4, lr=1e-3, seed=seed, checkpoint_every=max(1, steps // 2)),
        progress=progress,
    )
    sampling = SampleConfig(steps=12, style_scale=1.0, guidance=5.0)
    prompts = [full_prompt(p, STYLE) for p in PROMPTS for _ in range(2)]
    seeds = list(range(seed, seed + len(prompts)))
    with torch.no_grad():
        without = sample_images(base, None, prompts, seeds, sampling)
        with_adapter = sample_images(base, "train", prompts, seeds, sampling)
    # One row per prompt: two samples of the base with the descriptor, then two with the adapter.
    rows = []
    for i in range(len(PROMPTS)):
        rows += [to_pil(p) for p in without[2 * i : 2 * i + 2]] + [to_pil(p) for p in with_adapter[2 * i : 2 * i + 2]]
    save_png(grid(rows, columns=4), out_dir / "side_by_side.png")
    note = (
        "the base is a tiny random model built here (the shapes-world base is not built yet); this checks that "
        "training and guided sampling run end to end, not image quality"
    )
    return {
        "adapter": adapter_dir,
        "grid": out_dir / "side_by_side.png",
        "reference": out_dir / "reference.png",
        "note": note,
    }
