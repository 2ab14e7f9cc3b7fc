"""A longer, still bounded fuzz run of the loaders (tests/test_fuzz.py): images, prompts, prompt files and
adapter folders must load or refuse with StyleDropError, never crash. Appends the outcome to
benchmarks/results/fuzz.jsonl.

    .venv/bin/python benchmarks/fuzz_loaders.py [--examples 1000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import append_result  # noqa: E402

ROOT = Path(__file__).parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1000, help="examples per fuzz target")
    args = parser.parse_args()
    env = {**os.environ, "STYLEDROP_FUZZ_EXAMPLES": str(args.examples)}
    start = time.perf_counter()
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "--hypothesis-show-statistics",
            "tests/test_fuzz.py",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    lines = run.stdout.strip().splitlines()
    summary = lines[-1] if lines else run.stderr.strip()[-300:]
    # hypothesis's statistics: per target, the examples it ran and how they ended
    targets = [line.strip(" :") for line in lines if line.startswith("tests/test_fuzz.py::")]
    examples = [line.strip(" -") for line in lines if " passing, " in line]
    record = {"examples_per_target": args.examples, "exit_code": run.returncode, "pytest": summary}
    record["targets"] = dict(zip(targets, examples, strict=False))
    record["seconds"] = round(time.perf_counter() - start, 1)
    append_result(ROOT / "benchmarks" / "results" / "fuzz.jsonl", record)
    print(record)
    sys.exit(run.returncode)


if __name__ == "__main__":
    main()
