"""Which U-ViT target learns fastest? Fresh toy U-ViTs trained for the same wall time on the same scenes.

Variants (all with the VQ and text encoder of --base, the 2048-code base; only the U-ViT is trained):
- shipped: that base's U-ViT config (shipped until 2026-12-01), on the 2048 VQ codes;
- wide: the conv path widened from 64 to 256 channels (the 2x2 downsampling squeezes 4 tokens into one cell);
- merged256: the shipped config, on 256 groups of near-duplicate codes (the VQ's codebook merged by k-means,
  styledrop.toyworld.codebook; each group decodes as its centroid);
- merged256_fullres: merged256 plus one ConvNeXt block at the 16x16 token grid on each side of the 2x2
  down/up-sampling, joined by a skip (UViTConfig.full_resolution_blocks).

Every `--every` steps, on held-out scenes of the training regions: cross-entropy and accuracy of the masked
tokens at several masked fractions, and the accuracy at the level of the 256 groups, which compares the
variants on one scale. At the end, the base's bar (evaluate.base_quality: asked shape and colour on plain
prompts, named family honoured) on `--per-content` samples of every shape x colour. Appends the curves to
benchmarks/results/toyworld_uvit_ab.jsonl.

    .venv/bin/python benchmarks/toyworld_uvit_ab.py --variant shipped --minutes 10

The committed runs started from the base whose U-ViT predicted all 2048 codes (its VQ is the one merged here);
the shipped base has the merged VQ already, so to repeat them pass that earlier base:

    git archive c334695 src/styledrop/toyworld/assets | tar -x -C /tmp/v3-2048
    .venv/bin/python benchmarks/toyworld_uvit_ab.py --base /tmp/v3-2048/src/styledrop/toyworld/assets/base ...
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import append_result  # noqa: E402
from toyworld_tokens import group_logits  # noqa: E402

from styledrop.models.amused import AmusedBase, load_base  # noqa: E402
from styledrop.models.uvit import UViT  # noqa: E402
from styledrop.pipeline import SampleConfig  # noqa: E402
from styledrop.toyworld.build import ASSETS, BuildConfig, pool_tokens, scene_pool, uvit_data, uvit_step  # noqa: E402
from styledrop.toyworld.codebook import kmeans, merge_codebook  # noqa: E402
from styledrop.toyworld.evaluate import base_quality  # noqa: E402
from styledrop.toyworld.metrics import Ruler, render_pixels  # noqa: E402
from styledrop.toyworld.world import sample_scenes  # noqa: E402

RESULTS = Path(__file__).parent / "results"
WORK = Path(__file__).parent.parent / "toyworld-build"  # the build's pool cache (toyworld-build/data)
MERGED = {"codebook_size": 256, "vocab_size": 257}
VARIANTS = {
    "shipped": {},
    "wide": {"block_out_channels": 256},
    "merged256": MERGED,
    "merged256_fullres": {**MERGED, "full_resolution_blocks": 1},
}


@torch.no_grad()
def evaluate(base, tokens, cond, groups, merged: bool, ratios) -> dict:
    out = {}
    ids = groups[tokens] if merged else tokens
    for ratio in ratios:
        mask = torch.rand(tokens.shape, generator=torch.Generator().manual_seed(5)) < ratio
        target = ids.flatten(1)[mask.flatten(1)]
        logits = base.logits(torch.where(mask, base.mask_id, ids), cond)
        picked = logits[mask.flatten(1)]
        by_group = picked if merged else group_logits(picked, groups, 256)
        true_groups = target if merged else groups[target]
        out[f"{ratio:g}"] = {
            "cross_entropy": round(torch.nn.functional.cross_entropy(picked, target).item(), 3),
            "group_accuracy_256": round((by_group.argmax(-1) == true_groups).float().mean().item(), 3),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=sorted(VARIANTS), required=True)
    parser.add_argument("--base", default=None, help="the base whose VQ and text encoder the U-ViTs use")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--scenes", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--every", type=int, default=200)
    parser.add_argument("--ratios", type=float, nargs="*", default=[0.1, 0.5, 0.9, 1.0])
    parser.add_argument("--per-content", type=int, default=1, help="samples per shape x colour for the bar")
    args = parser.parse_args()

    torch.manual_seed(0)
    shipped = load_base(args.base, "cpu")
    if shipped.config.codebook_size <= 256:
        parser.error(f"the base has {shipped.config.codebook_size} codes: the variants need the 2048 (see above)")
    groups = kmeans(shipped.vqvae.quantize.embedding.weight, 256, 30, torch.Generator().manual_seed(0))
    config = BuildConfig(pool=args.scenes, uvit_batch=args.batch)
    scenes, renders = scene_pool(WORK, config)  # the build's first scenes (the same seed)
    changes = VARIANTS[args.variant]
    merged = changes.get("codebook_size") == 256
    vq = merge_codebook(shipped.vqvae, 256, seed=0) if merged else shipped.vqvae  # the same k-means as `groups`
    uvit = UViT(dataclasses.replace(shipped.config, **changes))
    base = AmusedBase(uvit, vq, shipped.text_encoder, shipped.tokenizer, source="ab")
    tokens, test_scenes = pool_tokens(base, renders), sample_scenes(256, seed=999)
    test_tokens = shipped.encode_images(render_pixels(test_scenes))
    test_cond = shipped.condition([s.prompt(True) for s in test_scenes])

    uvit.requires_grad_(True).train()
    optimizer = torch.optim.AdamW(uvit.parameters(), lr=config.uvit_lr, weight_decay=0.01)  # as the build
    data, generator = uvit_data(base, scenes, tokens, config), torch.Generator().manual_seed(2)
    curve, step, start = [], 0, time.time()
    while time.time() - start < args.minutes * 60:
        for group in optimizer.param_groups:
            group["lr"] = config.uvit_lr * min(1.0, (step + 1) / 200)
        uvit_step(base, data, optimizer, config, generator)
        step += 1
        if step % args.every == 0:
            uvit.eval()
            point = {"step": step, "seconds": round(time.time() - start)}
            point.update(evaluate(base, test_tokens, test_cond, groups, merged, args.ratios))
            uvit.train()
            curve.append(point)
            print(point, flush=True)
    uvit.eval()
    quality = base_quality(base, Ruler.load(ASSETS), args.per_content, SampleConfig(steps=12, batch_size=64))
    print({"plain": quality.plain, "family": quality.family}, flush=True)
    record = {
        "variant": args.variant,
        "changes": VARIANTS[args.variant],
        "parameters": sum(p.numel() for p in uvit.parameters()),
        "steps": step,
        "seconds_per_step": round((time.time() - start) / step, 3),
        "curve": curve,
        "bar": {"plain": quality.plain, "family": quality.family},
        "settings": vars(args),
    }
    append_result(RESULTS / "toyworld_uvit_ab.jsonl", record)


if __name__ == "__main__":
    main()
