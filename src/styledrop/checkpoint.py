"""Training state on disk for exact resume: module weights, optimizer moments and RNG state in one
safetensors file, step and settings in JSON. Never pickle."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .fileio import read_json, write_json, write_with

STATE, META = "state.safetensors", "state.json"


def module_tensors(modules: dict[str, torch.nn.Module]) -> dict[str, torch.Tensor]:
    """Every module's state dict in one flat dict, keys prefixed by the module's name."""
    return {f"{n}.{k}": v.detach().cpu().contiguous() for n, m in modules.items() for k, v in m.state_dict().items()}


def load_module_tensors(tensors: dict[str, torch.Tensor], modules: dict[str, torch.nn.Module]) -> None:
    for name, module in modules.items():
        prefix = f"{name}."
        module.load_state_dict({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)})


def save_weights(folder: Path, modules: dict[str, torch.nn.Module], meta: dict) -> None:
    """Weights only: what a finished run keeps."""
    tensors = module_tensors(modules)
    folder.mkdir(parents=True, exist_ok=True)
    write_with(folder / STATE, lambda p: save_file(tensors, str(p)))
    write_json(folder / META, meta)


def load_weights(folder: Path, modules: dict[str, torch.nn.Module]) -> None:
    load_module_tensors(load_file(folder / STATE), modules)


def save_state(folder: Path, modules: dict[str, torch.nn.Module], optimizer, generator, meta: dict) -> None:
    tensors = module_tensors(modules)
    for i, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            tensors[f"optim.{i}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    tensors["rng"] = generator.get_state()
    folder.mkdir(parents=True, exist_ok=True)
    write_with(folder / STATE, lambda p: save_file(tensors, str(p)))
    write_json(folder / META, meta)  # written last: a folder with META is complete


def read_meta(folder: Path) -> dict:
    return read_json(folder / META)


def load_state(folder: Path, modules: dict[str, torch.nn.Module], optimizer, generator) -> dict:
    """Restore what save_state wrote into the given modules/optimizer/generator; returns the meta dict."""
    tensors = load_file(folder / STATE)
    load_module_tensors(tensors, modules)
    state = optimizer.state_dict()
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, i, field = key.split(".", 2)
            state["state"].setdefault(int(i), {})[field] = value
    optimizer.load_state_dict(state)
    generator.set_state(tensors["rng"])
    return read_meta(folder)


def is_complete(folder: Path) -> bool:
    return (folder / META).is_file() and (folder / STATE).is_file()
