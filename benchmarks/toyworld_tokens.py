"""Why the toy U-ViT learns its tokens slowly: how predictable are the VQ tokens, and would fewer codes do?

1. Codebook use on training-region renders: unigram perplexity and distinct codes per image.
2. The U-ViT's cross-entropy and accuracy on masked tokens, for several masked fractions, with all tokens
   masked, and with the visible tokens replaced by random codes. If the loss barely depends on how much of
   the image is visible, the model predicts from the text and the position, not from the image's context.
3. Merged codebooks: k-means the 2048 code vectors into K groups and decode every code as its group's
   centroid. Reported per K: reconstruction PSNR on held-out styles and whether the oracle still reads the
   family from the reconstruction; a small K that keeps both is a cheaper target for the next U-ViT.

Appends to benchmarks/results/toyworld_tokens.jsonl. The committed results were measured on the base whose
U-ViT predicted all 2048 codes; the shipped base has the merged 256, so pass that earlier base with --base:

    git archive c334695 src/styledrop/toyworld/assets | tar -x -C /tmp/v3-2048
    .venv/bin/python benchmarks/toyworld_tokens.py --base /tmp/v3-2048/src/styledrop/toyworld/assets/base
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from common import append_result  # noqa: E402

from styledrop.models.amused import load_base  # noqa: E402
from styledrop.toyworld.build import ASSETS  # noqa: E402
from styledrop.toyworld.codebook import group_means, kmeans  # noqa: E402
from styledrop.toyworld.metrics import Ruler, render_pixels  # noqa: E402
from styledrop.toyworld.render import FAMILIES, Scene  # noqa: E402
from styledrop.toyworld.world import sample_content, sample_style  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def scenes_per_family(per_family: int, held_out: bool, seed: int) -> list[Scene]:
    rng = np.random.default_rng(seed)
    return [
        Scene(sample_content(rng), sample_style(rng, f, held_out=held_out)) for f in FAMILIES for _ in range(per_family)
    ]


def codebook_use(tokens: torch.Tensor, codebook_size: int) -> dict:
    counts = torch.bincount(tokens.flatten(), minlength=codebook_size).float()
    p = counts[counts > 0] / counts.sum()
    return {
        "unigram_perplexity": round(math.exp(-(p * p.log()).sum().item()), 1),
        "distinct_codes_per_image": round(float(np.mean([t.unique().numel() for t in tokens])), 1),
        "tokens_per_image": tokens[0].numel(),
    }


def group_logits(logits: torch.Tensor, groups: torch.Tensor, k: int) -> torch.Tensor:
    """(..., V) code logits -> (..., k) log-probability of each group of codes (logsumexp over its members)."""
    logp = logits.log_softmax(-1)
    onehot = F.one_hot(groups, k).to(logp.dtype)  # (V, k)
    peak = logp.amax(-1, keepdim=True)
    return ((logp - peak).exp() @ onehot).clamp_min(1e-30).log() + peak


@torch.no_grad()
def masked_prediction(
    base, tokens: torch.Tensor, cond, ratio: float, context: str, seed: int, groups: torch.Tensor | None = None
) -> dict:
    """Cross-entropy (nats) and accuracy on `ratio` of the tokens masked; context 'true' or 'random'.
    With groups (V,), also the accuracy of the predicted code's group (near-duplicate codes count as right)."""
    generator = torch.Generator().manual_seed(seed)
    mask = torch.rand(tokens.shape, generator=generator) < ratio
    visible = tokens if context == "true" else torch.randint_like(tokens, base.config.codebook_size)
    logits = base.logits(torch.where(mask, base.mask_id, visible), cond)
    picked, target = logits[mask.flatten(1)], tokens.flatten(1)[mask.flatten(1)]
    result = {
        "cross_entropy": round(F.cross_entropy(picked, target).item(), 3),
        "accuracy": round((picked.argmax(-1) == target).float().mean().item(), 3),
    }
    if groups is not None:
        k = int(groups.max()) + 1
        by_group = group_logits(picked, groups, k)
        result[f"group_accuracy_{k}"] = round((by_group.argmax(-1) == groups[target]).float().mean().item(), 3)
    return result


@torch.no_grad()
def merged_reconstruction(base, ruler, pixels, families, k: int | None, seed: int) -> dict:
    """Reconstruct through a codebook whose codes are replaced by their k-means group's centroid."""
    weight = base.vqvae.quantize.embedding.weight
    original = weight.clone()
    if k is not None:
        groups = kmeans(original, k, 30, torch.Generator().manual_seed(seed))
        weight.copy_(group_means(original, groups, k, original[:k])[groups])
    try:
        recon = base.decode_tokens(base.encode_images(pixels))
    finally:
        weight.copy_(original)
    mse = ((recon - pixels) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return {
        "psnr_db": round((10 * torch.log10(1 / mse)).mean().item(), 2),
        "family_read": round(ruler.family_accuracy(recon, families), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=None)
    parser.add_argument("--per-family", type=int, default=32)
    parser.add_argument("--ratios", type=float, nargs="*", default=[0.1, 0.5, 0.9, 1.0])
    parser.add_argument("--merge", type=int, nargs="*", default=[128, 256, 512])
    args = parser.parse_args()

    base, ruler = load_base(args.base, "cpu"), Ruler.load(ASSETS)
    if max([256, *args.merge]) >= base.config.codebook_size:
        parser.error(f"the base has {base.config.codebook_size} codes: nothing to merge into {max([256, *args.merge])}")
    train_scenes = scenes_per_family(args.per_family, held_out=False, seed=123)
    tokens = base.encode_images(render_pixels(train_scenes))
    cond = base.condition([s.prompt(True) for s in train_scenes])
    groups = kmeans(base.vqvae.quantize.embedding.weight, 256, 30, torch.Generator().manual_seed(0))
    record: dict = {"codebook": codebook_use(tokens, base.config.codebook_size), "masked": {}}
    record["codebook_256_groups"] = codebook_use(groups[tokens], 256)
    for ratio in args.ratios:
        record["masked"][f"{ratio:g} true context"] = masked_prediction(base, tokens, cond, ratio, "true", 0, groups)
    record["masked"]["0.1 random context"] = masked_prediction(base, tokens, cond, 0.1, "random", 0, groups)

    held_out = scenes_per_family(args.per_family, held_out=True, seed=456)
    held_pixels, held_families = render_pixels(held_out), [s.style.family for s in held_out]
    record["merged"] = {
        str(k or base.config.codebook_size): merged_reconstruction(base, ruler, held_pixels, held_families, k, 0)
        for k in [None, *args.merge]
    }
    record["settings"] = vars(args)
    append_result(RESULTS / "toyworld_tokens.jsonl", record)
    for section in ("codebook", "codebook_256_groups", "masked", "merged"):
        print(section, record[section])


if __name__ == "__main__":
    main()
