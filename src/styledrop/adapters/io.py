"""Adapters on disk: a folder with `adapter_config.json` (the card), `adapter.safetensors` (the weights) and
`reference/` (the style's reference images).

Only safetensors is ever read. Each file is written atomically; the card records the weights' SHA-256, so a
truncated, swapped or tampered weights file is refused instead of half-loaded.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import StyleDropError
from ..fileio import read_json, replace_dir, write_json, write_with
from .config import AdapterCard
from .layer import Adapter

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter.safetensors"
REFERENCE_DIR = "reference"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_adapter(folder: str | Path, adapter: Adapter, card: AdapterCard) -> Path:
    """Write weights then card, each atomically; returns the folder."""
    folder = Path(folder)
    state = {k: v.detach().float().cpu().contiguous() for k, v in adapter.state_dict().items()}
    write_with(folder / WEIGHTS_NAME, lambda p: save_file(state, str(p), metadata={"format": "styledrop-adapter"}))
    card.weights_sha256 = sha256_file(folder / WEIGHTS_NAME)
    write_json(folder / CONFIG_NAME, card.to_dict())
    return folder


def read_card(folder: str | Path) -> AdapterCard:
    folder = Path(folder)
    path = folder / CONFIG_NAME
    if folder.exists() and not folder.is_dir():
        raise StyleDropError(f"{folder}: not a folder (give the adapter's folder, not a file in it)")
    if not folder.is_dir():
        raise StyleDropError(f"{folder}: adapter folder not found")
    if not path.is_file():
        raise StyleDropError(f"{path}: missing (not an adapter folder?)")
    data = read_json(path)
    try:
        return AdapterCard.from_dict(data)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise StyleDropError(f"{path}: malformed adapter config ({type(e).__name__}: {e})") from None


def check_base(card: AdapterCard, base_identity, folder: Path) -> None:
    if card.base.fingerprint != base_identity.fingerprint:
        raise StyleDropError(
            f"{folder}: adapter was trained on base {card.base.source!r} (fingerprint {card.base.fingerprint}), "
            f"not on {base_identity.source!r} (fingerprint {base_identity.fingerprint})"
        )


def load_adapter(folder: str | Path, num_layers: int, dim: int, base_identity) -> tuple[Adapter, AdapterCard]:
    """Read an adapter folder, refusing a different base, bad or tampered weights, and missing keys."""
    folder = Path(folder)
    card = read_card(folder)
    check_base(card, base_identity, folder)
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        raise StyleDropError(f"{weights}: missing")
    if card.weights_sha256 and sha256_file(weights) != card.weights_sha256:
        raise StyleDropError(f"{weights}: checksum does not match {CONFIG_NAME} (truncated, replaced or tampered)")
    try:
        state = load_file(weights)
    except (SafetensorError, OSError, ValueError) as e:
        raise StyleDropError(f"{weights}: not a valid safetensors file ({e})") from None
    adapter = Adapter(card.config, num_layers, dim)
    expected = {k: v.shape for k, v in adapter.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and state[k].shape != expected[k]]
    if missing or extra or wrong:
        raise StyleDropError(
            f"{weights}: does not match {CONFIG_NAME} "
            f"(missing {missing[:3]}, unexpected {extra[:3]}, wrong shape {wrong[:3]})"
        )
    if not all(torch.isfinite(v).all() for v in state.values()):
        raise StyleDropError(f"{weights}: contains NaN or infinite values")
    adapter.load_state_dict(state)
    return adapter, card


def save_references(folder: str | Path, images: list) -> None:
    """The style's reference image(s), kept beside the adapter: later rounds score style against them."""
    from ..images import save_png

    def write(tmp: Path) -> None:
        for i, image in enumerate(images):
            save_png(image, tmp / f"{i:02d}.png")

    replace_dir(Path(folder) / REFERENCE_DIR, write)


def load_references(folder: str | Path) -> list:
    from ..images import load_image

    paths = sorted((Path(folder) / REFERENCE_DIR).glob("*.png"))
    if not paths:
        raise StyleDropError(f"{folder}: no {REFERENCE_DIR}/ images (an adapter from an older version?)")
    return [load_image(p) for p in paths]
