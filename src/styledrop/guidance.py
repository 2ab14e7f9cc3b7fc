"""Guidance as linear combinations of model evaluations, all branches in ONE batched forward pass.

A guided logit is `sum_k w_k * G(prompt_k, adapter_k)`. With G the base, Gs the style adapter, t the prompt
and n the negative prompt (paper, equations 1 and 4):

  text guidance (CFG):  G(t) + lB (G(t) - G(n))                      = (1+lB) G(t) - lB G(n)
  StyleDrop:            Gs(t) + lA (Gs(t) - G(t)) + lB (G(t) - G(n)) = (1+lA) Gs(t) + (lB-lA) G(t) - lB G(n)

Ours, not the paper's: descriptor guidance adds lD (G(t) - G(c_t)), with c_t the prompt without the style
descriptor. It amplifies what the descriptor's words add to the content, where plain text guidance amplifies
the whole prompt against the negative one (in the shapes world, a base that barely listens to "in striped
style" honours the named family more often with it: the README's shapes-world status).

A mixture (equations 5-6, and style blending) is a weighted sum of StyleDrop formulas, each with its own
adapter and prompt: with the style s on the full prompt t and the subject c on the prompt c_t without the
style descriptor, `l = (1 - g) l_s(t) + g l_c(c_t)`; blending styles A and B is `w l_A(t_A) + (1 - w) l_B(t_B)`.

Terms with the same (prompt, adapter) are merged and zero weights dropped, so lA = lB = 0 costs one branch,
and the negative prompt's branch is evaluated once however many components share it.

With a plausibility alpha > 0 (`plausible`), only tokens that some branch with a positive weight gives at least
alpha times its top token's probability can be drawn.

An `Anchor` pulls a guided sample toward an existing image's tokens (how `stylize` edits by default).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from .models.amused import Conditioning
from .sampler import LogitsFn

# (tokens (B, h, w), conditioning with B rows, adapter route) -> (B, N, V) logits
ModelFn = Callable[[torch.Tensor, Conditioning, list], torch.Tensor]

NEGATIVE = "negative"  # the conditioning key of the negative prompt, shared by every component
CONTENT = "content"  # the key of the prompts without the style descriptor (c_t), shared likewise


@dataclass(frozen=True)
class Term:
    weight: float
    prompt: str  # a key into the conditionings: "text", "negative", ...
    adapter: str | None  # None = the base alone


def text_guidance(scale: float) -> list[Term]:
    return merge([Term(1 + scale, "text", None), Term(-scale, NEGATIVE, None)])


def styledrop_guidance(
    adapter: str | None,
    style_scale: float,
    text_scale: float,
    prompt: str = "text",
    descriptor_scale: float = 0.0,
) -> list[Term]:
    """Equation 4 around `adapter` on `prompt`, plus descriptor guidance lD (G(prompt) - G(CONTENT)); with adapter
    None and lD 0 it reduces to text guidance."""
    return merge(
        [
            Term(1 + style_scale, prompt, adapter),
            Term(text_scale - style_scale + descriptor_scale, prompt, None),
            Term(-text_scale, NEGATIVE, None),
            Term(-descriptor_scale, CONTENT, None),
        ]
    )


@dataclass(frozen=True)
class Component:
    """One StyleDrop-guided part of a mixture: `weight` x equation 4 around `adapter` on `prompt`."""

    weight: float
    adapter: str | None
    prompt: str  # a key into the conditionings


def mixture_guidance(
    components: list[Component], style_scale: float, text_scale: float, descriptor_scale: float = 0.0
) -> list[Term]:
    """Equation 6 generalised: sum_k w_k l_k, each l_k equation 4 (with descriptor guidance) with its own adapter
    and prompt."""
    terms = [
        Term(c.weight * t.weight, t.prompt, t.adapter)
        for c in components
        for t in styledrop_guidance(c.adapter, style_scale, text_scale, c.prompt, descriptor_scale)
    ]
    return merge(terms)


def merge(terms: list[Term]) -> list[Term]:
    """Sum the weights of terms that evaluate the same branch; drop branches whose weight is zero."""
    total: dict[tuple[str, str | None], float] = {}
    for t in terms:
        total[(t.prompt, t.adapter)] = total.get((t.prompt, t.adapter), 0.0) + t.weight
    return [Term(w, p, a) for (p, a), w in total.items() if abs(w) > 1e-12]


def guided_logits(
    model_fn: ModelFn,
    terms: list[Term],
    conds: Mapping[str, Conditioning],
    tokens: torch.Tensor,
    plausibility: float = 0.0,
) -> torch.Tensor:
    """Evaluate every term's branch for all B rows of tokens (B, h, w) in one forward pass and combine; with
    plausibility > 0, only plausible tokens can be drawn (`plausible`)."""
    batch = tokens.shape[0]
    stacked = Conditioning.cat([conds[t.prompt] for t in terms])
    route = [t.adapter for t in terms for _ in range(batch)]
    logits = model_fn(tokens.repeat(len(terms), 1, 1), stacked, route).float()
    branches = logits.unflatten(0, (len(terms), batch))  # (K, B, N, V)
    weights = torch.tensor([t.weight for t in terms], dtype=branches.dtype, device=branches.device)
    guided = torch.einsum("k,kbnv->bnv", weights, branches)
    if plausibility == 0:
        return guided
    return guided.masked_fill(~plausible(branches[weights > 0], plausibility), float("-inf"))


def plausible(branches: torch.Tensor, alpha: float) -> torch.Tensor:
    """(B, N, V) mask of the tokens that some branch of (K, B, N, V), the ones guidance pulls toward, gives at
    least alpha times the probability of its own most likely token.

    Why: a guided logit (1 + l) G(t) - l G(n) is largest where G(n) is lowest, so at l = 5 a token that both
    branches find all but impossible can win on the difference of their far tails. Where the prompt already
    fixes a token (a memorised stripe, a fill continued from its neighbours) that tail noise is all guidance
    adds (benchmarks/toyworld_overfit.py). The constraint is contrastive decoding's (Li et al., 2022)."""
    log_probs = branches.log_softmax(-1)
    floor = log_probs.amax(-1, keepdim=True) + math.log(alpha)
    return (log_probs >= floor).any(0)


@dataclass(frozen=True)
class Anchor:
    """Each position's token in `tokens` (B, N) gains `weight` in logit: p(v) is proportional to
    p_guided(v) exp(weight [v = token]). Where the guided model is unsure, the token stays; where it is sure of
    something else (a background the style wants dark), it gives way. Weight 0 is plain sampling; a large weight
    returns the tokens."""

    tokens: torch.Tensor
    weight: float

    def rows(self, start: int, stop: int) -> Anchor:
        return Anchor(self.tokens[start:stop], self.weight)

    def wrap(self, logits_fn: LogitsFn) -> LogitsFn:
        if self.weight == 0:
            return logits_fn

        def anchored(tokens: torch.Tensor) -> torch.Tensor:
            logits = logits_fn(tokens)
            index = self.tokens.to(logits.device)[..., None]
            return logits.scatter_add(-1, index, torch.full_like(index, self.weight, dtype=logits.dtype))

        return anchored
