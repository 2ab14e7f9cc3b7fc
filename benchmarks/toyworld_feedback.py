"""Iterative training in the shapes world: for every held-out style, round 1 against round 2 trained on images
selected from one shared pool by CLIP feedback, at random (the control), and by the oracle standing in for a
person (right shape and colour, closest style). Scored on text score, content accuracy, style score as a
fraction of the ceiling, and leakage. Appends to benchmarks/results/toyworld_feedback.jsonl and writes a grid
per style (rows: contents; columns: truth, then two samples of round 1 and of each round 2).

    .venv/bin/python benchmarks/toyworld_feedback.py [--styles candy ...] [--per-prompt 8] [--work DIR]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import append_result  # noqa: E402

from styledrop.adapters.config import AdapterConfig  # noqa: E402
from styledrop.feedback.picks import set_pick  # noqa: E402
from styledrop.feedback.rounds import ROUND2_ADAPTER, SelectConfig, refine, train_from_round  # noqa: E402
from styledrop.images import save_png  # noqa: E402
from styledrop.models.amused import load_base  # noqa: E402
from styledrop.pipeline import SampleConfig  # noqa: E402
from styledrop.toyworld.build import ASSETS  # noqa: E402
from styledrop.toyworld.evaluate import evaluate_style, oracle_picks, side_by_side, train_round1  # noqa: E402
from styledrop.toyworld.metrics import Ruler  # noqa: E402
from styledrop.toyworld.world import EVAL_STYLES  # noqa: E402
from styledrop.train import TrainConfig  # noqa: E402

RESULTS = Path(__file__).parent / "results"
ARMS = ("clip", "random", "oracle")
SHOWN = ("round1", *ARMS)


def round2(base, ruler, round_dir: Path, arm: str, config: TrainConfig, out: Path) -> Path:
    """Train round 2 on the arm's selection from the shared pool; returns the adapter's own folder."""
    if arm == "oracle":
        (round_dir / "picks.json").unlink(missing_ok=True)
        for file in oracle_picks(ruler, round_dir):
            set_pick(round_dir, file, True)
    selection = SelectConfig("human" if arm == "oracle" else arm)
    result = train_from_round(round_dir, selection, ROUND2_ADAPTER, config, base, progress=False)
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(result.adapter, out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--styles", nargs="*", default=list(EVAL_STYLES))
    parser.add_argument("--per-prompt", type=int, default=8, help="pool images per prompt")
    parser.add_argument("--eval-per-prompt", type=int, default=4)
    parser.add_argument("--round1-steps", type=int, default=TrainConfig.steps)
    parser.add_argument("--round2-steps", type=int, default=TrainConfig.steps)
    parser.add_argument("--work", default="benchmark-work/feedback", help="rounds and adapters (not committed)")
    args = parser.parse_args()

    base, ruler = load_base(None, "cpu"), Ruler.load(ASSETS)
    sample = SampleConfig(steps=12)
    round1_config = TrainConfig(steps=args.round1_steps, checkpoint_every=10**6)
    round2_config = TrainConfig(steps=args.round2_steps, checkpoint_every=10**6)
    work = Path(args.work)
    for name in args.styles:
        r1 = train_round1(base, name, AdapterConfig(), round1_config, work / name / "round1")
        round_dir = work / name / "round2"
        refine(r1, round_dir, None, args.per_prompt, 0, sample, SelectConfig("clip"), config=round2_config)
        adapters = {"round1": r1} | {a: round2(base, ruler, round_dir, a, round2_config, work / name / a) for a in ARMS}
        rows, images = {}, {}
        for arm, folder in adapters.items():
            base.load_adapter(folder, arm)
            report = evaluate_style(base, ruler, name, arm, sample, args.eval_per_prompt)
            rows[arm] = {**report.adapter, "style_fraction": report.fraction_of_ceiling("adapter")["style_score"]}
            images[arm] = report.images["adapter"]
            base.adapters.remove(arm)
        report.images.update(images)
        save_png(side_by_side(report, args.eval_per_prompt, rows=SHOWN), RESULTS / "toyworld_feedback" / f"{name}.png")
        record = {"style": name, **rows, "base": report.base, "ceiling": report.ceiling, "settings": vars(args)}
        append_result(RESULTS / "toyworld_feedback.jsonl", record)
        print(name)
        for arm, row in rows.items():
            print(f"  {arm:<8}" + "  ".join(f"{k} {v:.3f}" for k, v in row.items()))


if __name__ == "__main__":
    main()
