"""Data parallelism under `accelerate launch --multi_gpu` (on CPU: torchrun): which process this is, and summing
across them.

Every process draws the same random numbers (same seeds), so each knows the whole batch; it computes its own
share of the rows, and the results are summed. N processes then give what one process gives, up to the order
of floating-point sums.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Processes:
    rank: int = 0
    world: int = 1
    barrier: Callable[[], None] = lambda: None
    device: str | None = None  # each process's own accelerator, when launched on several

    @property
    def main(self) -> bool:
        return self.rank == 0

    def rows(self, batch: int) -> slice:
        """This process's share of a batch of `batch` rows: every world-th row from its rank."""
        return slice(self.rank, batch, self.world)

    def sum_(self, tensors: list[torch.Tensor]) -> None:
        """Sum tensors across processes, in place (one collective for all of them)."""
        if self.world == 1 or not tensors:
            return
        flat = torch.cat([t.reshape(-1) for t in tensors])
        torch.distributed.all_reduce(flat)
        for t, part in zip(tensors, flat.split([t.numel() for t in tensors]), strict=True):
            t.copy_(part.view_as(t))


def processes() -> Processes:
    """The processes of this run: (0 of 1) unless started by `accelerate launch` with several."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Processes()
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())  # CPU processes need saying so, to sum over gloo
    atexit.register(close, state)
    return Processes(state.process_index, state.num_processes, state.wait_for_everyone, str(state.device))


def close(state) -> None:
    """Leave the process group before exiting (gloo aborts a process that exits inside one)."""
    if torch.distributed.is_initialized():
        state.wait_for_everyone()
        torch.distributed.destroy_process_group()
