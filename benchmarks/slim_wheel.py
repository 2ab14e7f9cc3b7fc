"""Copy a wheel without the subpackages a GPU run does not import, so that it travels with the working tree.

The device tool sends at most 64 MiB: the tracked files (57.5 MiB on 2026-12-04, most of it result grids and the
toy base's weights) and the carried wheels. diffusers' wheel is 6.1 MB, 3.4 MB of it pipelines this project never
imports (it uses diffusers' VQModel, and nothing under diffusers.pipelines):
    .venv/bin/python benchmarks/slim_wheel.py .whl/diffusers-*.whl --drop diffusers/pipelines diffusers/modular_pipelines
rewrites the wheel in place, its RECORD without the dropped files, so that pip installs it as any other.
"""

from __future__ import annotations

import argparse
import os
import zipfile
from pathlib import Path


def slim(wheel: Path, drop: list[str]) -> tuple[int, int]:
    """Rewrite `wheel` without the files under the `drop` folders; returns its (old, new) size in bytes."""
    prefixes = tuple(d.rstrip("/") + "/" for d in drop)
    old = wheel.stat().st_size
    tmp = wheel.with_name(wheel.name + ".tmp")
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            if info.filename.startswith(prefixes):
                continue
            data = src.read(info)
            if info.filename.endswith(".dist-info/RECORD"):
                lines = data.decode().splitlines(keepends=True)
                data = "".join(line for line in lines if not line.startswith(prefixes)).encode()
            dst.writestr(info, data)
    os.replace(tmp, wheel)
    return old, wheel.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path)
    parser.add_argument("--drop", nargs="+", required=True, help="folders inside the wheel to leave out")
    args = parser.parse_args()
    old, new = slim(args.wheel, args.drop)
    print(f"{args.wheel}: {old / 2**20:.1f} MiB -> {new / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
