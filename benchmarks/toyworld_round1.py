"""For every held-out style of the shapes world: the base with the style descriptor vs StyleDrop round 1,
on content accuracy, text score, style score (oracle and CLIP), leakage, raw and as fractions of the ceiling
(true renders). Writes a grid per style, in a folder named after the settings that differ from the defaults
(`toyworld_round1/steps1000_decode_steps12/`), and appends the numbers to
benchmarks/results/toyworld_round1.jsonl.

    .venv/bin/python benchmarks/toyworld_round1.py [--steps N --lr LR --rank R --crop-scale S]
        [--style-scale LA --guidance LB --descriptor-guidance LD --decode-steps K --plausibility A]

Defaults are the library's (TrainConfig, AdapterConfig, SampleConfig), measured by benchmarks/toyworld_sweep.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import append_result  # noqa: E402

from styledrop.adapters.config import AdapterConfig  # noqa: E402
from styledrop.images import save_png  # noqa: E402
from styledrop.models.amused import load_base  # noqa: E402
from styledrop.pipeline import SampleConfig  # noqa: E402
from styledrop.toyworld.build import ASSETS  # noqa: E402
from styledrop.toyworld.evaluate import evaluate_style, format_table, side_by_side, train_round1  # noqa: E402
from styledrop.toyworld.metrics import Ruler  # noqa: E402
from styledrop.toyworld.world import EVAL_STYLES  # noqa: E402
from styledrop.train import TrainConfig  # noqa: E402

RESULTS = Path(__file__).parent / "results"
COUNTS = ("per_prompt", "styles")  # how much is measured, not how: they do not name the grids
# Named whenever they are on, whatever the default: the folders from before plausibility's default became 0.1
# are those of runs without it.
NAMED_WHEN_ON = ("plausibility",)


def settings_tag(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """The grids' folder: the settings that differ from the defaults, so that no run overwrites another's grids."""
    changed = [
        f"{k}{v:g}"
        for k, v in vars(args).items()
        if k not in COUNTS and (v != 0 if k in NAMED_WHEN_ON else v != parser.get_default(k))
    ]
    return "_".join(changed) or "defaults"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=TrainConfig.steps)
    parser.add_argument("--lr", type=float, default=TrainConfig.lr)
    parser.add_argument("--rank", type=int, default=AdapterConfig.rank)
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    parser.add_argument("--crop-scale", type=float, default=TrainConfig.crop_scale)
    parser.add_argument("--style-scale", type=float, default=SampleConfig.style_scale)
    parser.add_argument("--guidance", type=float, default=SampleConfig.guidance)
    parser.add_argument("--descriptor-guidance", type=float, default=SampleConfig.descriptor_guidance)
    parser.add_argument("--decode-steps", type=int, default=SampleConfig.steps)
    parser.add_argument("--temperature", type=float, default=SampleConfig.temperature)
    parser.add_argument("--plausibility", type=float, default=SampleConfig.plausibility)
    parser.add_argument("--per-prompt", type=int, default=4)
    parser.add_argument("--styles", nargs="*", default=list(EVAL_STYLES))
    args = parser.parse_args()

    base, ruler = load_base(None, "cpu"), Ruler.load(ASSETS)
    sample = SampleConfig(
        steps=args.decode_steps,
        temperature=args.temperature,
        style_scale=args.style_scale,
        guidance=args.guidance,
        descriptor_guidance=args.descriptor_guidance,
        plausibility=args.plausibility,
    )
    train = TrainConfig(
        steps=args.steps, lr=args.lr, batch_size=args.batch_size, crop_scale=args.crop_scale, checkpoint_every=10**6
    )
    grids = RESULTS / "toyworld_round1" / settings_tag(parser, args)
    reports = []
    for name in args.styles:
        train_round1(base, name, AdapterConfig(rank=args.rank), train)
        report = evaluate_style(base, ruler, name, "train", sample, args.per_prompt)
        reports.append(report)
        save_png(side_by_side(report, args.per_prompt), grids / f"{name}.png")
        record = {
            "style": name,
            "base": report.base,
            "styledrop": report.adapter,
            "ceiling": report.ceiling,
            "styledrop_fraction_of_ceiling": report.fraction_of_ceiling("adapter"),
            "base_fraction_of_ceiling": report.fraction_of_ceiling("base"),
            "settings": {**vars(args), "styles": None},
        }
        append_result(RESULTS / "toyworld_round1.jsonl", record)
    print(format_table(reports))
    mean = {k: sum(r.adapter[k] for r in reports) / len(reports) for k in reports[0].adapter}
    print("styledrop mean over styles:", {k: round(v, 3) for k, v in mean.items()})


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
