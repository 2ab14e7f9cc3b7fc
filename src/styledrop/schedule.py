"""The one mask schedule, shared by training (how much to mask) and sampling (how much to keep masked).

`progress` runs from 0 (nothing decoded, everything masked) to 1 (fully decoded). Muse/MaskGIT use the
cosine schedule: the masked fraction is cos(progress * pi / 2).
"""

from __future__ import annotations

import math

import torch


def mask_ratio(progress: torch.Tensor | float) -> torch.Tensor:
    """Fraction of tokens that are masked at `progress` in [0, 1]."""
    return torch.cos(torch.as_tensor(progress, dtype=torch.float32) * (math.pi / 2))


def training_mask_counts(progress: torch.Tensor, seq_len: int) -> torch.Tensor:
    """Tokens to mask for training samples drawn at `progress` (B,): at least one, at most all."""
    return (mask_ratio(progress) * seq_len).round().clamp(1, seq_len).long()


def masked_after_step(step: int, total_steps: int, masked_at_start: torch.Tensor) -> torch.Tensor:
    """Tokens that stay masked after decoding step `step` (0-based) of `total_steps`, per row of
    `masked_at_start` (B,): all tokens for generation, the re-masked part of an image for editing."""
    ratio = float(mask_ratio((step + 1) / total_steps))
    return (masked_at_start.double() * ratio).floor().long().clamp_min(0)
