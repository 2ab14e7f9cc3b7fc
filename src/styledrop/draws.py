"""Random draws from a torch.Generator on its own device, delivered to the device that uses them.

A seed draws the same numbers on any device this way (the toy build's CPU generator gives a GPU the same batches
and masks, so a build resumes across devices). Delivering a CPU draw to a GPU goes through pinned memory without
blocking: a plain `.to("cuda")` waits for the GPU to finish all queued work first, several times per step.
"""

from __future__ import annotations

import torch


def deliver(t: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    device = torch.device(device)
    if t.device.type == "cpu" and device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def rand(shape: tuple[int, ...], generator: torch.Generator, device: torch.device | str) -> torch.Tensor:
    return deliver(torch.rand(shape, generator=generator, device=generator.device), device)


def randint(high: int, shape: tuple[int, ...], generator: torch.Generator, device: torch.device | str) -> torch.Tensor:
    return deliver(torch.randint(high, shape, generator=generator, device=generator.device), device)


def choice(weights: torch.Tensor, n: int, generator: torch.Generator, device: torch.device | str) -> torch.Tensor:
    """(n,) indices drawn with replacement, index i in proportion to weights[i] (on the generator's device)."""
    return deliver(torch.multinomial(weights, n, replacement=True, generator=generator), device)
