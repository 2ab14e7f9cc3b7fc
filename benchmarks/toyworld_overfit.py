"""Can the toy base's U-ViT draw a pattern family at all when it need not generalise? Its U-ViT is fine-tuned
until it has memorised a handful of scenes of one family, then asked for those same scenes.

Before and after fine-tuning: token accuracy of a one-pass argmax fill (toyworld_inpaint.fill) with every token
masked (the whole image from the prompt alone) and with 90%, 50% and 10% masked; the oracle's family read of the
fill from every token masked. Then each scene sampled from its own prompt (12 decoding steps, as
toyworld_base.py) at several text-guidance scales lB, each without and with the plausibility constraint
(`SampleConfig.plausibility`), with the oracle's family read. If the memorised U-ViT draws the family, the
sampler, the VQ decoder and the oracle all carry it, and what keeps the base from it is how its U-ViT generalises
over the family's continuous parameters. Appends to benchmarks/results/toyworld_overfit.jsonl and writes
benchmarks/results/toyworld_overfit_<family>_<n>.png (per scene: the true render, the fill from every token
masked, one sample per lB and plausibility).

    .venv/bin/python benchmarks/toyworld_overfit.py [--family striped] [--scenes 16] [--steps 400] [--lr 1e-3]
        [--guidance 0 1 5] [--plausibility 0 0.1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import append_result  # noqa: E402
from toyworld_inpaint import fill  # noqa: E402
from toyworld_world_finetune import finetune, world_scenes  # noqa: E402

from styledrop.images import grid, save_png, to_pil  # noqa: E402
from styledrop.models.amused import load_base  # noqa: E402
from styledrop.pipeline import SampleConfig, sample_images  # noqa: E402
from styledrop.toyworld.build import ASSETS  # noqa: E402
from styledrop.toyworld.metrics import Ruler, render_pixels  # noqa: E402
from styledrop.toyworld.render import FAMILIES  # noqa: E402

RESULTS = Path(__file__).parent / "results"
RATIOS = (1.0, 0.9, 0.5, 0.1)


def fills(base, ruler: Ruler, tokens: torch.Tensor, prompts: list[str], family: str) -> tuple[dict, torch.Tensor]:
    """Token accuracy of one-pass fills per masked ratio, the family read of the fill from every token masked,
    and that fill's pixels."""
    cond, generator, row = base.condition(prompts), torch.Generator().manual_seed(0), {}
    for ratio in RATIOS:
        filled, mask = fill(base, tokens, cond, ratio, generator)
        row[f"token_accuracy_masked_{ratio:g}"] = round(((filled == tokens) & mask).sum().item() / mask.sum().item(), 3)
        if ratio == 1.0:
            pixels = base.decode_tokens(filled)
    row["family_read_all_masked"] = ruler.family_hits(pixels, [family] * len(prompts)).float().mean().item()
    return row, pixels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=FAMILIES, default="striped")
    parser.add_argument("--scenes", type=int, default=16)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--guidance", type=float, nargs="+", default=[0.0, 1.0, 5.0])
    parser.add_argument("--plausibility", type=float, nargs="+", default=[0.0, 0.1])
    args = parser.parse_args()

    torch.manual_seed(0)
    base, ruler = load_base(None, "cpu"), Ruler.load(ASSETS)
    scenes = world_scenes("regular", args.scenes, seed=11, family=args.family)
    pixels = render_pixels(scenes)
    tokens, prompts = base.encode_images(pixels), [s.prompt(True) for s in scenes]
    before, _ = fills(base, ruler, tokens, prompts, args.family)
    print("before:", before, flush=True)
    start = time.time()
    loss = finetune(base, scenes, args.steps, args.lr, seed=7)
    minutes = (time.time() - start) / 60
    after, filled = fills(base, ruler, tokens, prompts, args.family)
    print("after:", after, flush=True)
    columns, sampled = [pixels, filled], {}
    for lb in args.guidance:
        for alpha in args.plausibility:
            config = SampleConfig(12, guidance=lb, batch_size=64, plausibility=alpha)
            images = sample_images(base, None, prompts, list(range(len(scenes))), config)
            key = f"lB {lb:g}, plausibility {alpha:g}"
            sampled[key] = ruler.family_hits(images, [args.family] * len(scenes)).float().mean().item()
            columns.append(images)
            print(f"sampled at {key}: family read {sampled[key]:.3f}", flush=True)
    cells = [to_pil(column[i]) for i in range(min(len(scenes), 16)) for column in columns]
    save_png(grid(cells, columns=2 * len(columns)), RESULTS / f"toyworld_overfit_{args.family}_{args.scenes}.png")
    record = {
        "before": before,
        "after": after,
        "final_loss": round(loss, 4),
        "train_minutes": round(minutes, 1),
        "sampled_family_read": sampled,
        "settings": vars(args),
    }
    append_result(RESULTS / "toyworld_overfit.jsonl", record)


if __name__ == "__main__":
    main()
