"""Random masking of image tokens: for the masked-token training objective, and for editing an image."""

from __future__ import annotations

import torch

from .draws import rand
from .schedule import training_mask_counts


def random_mask(tokens: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Boolean mask (B, N) with a cosine-schedule number of random positions set per row.

    tokens: (B, N) token ids; only the shape and device are used.
    """
    batch, seq_len = tokens.shape
    progress = rand((batch,), generator, tokens.device)
    counts = training_mask_counts(progress, seq_len)
    scores = rand((batch, seq_len), generator, tokens.device)
    # A position is masked when its random score ranks among the `count` smallest of its row.
    ranks = scores.argsort(dim=1).argsort(dim=1)
    return ranks < counts[:, None]


def apply_mask(tokens: torch.Tensor, mask: torch.Tensor, mask_id: int) -> torch.Tensor:
    return torch.where(mask, torch.full_like(tokens, mask_id), tokens)


def edit_mask(batch: int, seq_len: int, fraction: float, generators) -> torch.Tensor:
    """(B, N) mask of round(fraction * N) random positions per row (row b drawn from generators[b]): the part
    of an image that MaskGIT editing re-draws."""
    count = round(fraction * seq_len)
    rows = [torch.randperm(seq_len, generator=g, device=g.device)[:count].cpu() for g in generators]
    mask = torch.zeros(batch, seq_len, dtype=torch.bool)
    for b, positions in enumerate(rows):
        mask[b, positions] = True
    return mask
