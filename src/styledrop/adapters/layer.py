"""Adapter modules, and a set of named adapters that can be switched on per sample within one batch."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .config import AdapterConfig


class Bottleneck(nn.Module):
    """The adapters of one placement across all L layers: `up_l(gelu(down_l(h)))`.

    Weights are (S, out, in) with S = 1 when shared across layers, else S = L. Biases are always per layer
    (L, out): in the shared form they are the paper's per-layer embeddings. `up` starts at zero, so a new
    adapter is exactly the identity.
    """

    def __init__(self, num_layers: int, dim: int, config: AdapterConfig, generator: torch.Generator | None = None):
        super().__init__()
        stacks = 1 if config.shared else num_layers
        down = torch.empty(stacks, config.rank, dim)
        nn.init.trunc_normal_(
            down, std=config.init_std, a=-2 * config.init_std, b=2 * config.init_std, generator=generator
        )
        self.down_weight = nn.Parameter(down)
        self.down_bias = nn.Parameter(torch.zeros(num_layers, config.rank))
        self.up_weight = nn.Parameter(torch.zeros(stacks, dim, config.rank))
        self.up_bias = nn.Parameter(torch.zeros(num_layers, dim))

    def forward(self, h: torch.Tensor, layer: int) -> torch.Tensor:
        """h: (..., D) sub-layer output -> (..., D) delta to add to it."""
        stack = 0 if self.down_weight.shape[0] == 1 else layer
        z = F.linear(h, self.down_weight[stack].to(h.dtype), self.down_bias[layer].to(h.dtype))
        return F.linear(F.gelu(z), self.up_weight[stack].to(h.dtype), self.up_bias[layer].to(h.dtype))


class Adapter(nn.Module):
    """One named adapter: a Bottleneck per placement."""

    def __init__(self, config: AdapterConfig, num_layers: int, dim: int, generator: torch.Generator | None = None):
        super().__init__()
        self.config = config
        self.num_layers, self.dim = num_layers, dim
        self.sites = nn.ModuleDict({p: Bottleneck(num_layers, dim, config, generator) for p in config.placements})

    def delta(self, h: torch.Tensor, layer: int, placement: str) -> torch.Tensor | None:
        return self.sites[placement](h, layer) if placement in self.sites else None


class AdapterSet:
    """Named adapters living in one model, with a per-sample route saying which adapter each row uses.

    A route is one name for the whole batch, None for the base alone, or a list with a name (or None) per
    row: guidance evaluates its branches this way in one batched forward pass. Outside `route(...)` every
    row uses `default` (the first adapter added, unless set).
    """

    def __init__(self):
        self.adapters: dict[str, Adapter] = {}  # a plain dict: any name works, even "train" or "a.b"
        self.default: str | None = None
        self._route: str | list[tuple[Adapter, torch.Tensor]] | None = None
        self._routing = False

    def add(self, name: str, adapter: Adapter) -> None:
        self.adapters[name] = adapter
        if self.default is None:
            self.default = name

    def remove(self, name: str) -> None:
        del self.adapters[name]
        if self.default == name:
            self.default = next(iter(self.adapters), None)

    def __contains__(self, name: str) -> bool:
        return name in self.adapters

    def __getitem__(self, name: str) -> Adapter:
        return self.adapters[name]

    @contextlib.contextmanager
    def route(self, names: str | Sequence[str | None] | None) -> Iterator[None]:
        """Route rows to adapters for the forward (and backward) passes run inside this block."""
        previous = self._route, self._routing
        self._route, self._routing = self._compile(names), True
        try:
            yield
        finally:
            self._route, self._routing = previous

    def _compile(self, names):
        if names is None or isinstance(names, str):
            return self._check(names)
        names = list(names)
        if len(set(names)) == 1:
            return self._check(names[0])
        groups = []
        for name in dict.fromkeys(n for n in names if n is not None):
            rows = torch.tensor([i for i, n in enumerate(names) if n == name])
            groups.append((self.adapters[self._check(name)], rows))
        return groups

    def _check(self, name: str | None) -> str | None:
        if name is not None and name not in self.adapters:
            raise KeyError(f"no adapter named {name!r} (have: {', '.join(self.adapters) or 'none'})")
        return name

    def delta(self, h: torch.Tensor, layer: int, placement: str) -> torch.Tensor | None:
        """h: (B, N, D) output of a hooked sub-layer -> what the routed adapters add to it, or None."""
        route = self._route if self._routing else self.default
        if route is None:
            return None
        if isinstance(route, str):
            return self.adapters[route].delta(h, layer, placement)
        out = torch.zeros_like(h)
        for adapter, rows in route:
            rows = rows.to(h.device)
            d = adapter.delta(h.index_select(0, rows), layer, placement)
            if d is not None:
                out = out.index_copy(0, rows, d)
        return out
