"""Guidance as linear combinations of model evaluations, all branches in ONE batched forward pass.

A guided logit is `sum_k w_k * G(prompt_k, adapter_k)`. With G the base, Gs the style adapter, t the prompt
and n the negative prompt (paper, equations 1 and 4):

  text guidance (CFG):  G(t) + lB (G(t) - G(n))                      = (1+lB) G(t) - lB G(n)
  StyleDrop:            Gs(t) + lA (Gs(t) - G(t)) + lB (G(t) - G(n)) = (1+lA) Gs(t) + (lB-lA) G(t) - lB G(n)

Terms with the same (prompt, adapter) are merged and zero weights dropped, so lA = lB = 0 costs one branch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from .models.amused import Conditioning

# (tokens (B, h, w), conditioning with B rows, adapter route) -> (B, N, V) logits
ModelFn = Callable[[torch.Tensor, Conditioning, list], torch.Tensor]


@dataclass(frozen=True)
class Term:
    weight: float
    prompt: str  # a key into the conditionings: "text", "negative", ...
    adapter: str | None  # None = the base alone


def text_guidance(scale: float) -> list[Term]:
    return merge([Term(1 + scale, "text", None), Term(-scale, "negative", None)])


def styledrop_guidance(adapter: str, style_scale: float, text_scale: float) -> list[Term]:
    return merge(
        [
            Term(1 + style_scale, "text", adapter),
            Term(text_scale - style_scale, "text", None),
            Term(-text_scale, "negative", None),
        ]
    )


def merge(terms: list[Term]) -> list[Term]:
    """Sum the weights of terms that evaluate the same branch; drop branches whose weight is zero."""
    total: dict[tuple[str, str | None], float] = {}
    for t in terms:
        total[(t.prompt, t.adapter)] = total.get((t.prompt, t.adapter), 0.0) + t.weight
    return [Term(w, p, a) for (p, a), w in total.items() if w != 0.0]


def guided_logits(
    model_fn: ModelFn, terms: list[Term], conds: Mapping[str, Conditioning], tokens: torch.Tensor
) -> torch.Tensor:
    """Evaluate every term's branch for all B rows of tokens (B, h, w) in one forward pass and combine."""
    batch = tokens.shape[0]
    stacked = Conditioning.cat([conds[t.prompt] for t in terms])
    route = [t.adapter for t in terms for _ in range(batch)]
    logits = model_fn(tokens.repeat(len(terms), 1, 1), stacked, route).float()
    branches = logits.unflatten(0, (len(terms), batch))  # (K, B, N, V)
    weights = torch.tensor([t.weight for t in terms], dtype=branches.dtype, device=branches.device)
    return torch.einsum("k,kbnv->bnv", weights, branches)
