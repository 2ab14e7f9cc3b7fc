"""Round-1 defaults by measurement in the shapes world.

Stage 1 varies one training setting at a time (learning rate, steps, rank, batch size) around a centre;
stage 2 sweeps sampling (lA, lB, decoding steps, temperature) with the best training setting. Each setting is
scored on held-out styles by style score and content accuracy as fractions of the ceiling, and leakage; the
objective is their product style x content, which rewards style that does not copy the reference's content.
Appends every row to benchmarks/results/toyworld_sweep.jsonl.

    .venv/bin/python benchmarks/toyworld_sweep.py [--styles candy polka etching]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import append_result  # noqa: E402

from styledrop.adapters.config import AdapterConfig  # noqa: E402
from styledrop.models.amused import load_base  # noqa: E402
from styledrop.pipeline import SampleConfig  # noqa: E402
from styledrop.toyworld.build import ASSETS  # noqa: E402
from styledrop.toyworld.evaluate import evaluate_style, train_round1  # noqa: E402
from styledrop.toyworld.metrics import Ruler  # noqa: E402
from styledrop.train import TrainConfig  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "toyworld_sweep.jsonl"
# Centred on today's defaults, so that a re-run checks them (runs before 2026-12-04 were centred on crop scale
# 1.15 and sampled without the plausibility constraint: their rows say so). Decoding steps 12, not the 36 that
# real bases need: enough on the toy base (the sweep's row for 24 steps).
CENTRE_TRAIN = {
    "lr": TrainConfig.lr,
    "steps": TrainConfig.steps,
    "rank": AdapterConfig.rank,
    "batch_size": TrainConfig.batch_size,
    "crop_scale": TrainConfig.crop_scale,
}
CENTRE_SAMPLE = {
    "style_scale": SampleConfig.style_scale,
    "guidance": SampleConfig.guidance,
    "steps": 12,
    "temperature": SampleConfig.temperature,
    "plausibility": SampleConfig.plausibility,
}
# The values tried for each setting, the centre's among them (skipped: the centre runs once).
TRAIN_GRID = {
    "lr": [3e-4, 1e-3, 3e-3],
    "steps": [100, 300, 1000],
    "rank": [2, 4, 8],
    "batch_size": [4, 8, 16],
    "crop_scale": [1.0, 1.15, 1.5],  # 1.5: shifts of up to two whole tokens
}
SAMPLE_GRID = {
    "style_scale": [0.0, 0.5, 1.0, 2.0, 3.0],
    "guidance": [1.0, 3.0, 5.0, 8.0],
    "steps": [8, 12, 24],
    "temperature": [1.0, 2.5, 4.5],
    "plausibility": [0.0, 0.03, 0.1, 0.3],
}


def style_rows(base, ruler, name: str, train: dict, samples: list[dict], per_prompt: int) -> list[dict]:
    """Train one round-1 adapter for a style, then score it under each sampling setting."""
    config = TrainConfig(
        steps=train["steps"],
        lr=train["lr"],
        batch_size=train["batch_size"],
        crop_scale=train["crop_scale"],
        checkpoint_every=10**6,
    )
    train_round1(base, name, AdapterConfig(rank=train["rank"]), config)
    rows = []
    for sample in samples:
        report = evaluate_style(base, ruler, name, "train", SampleConfig(**sample), per_prompt)
        frac = report.fraction_of_ceiling("adapter")
        rows.append(
            {"style": frac["style_score"], "content": frac["content_accuracy"], "leakage": report.adapter["leakage"]}
        )
    return rows


def summarise(rows: list[dict]) -> dict:
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}
    return {**mean, "objective": mean["style"] * mean["content"]}


def variations(centre: dict, grid: dict):
    """The centre, then one setting changed at a time."""
    yield dict(centre)
    for key, values in grid.items():
        for value in values:
            if value != centre[key]:
                yield {**centre, key: value}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--styles", nargs="*", default=["candy", "polka", "etching"])
    parser.add_argument("--per-prompt", type=int, default=2)
    args = parser.parse_args()
    base, ruler = load_base(None, "cpu"), Ruler.load(ASSETS)

    best_train, best = CENTRE_TRAIN, -1.0
    for train in variations(CENTRE_TRAIN, TRAIN_GRID):
        rows = [style_rows(base, ruler, name, train, [CENTRE_SAMPLE], args.per_prompt)[0] for name in args.styles]
        result = summarise(rows)
        append_result(
            RESULTS, {"stage": "train", "train": train, "sample": CENTRE_SAMPLE, "styles": args.styles, **result}
        )
        print("train", train, {k: round(v, 3) for k, v in result.items()})
        if result["objective"] > best:
            best_train, best = train, result["objective"]
    samples = list(variations(CENTRE_SAMPLE, SAMPLE_GRID))
    per_style = [style_rows(base, ruler, name, best_train, samples, args.per_prompt) for name in args.styles]
    for sample, rows in zip(samples, zip(*per_style, strict=True), strict=True):
        result = summarise(list(rows))
        append_result(
            RESULTS, {"stage": "sample", "train": best_train, "sample": sample, "styles": args.styles, **result}
        )
        print("sample", sample, {k: round(v, 3) for k, v in result.items()})


if __name__ == "__main__":
    main()
