"""StyleDrop adapters: config (shape and card), layer (modules, per-sample routing), inject (hooks), io (disk)."""

from .config import PLACEMENTS, AdapterCard, AdapterConfig, BaseIdentity
from .inject import inject
from .io import load_adapter, read_card, save_adapter
from .layer import Adapter, AdapterSet, Bottleneck

__all__ = [
    "PLACEMENTS",
    "Adapter",
    "AdapterCard",
    "AdapterConfig",
    "AdapterSet",
    "BaseIdentity",
    "Bottleneck",
    "inject",
    "load_adapter",
    "read_card",
    "save_adapter",
]
