"""`styledrop demo`: the whole StyleDrop round 1 on a CPU in minutes, scored against ground truth.

A round-1 adapter learns a held-out style of the shapes world from one bundled reference render; the demo
draws new contents with and without it and scores both against the ceiling (true renders of the style).
"""

from __future__ import annotations

from pathlib import Path

from .adapters.config import AdapterConfig
from .images import save_png
from .pipeline import SampleConfig
from .train import TrainConfig

STYLE = "candy"  # a held-out style: the base never saw its parameter region
PER_PROMPT = 2


def run_demo(
    out_dir: str | Path = "styledrop-demo", steps: int | None = None, seed: int = 0, progress: bool = True
) -> dict:
    from .models.amused import load_base
    from .toyworld.build import ASSETS
    from .toyworld.evaluate import evaluate_style, format_table, reference_image, side_by_side, train_round1
    from .toyworld.metrics import Ruler

    out_dir = Path(out_dir)
    base = load_base(None, "cpu")
    save_png(reference_image(STYLE), out_dir / "reference.png")
    steps = steps or TrainConfig.steps
    train = TrainConfig(steps=steps, seed=seed, checkpoint_every=max(1, steps // 2))
    adapter_dir = train_round1(base, STYLE, AdapterConfig(), train, out_dir / "adapter", progress)
    report = evaluate_style(base, Ruler.load(ASSETS), STYLE, "train", SampleConfig(), PER_PROMPT, seed)
    # One row per content: the true render, then samples of the base with the descriptor, then with the adapter.
    save_png(side_by_side(report, PER_PROMPT), out_dir / "side_by_side.png")
    return {
        "adapter": adapter_dir,
        "grid": out_dir / "side_by_side.png",
        "reference": out_dir / "reference.png",
        "scores": "\n" + format_table([report]),
    }
