"""MaskGIT iterative parallel decoding over any function that returns logits.

Start from masked tokens (all of them to generate, some of an image's to edit it); at each of K steps predict
every masked token, sample it, keep the most confident predictions and re-mask the rest so that the cosine
schedule's count stays masked. Tokens are drawn from softmax(logits / token_temperature) (0: the most likely
one); confidence is perturbed by Gumbel noise whose temperature anneals to zero. Every draw of row b comes from
generators[b], so an image depends on its own seed only, not on what else is in the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from tqdm.auto import tqdm

from .schedule import masked_after_step

LogitsFn = Callable[[torch.Tensor], torch.Tensor]  # (B, N) token ids -> (B, N, V) logits


def row_uniform(generators: Sequence[torch.Generator], shape: tuple[int, ...], device) -> torch.Tensor:
    """(B, *shape) uniform noise, row b drawn from generators[b]."""
    rows = [torch.rand(shape, generator=g, device=g.device) for g in generators]
    return torch.stack(rows).to(device)


def gumbel(u: torch.Tensor) -> torch.Tensor:
    return -torch.log((-torch.log(u.clamp(1e-20, 1.0))).clamp_min(1e-20))


def sample_tokens(
    logits: torch.Tensor, generators: Sequence[torch.Generator], token_temperature: float = 1.0
) -> torch.Tensor:
    """(B, N, V) logits -> (B, N) ids drawn from softmax(logits / token_temperature) by the Gumbel-max trick,
    row b from generators[b]; the noise is made on the generators' device, so nothing leaves the GPU. The noise is
    drawn even at temperature 0, so that every setting consumes the generators alike."""
    noise = gumbel(row_uniform(generators, tuple(logits.shape[1:]), logits.device))
    return (logits + token_temperature * noise).argmax(dim=-1)


def remask_least_confident(confidence: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """(B, N) confidence, (B,) counts -> (B, N) mask of each row's `count` least confident positions."""
    ranks = confidence.argsort(dim=1).argsort(dim=1)
    return ranks < counts[:, None]


def decode(
    logits_fn: LogitsFn,
    tokens: torch.Tensor,
    mask_id: int,
    steps: int,
    temperature: float,
    generators: Sequence[torch.Generator],
    progress: bool = False,
    token_temperature: float = 1.0,
) -> torch.Tensor:
    """Fill the `mask_id` positions of tokens (B, N) in `steps` steps; returns (B, N) token ids."""
    if len(generators) != tokens.shape[0]:
        raise ValueError(f"need one generator per row: {len(generators)} for {tokens.shape[0]} rows")
    seq_len = tokens.shape[1]
    tokens = tokens.clone()
    masked_at_start = (tokens == mask_id).sum(dim=1)
    for step in tqdm(range(steps), desc="decoding", disable=not progress, leave=False):
        unknown = tokens == mask_id
        if not unknown.any():
            break
        logits = logits_fn(tokens).float()
        sampled = torch.where(unknown, sample_tokens(logits, generators, token_temperature), tokens)
        if step == steps - 1:
            return sampled
        chosen_logprob = logits.log_softmax(dim=-1).gather(-1, sampled[..., None])[..., 0]
        anneal = temperature * (1 - (step + 1) / steps)
        noise = gumbel(row_uniform(generators, (seq_len,), tokens.device))
        confidence = chosen_logprob + anneal * noise
        confidence = torch.where(unknown, confidence, torch.inf)  # decoded tokens are never re-masked
        # Keep at least one token masked until the last step, and unmask at least one per step (in rows with any).
        target = masked_after_step(step, steps, masked_at_start)
        left = unknown.sum(dim=1)
        counts = torch.where(left > 0, torch.minimum(left - 1, target).clamp_min(1), 0)
        tokens = torch.where(remask_least_confident(confidence, counts), mask_id, sampled)
    return tokens
