"""Merging a VQ codebook into fewer codes: k-means of the code vectors, each group decoded as its centroid.

The toy VQ's conv encoder picks among near-duplicate codes by a token's surroundings, so the exact code of a
2x2-pixel patch carries little signal for the U-ViT (benchmarks/toyworld_tokens.py). Merging keeps what the
oracle reads in a reconstruction (the family) and gives the U-ViT a target it can learn from context.
"""

from __future__ import annotations

import torch


def group_means(points: torch.Tensor, groups: torch.Tensor, k: int, empty: torch.Tensor) -> torch.Tensor:
    """(k, d) mean of each group's points; a group without points takes its row of `empty`."""
    sums = torch.zeros(k, points.shape[1], dtype=points.dtype).index_add_(0, groups, points)
    counts = torch.bincount(groups, minlength=k)[:, None]
    return torch.where(counts > 0, sums / counts.clamp_min(1), empty)


def kmeans(points: torch.Tensor, k: int, iterations: int, generator: torch.Generator) -> torch.Tensor:
    """(n, d) points -> (n,) group of each point."""
    centroids = points[torch.randperm(len(points), generator=generator)[:k]].clone()
    for _ in range(iterations):
        centroids = group_means(points, torch.cdist(points, centroids).argmin(1), k, centroids)
    return torch.cdist(points, centroids).argmin(1)


@torch.no_grad()
def merge_codebook(vq, k: int, seed: int, iterations: int = 30):
    """A copy of a diffusers VQModel whose codebook is the k-means centroids of vq's codes: it encodes every
    latent to the nearest centroid, so its tokens are the groups, and decodes a group as its centroid."""
    from diffusers import VQModel

    codes = vq.quantize.embedding.weight.detach().float()
    groups = kmeans(codes, k, iterations, torch.Generator().manual_seed(seed))
    merged = VQModel.from_config({**vq.config, "num_vq_embeddings": k})
    state = vq.state_dict()
    state["quantize.embedding.weight"] = group_means(codes, groups, k, codes[:k]).to(codes.dtype)
    merged.load_state_dict(state)
    return merged.eval()
