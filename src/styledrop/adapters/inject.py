"""Attach an AdapterSet to a U-ViT by forward hooks on each layer's cross-attention (`attn2`) and MLP (`ff`).

Hooks (not edited modules) keep the base untouched: its state dict, parity and checkpoint format stay those
of the base model, and the same hooks fit diffusers' UVit2DModel, whose layers use the same names.
"""

from __future__ import annotations

from torch import nn
from torch.utils.hooks import RemovableHandle

from .config import PLACEMENTS
from .layer import AdapterSet

SUBMODULE = {"cross_attn": "attn2", "mlp": "ff"}
assert set(SUBMODULE) == set(PLACEMENTS)


def _hook(adapters: AdapterSet, layer: int, placement: str):
    def add_adapter_delta(module, args, output):
        delta = adapters.delta(output, layer, placement)
        return output if delta is None else output + delta

    return add_adapter_delta


def inject(transformer: nn.Module, adapters: AdapterSet) -> list[RemovableHandle]:
    """Hook `adapters` into every layer of `transformer.transformer_layers`; returns the hook handles."""
    handles = []
    for i, layer in enumerate(transformer.transformer_layers):
        for placement, name in SUBMODULE.items():
            handles.append(getattr(layer, name).register_forward_hook(_hook(adapters, i, placement)))
    return handles


def layer_count_and_width(transformer: nn.Module) -> tuple[int, int]:
    """(L, D): how many layers the adapters span and the width they act on."""
    layers = transformer.transformer_layers
    return len(layers), layers[0].attn2.to_q.in_features
