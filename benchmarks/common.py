"""What every benchmark records beside its numbers: when, on what, with which versions, by which command."""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
from pathlib import Path


def environment() -> dict:
    import diffusers
    import torch
    import transformers

    import styledrop

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "device": device,
        "torch_threads": torch.get_num_threads(),
        # The vector instructions torch's CPU kernels use: on machines that differ in them (or in torch_threads) a
        # seeded run can end at other bits, as two fill-weight runs did (benchmarks/family_bar.md, 2026-12-06).
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "styledrop_version": styledrop.__version__,  # "styledrop" alone names round-1 results (toyworld_round1)
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }


def append_result(path: Path, record: dict) -> None:
    """Results files are JSON lines: one run per line, never rewritten, so runs compare over time."""
    env = environment()
    clash = env.keys() & record.keys()
    if clash:
        raise ValueError(f"{path}: the record's keys {sorted(clash)} would overwrite the environment's")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps({**env, **record}) + "\n")


def token_temperature_tag(token_temperature: float) -> str:
    """Suffix for result names drawn at a non-default token temperature; names from before the option stay."""
    from styledrop.pipeline import SampleConfig

    return "" if token_temperature == SampleConfig.token_temperature else f"_tt{token_temperature:g}"


def plausibility_tag(plausibility: float) -> str:
    """Suffix for result names drawn with the plausibility constraint on: named whenever it is on, so that a name
    keeps its meaning across the default's change (off until 2026-12-03, 0.1 since)."""
    return f"_p{plausibility:g}" if plausibility else ""
