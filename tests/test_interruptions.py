"""Real kill -9 interruptions of `styledrop train` and `styledrop refine`, resumed to the uninterrupted result.

Each test runs the command line once uninterrupted, then again into another folder, killing it with SIGKILL:
first from outside, at a point chosen by a seeded random.Random (a checkpoint step, a number of pool images),
then from inside (KILL_AT below) at the narrow moments an outside kill rarely hits: with a temporary written
but not yet renamed into place, or with the adapter written but its checkpoints not yet removed. After each
kill every file on disk must be whole or a temporary (a name starting with "."); the last, plain run must
finish with files byte-identical to the uninterrupted run's and no temporary or checkpoint left behind.

Both commands run on the CPU, where the same seed gives the same bytes.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image
from safetensors.torch import load_file

from styledrop.checkpoint import is_complete, read_meta
from styledrop.toyworld.build import ASSETS

TIMEOUT = 120  # seconds for any one wait: generous, for a slow or busy machine
POLL = 0.002
STEPS = 40  # training steps; a batch of 64 makes each take tens of milliseconds, so a kill lands mid-run
BATCH = 64
CONTENTS = ["a red star", "a blue circle", "a green square", "a yellow heart"]
PER_PROMPT = 50  # 200 pool images of 2 decoding steps, made 2 at a time: a pool of a few seconds
POOL_BATCH = 2
POOL = [f"{p:03d}-{k:02d}.png" for p in range(len(CONTENTS)) for k in range(PER_PROMPT)]

KILL_AT = '''"""python kill_at.py WHEN NAME ARGS...: `styledrop ARGS`, killed by SIGKILL from inside at its first atomic
write of a file called NAME: with the temporary written but not yet renamed (WHEN=before), or just after."""
import contextlib, os, runpy, signal, sys
from pathlib import Path

import styledrop.fileio as fileio

when, name = sys.argv[1:3]
atomic_path = fileio.atomic_path


@contextlib.contextmanager
def killing_atomic_path(path):
    with atomic_path(path) as tmp:
        yield tmp
        if when == "before" and Path(path).name == name:
            os.kill(os.getpid(), signal.SIGKILL)
    if when == "after" and Path(path).name == name:
        os.kill(os.getpid(), signal.SIGKILL)


fileio.atomic_path = killing_atomic_path
sys.argv = ["styledrop", *sys.argv[3:]]
runpy.run_module("styledrop", run_name="__main__", alter_sys=True)
'''


def train_args(root: Path, base: Path, out: Path) -> list:
    return [
        "train", root / "ref.png", "--content", "a circle", "--style", "in striped style", "--base", base,
        "--out", out, "--steps", STEPS, "--batch-size", BATCH, "--checkpoint-every", 1, "--seed", 5,
        "--device", "cpu",
    ]  # fmt: skip


def refine_args(root: Path, adapter: Path, out: Path) -> list:
    return [
        "refine", adapter, "--out", out, "--prompts", root / "prompts.txt", "--per-prompt", PER_PROMPT,
        "--pool-steps", 2, "--pool-batch-size", POOL_BATCH, "--steps", 2, "--batch-size", 2,
        "--checkpoint-every", 1, "--scorer", ASSETS / "clip", "--device", "cpu",
    ]  # fmt: skip


def styledrop(args: list) -> list[str]:
    return [sys.executable, "-m", "styledrop", *map(str, args)]


def finish(args: list) -> str:
    """Run `styledrop ARGS` to its end; returns its output, fails the test with it on a non-zero exit."""
    try:
        result = subprocess.run(styledrop(args), capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"styledrop {args[0]} did not finish within {TIMEOUT} s")
    assert result.returncode == 0, (
        f"styledrop {args[0]} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    )
    return result.stdout + result.stderr


def kill_when(args: list, ready, what: str, log: Path) -> None:
    """Start `styledrop ARGS`, SIGKILL it from outside the moment ready() is true; check the kill stopped it."""
    with open(log, "w") as output:
        process = subprocess.Popen(styledrop(args), stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + TIMEOUT
        while not ready():
            if process.poll() is not None:
                pytest.fail(f"styledrop {args[0]} ended ({process.returncode}) before {what}:\n{log.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"styledrop {args[0]}: no {what} within {TIMEOUT} s:\n{log.read_text()}")
            time.sleep(POLL)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL, (
        f"styledrop {args[0]} finished ({process.returncode}) before the kill after {what} landed\n" + log.read_text()
    )


def kill_at(root: Path, when: str, name: str, args: list) -> None:
    """Run `styledrop ARGS`, killed from inside (KILL_AT) at its first atomic write of `name`."""
    command = [sys.executable, root / "kill_at.py", when, name, *args]
    try:
        result = subprocess.run(list(map(str, command)), capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"styledrop {args[0]} did not reach its write of {name} within {TIMEOUT} s")
    assert result.returncode == -signal.SIGKILL, (
        f"styledrop {args[0]} was not killed {when} writing {name} ({result.returncode}):\n{result.stderr}"
    )


def files(folder: Path) -> list[Path]:
    return sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file())


def temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.startswith(".") or p.name.endswith(".tmp")]


def assert_complete_or_temporary(folder: Path) -> None:
    """Every file a kill left is either whole (it parses) or a temporary, which nothing reads."""
    for name in files(folder):
        path = folder / name
        if any(part.startswith(".") for part in name.parts):
            continue
        assert path.suffix != ".tmp", f"{path}: a temporary not named as one"
        if path.suffix == ".safetensors":
            load_file(path)
        elif path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".png":
            with Image.open(path) as image:
                image.load()
        else:
            pytest.fail(f"{path}: unexpected file")


def assert_same(folder: Path, expected: Path) -> None:
    """The same files with the same bytes, and nothing else: no temporary, no checkpoint."""
    assert not temporaries(folder)
    assert files(folder) == files(expected)
    for name in files(expected):
        assert (folder / name).read_bytes() == (expected / name).read_bytes(), f"{name} differs"


def checkpoint_step(folder: Path) -> int:
    return int(folder.name.removeprefix("step-"))


def complete_checkpoints(out: Path) -> list[Path]:
    return sorted(p for p in (out / "checkpoints").glob("step-*") if is_complete(p))


@pytest.fixture(scope="module")
def uninterrupted(tiny_base_dir, tmp_path_factory):
    """The inputs, and `styledrop train` run once without interruption (the next test's round-1 adapter too)."""
    from conftest import striped_circle

    root = tmp_path_factory.mktemp("interruptions")
    striped_circle(48).save(root / "ref.png")
    (root / "prompts.txt").write_text("\n".join(CONTENTS) + "\n")
    (root / "kill_at.py").write_text(KILL_AT)
    finish(train_args(root, tiny_base_dir, root / "whole"))
    return root


def test_training_killed_at_a_checkpoint_resumes_to_the_same_adapter(uninterrupted, tiny_base_dir):
    root, out = uninterrupted, uninterrupted / "cut"
    args = train_args(root, tiny_base_dir, out)
    at = random.Random(7).randint(3, STEPS // 3)  # the kill's step; two thirds of the run remain after it

    def reached():
        return any(checkpoint_step(p) >= at for p in complete_checkpoints(out))

    kill_when(args, reached, f"the checkpoint of step {at}", root / "cut.log")
    assert not (out / "adapter.safetensors").exists()
    assert_complete_or_temporary(out)
    steps = [checkpoint_step(p) for p in complete_checkpoints(out)]
    assert steps and at <= max(steps) < STEPS
    for folder in complete_checkpoints(out):  # what resume may pick: it loads, and is the step it says
        assert read_meta(folder)["step"] == checkpoint_step(folder)
        assert "rng" in load_file(folder / "state.safetensors")

    # Resumed, and killed again while saving the adapter: its card's temporary written, not yet in place.
    kill_at(root, "before", "adapter_config.json", [*args, "--resume"])
    assert not (out / "adapter_config.json").exists() and list(out.glob(".adapter_config.json.*.tmp"))
    assert_complete_or_temporary(out)

    log = finish([*args, "--resume"])
    assert f"(step {STEPS - 1})" in log, log  # resumed from the last checkpoint, not from scratch
    assert_same(out, root / "whole")


def test_refine_killed_mid_pool_resumes_to_the_same_pool_and_adapter(uninterrupted):
    root, adapter = uninterrupted, uninterrupted / "whole"
    whole, cut = root / "round-whole", root / "round-cut"
    finish(refine_args(root, adapter, whole))
    assert sorted(p.name for p in (whole / "pool").iterdir()) == POOL

    args = refine_args(root, adapter, cut)
    at = random.Random(11).randint(len(POOL) // 10, len(POOL) // 3)  # pool images made before the kill

    def pool():
        return [name for name in POOL if (cut / "pool" / name).is_file()]

    kill_when(args, lambda: len(pool()) >= at, f"{at} pool images", root / "round-cut.log")
    made = pool()
    assert at <= len(made) < len(POOL), f"{len(made)} of {len(POOL)} pool images when killed"
    assert not (cut / "scores.json").exists() and not (cut / "adapter").exists()
    assert_complete_or_temporary(cut)
    # Images of whole batches are kept by the resumed runs (same inode: never rewritten); a half batch is redone.
    batches = [POOL[i : i + POOL_BATCH] for i in range(0, len(POOL), POOL_BATCH)]
    kept = {n: (cut / "pool" / n).stat().st_ino for b in batches if set(b) <= set(made) for n in b}
    assert kept

    # Resumed, and killed again with a pool image's temporary written, not yet in place.
    name = random.Random(12).choice([n for n in POOL if n not in made])
    kill_at(root, "before", name, args)
    assert not (cut / "pool" / name).exists() and list((cut / "pool").glob(f".{name}.*.tmp"))
    assert_complete_or_temporary(cut)

    # And again once the round's adapter is saved, before its training checkpoints are removed.
    kill_at(root, "after", "adapter_config.json", args)
    assert (cut / "adapter" / "adapter_config.json").is_file() and complete_checkpoints(cut / "adapter")
    assert_complete_or_temporary(cut)

    finish(args)
    assert_same(cut, whole)
    assert {n: (cut / "pool" / n).stat().st_ino for n in kept} == kept
