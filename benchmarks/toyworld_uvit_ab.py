"""Which U-ViT target learns fastest? Fresh toy U-ViTs trained for the same wall time on the same scenes.

Variants (all with the VQ and text encoder of --base, the 2048-code base; only the U-ViT is trained):
- shipped: that base's U-ViT config (shipped until 2026-12-01), on the 2048 VQ codes;
- wide: the conv path widened from 64 to 256 channels (the 2x2 downsampling squeezes 4 tokens into one cell);
- merged256: the shipped config, on 256 groups of near-duplicate codes (the VQ's codebook merged by k-means,
  styledrop.toyworld.codebook; each group decodes as its centroid);
- merged256_wide: merged256 with the conv path at 256 channels, so the 2x2 downsampling can keep all four
  tokens of a cell (4 x 64 channels) instead of squeezing them into 64;
- merged256_flat: merged256 without the 2x2 down/up-sampling: its transformer layers see all 16x16 tokens,
  one position per token, as MaskGIT's transformer does;
- merged256_fullres: merged256 plus one ConvNeXt block at the 16x16 token grid on each side of the 2x2
  down/up-sampling, joined by a skip (UViTConfig.full_resolution_blocks);
- patch256: the merged256 U-ViT on local tokens: k-means of the 2x2-pixel patches themselves (PatchVQ: a token
  depends on its own 4 pixels only, and decodes as its centroid), where the VQ's conv encoder gives a flat
  region several codes by its distance to an edge. Any --base will do (only its text encoder is used).

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
from types import SimpleNamespace

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from common import append_result  # noqa: E402
from toyworld_tokens import codebook_use, group_logits  # noqa: E402
from toyworld_vq import psnr  # noqa: E402

from styledrop.images import array_to_tensor  # noqa: E402
from styledrop.models.amused import AmusedBase, load_base  # noqa: E402
from styledrop.models.uvit import UViT  # noqa: E402
from styledrop.pipeline import SampleConfig  # noqa: E402
from styledrop.toyworld.build import (  # noqa: E402
    ASSETS,
    DEFAULT_WORK,
    BuildConfig,
    encode_renders,
    scene_pool,
    uvit_data,
    uvit_step,
)
from styledrop.toyworld.codebook import group_means, kmeans, merge_codebook  # noqa: E402
from styledrop.toyworld.evaluate import base_quality  # noqa: E402
from styledrop.toyworld.metrics import Ruler, render_pixels  # noqa: E402
from styledrop.toyworld.world import random_textures, sample_scenes  # noqa: E402

RESULTS = Path(__file__).parent / "results"
WORK = Path(__file__).parent.parent / DEFAULT_WORK  # the build's pool cache (toyworld-build/data)
MERGED = {"codebook_size": 256, "vocab_size": 257}
VARIANTS = {
    "shipped": {},
    "wide": {"block_out_channels": 256},
    "merged256": MERGED,
    "merged256_fullres": {**MERGED, "full_resolution_blocks": 1},
    "merged256_wide": {**MERGED, "block_out_channels": 256},
    "merged256_flat": {**MERGED, "downsample": False, "upsample": False},
    "patch256": MERGED,
}


class PatchVQ(torch.nn.Module):
    """Local tokens: each 2x2-pixel patch (12 values) quantised to the nearest of k centroids, decoded as it.
    It offers what AmusedBase uses of a diffusers VQModel (encode, quantize, decode, config)."""

    def __init__(self, centroids: torch.Tensor):  # (k, 12)
        super().__init__()
        self.quantize = PatchQuantizer(centroids)
        self.config = SimpleNamespace(latent_channels=centroids.shape[1], block_out_channels=(0, 0))  # scale 2
        self.dtype = torch.float32

    @classmethod
    def fit(cls, pixels: torch.Tensor, k: int, points: int = 200_000, seed: int = 0) -> PatchVQ:
        """k-means of `points` random patches of pixels (B, 3, H, W)."""
        patches = F.pixel_unshuffle(pixels, 2).permute(0, 2, 3, 1).flatten(0, 2)
        generator = torch.Generator().manual_seed(seed)
        patches = patches[torch.randperm(len(patches), generator=generator)[:points]]
        groups = kmeans(patches, k, 30, generator)
        return cls(group_means(patches, groups, k, patches[:k]))

    def encode(self, pixels: torch.Tensor):
        return SimpleNamespace(latents=F.pixel_unshuffle(pixels, 2))

    def decode(self, indices: torch.Tensor, force_not_quantize: bool, shape: tuple[int, int, int, int]):
        b, h, w, c = shape
        latents = self.quantize.embedding.weight[indices].view(b, h, w, c).permute(0, 3, 1, 2)
        return SimpleNamespace(sample=F.pixel_shuffle(latents, 2))


class PatchQuantizer(torch.nn.Module):
    def __init__(self, centroids: torch.Tensor):
        super().__init__()
        self.embedding = torch.nn.Embedding.from_pretrained(centroids)

    def forward(self, latents: torch.Tensor):
        """-> diffusers' (quantized, loss, (perplexity, encodings, indices)) with only the indices filled in."""
        flat = latents.permute(0, 2, 3, 1).flatten(0, 2)
        chunks = flat.split(65536)
        indices = torch.cat([torch.cdist(c, self.embedding.weight).argmin(1) for c in chunks])
        return None, None, (None, None, indices)


@torch.no_grad()
def token_stats(base, pixels: torch.Tensor, families: list[str], ruler: Ruler) -> dict:
    """How hard the token language is: reconstruction PSNR and family read on it, how often a token equals its
    left neighbour, and how many distinct tokens an image uses."""
    tokens = base.encode_images(pixels)
    recon = base.decode_tokens(tokens)
    return {
        "psnr": round(psnr(recon, pixels), 2),
        "family_read_on_reconstruction": round(ruler.family_accuracy(recon, families), 3),
        "equals_left_neighbour": round((tokens[:, :, 1:] == tokens[:, :, :-1]).float().mean().item(), 3),
        "distinct_per_image": codebook_use(tokens, base.config.codebook_size)["distinct_codes_per_image"],
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
    shipped, ruler = load_base(args.base, "cpu"), Ruler.load(ASSETS)
    patch = args.variant == "patch256"
    if shipped.config.codebook_size <= 256 and not patch:
        parser.error(f"the base has {shipped.config.codebook_size} codes: the variants need the 2048 (see above)")
    config = BuildConfig(pool=args.scenes, uvit_batch=args.batch)
    scenes, renders = scene_pool(WORK, config)  # the build's first scenes (the same seed)
    changes = VARIANTS[args.variant]
    merged = changes.get("codebook_size") == 256
    if patch:
        groups = torch.arange(256)  # the tokens are the groups
        textures = array_to_tensor(random_textures(config.vq_textures // 5, seed=config.seed + 102))
        vq = PatchVQ.fit(torch.cat([array_to_tensor(renders[:5000]), textures]), 256)
    else:
        groups = kmeans(shipped.vqvae.quantize.embedding.weight, 256, 30, torch.Generator().manual_seed(0))
        vq = merge_codebook(shipped.vqvae, 256, seed=0) if merged else shipped.vqvae  # the k-means of `groups`
    uvit = UViT(dataclasses.replace(shipped.config, **changes))
    base = AmusedBase(uvit, vq, shipped.text_encoder, shipped.tokenizer, source="ab")
    tokens, test_scenes = encode_renders(base.vqvae, renders), sample_scenes(256, seed=999)
    test_pixels = render_pixels(test_scenes)
    test_tokens = (base if patch else shipped).encode_images(test_pixels)
    test_cond = shipped.condition([s.prompt(True) for s in test_scenes])
    stats = token_stats(base, test_pixels, [s.style.family for s in test_scenes], ruler)
    print(stats, flush=True)

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
    quality = base_quality(base, ruler, args.per_content, SampleConfig(steps=12, batch_size=64))
    print({"plain": quality.plain, "family": quality.family}, flush=True)
    record = {
        "variant": args.variant,
        "changes": VARIANTS[args.variant],
        "parameters": sum(p.numel() for p in uvit.parameters()),
        "steps": step,
        "seconds_per_step": round((time.time() - start) / step, 3),
        "tokens": stats,
        "curve": curve,
        "bar": {"plain": quality.plain, "family": quality.family},
        "settings": vars(args),
    }
    append_result(RESULTS / "toyworld_uvit_ab.jsonl", record)


if __name__ == "__main__":
    main()
