"""Train the toy base's U-ViT on a lent GPU machine (the `device` tool): tens of thousands of steps, where this
project's 2 CPU cores take 0.6-2.8 s each (benchmarks/toyworld_uvit_ab.py). It starts from the committed build's
finished VQ, CLIP and oracle stages (toyworld-build/), renders the pool there on every core and encodes it on the
GPU.

Here, once (the GPU image has every other package this needs):
    .venv/bin/pip download --no-deps -d .whl diffusers==0.42.1

There, as one `run` call carrying .whl (timeout_s 600; the machine's start takes 1-2 more of the session's 15
minutes). The pool is encoded once into the build folder; then two runs, each under its own --name, share the
GPU (batch 256 took 1.45 times the step of batch 64 there, so a step of so small a model does not fill it):
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:src
    python3 -m pytest -q tests/test_toyworld_build.py -k gpu
    python3 benchmarks/gpu_uvit.py --tokens-only
    python3 benchmarks/gpu_uvit.py --flat --name flat64 --minutes 5 & \
        python3 benchmarks/gpu_uvit.py --flat --batch 256 --name flat256 --minutes 5; wait

Before training, `--profile SECONDS --name prof` writes $OUT/prof/profile.txt instead: the stage's operations by
their own GPU time over that many seconds of training. On the H200 a step of batch 64 took 0.053 s with two runs
sharing the GPU, far above what the U-ViT's arithmetic needs there, so that table is the next GPU session's
first check (tried here on the CPU only).

Each writes $OUT/NAME/uvit/ (the stage's weights, and state.json, whose "step" says how far it got) and
$OUT/NAME/run.json (steps, seconds per step, the GPU). Back here, keep the run's record (one line per run, "name"
first, in benchmarks/results/gpu_uvit.jsonl) and measure its U-ViT as any build's, the folder named after the run:
    mkdir -p WORK/NAME && cp -r toyworld-build/{vq,clip,oracle,tokenizer} FILES_AT/NAME/uvit WORK/NAME/
    .venv/bin/python benchmarks/toyworld_base.py --checkpoint WORK/NAME --per-content 2

Run 2026-12-04 (H200, torch 2.11) with --minutes 5.5: the call took 7.0 minutes (45 s to render and encode the
pool, about a minute per run to load and time itself), the machine's start and the transfers 40 s more. Both
runs shared the GPU at 0.053 and 0.077 s per step (batch 64 and 256), so they ran 5500 and 3700 steps; the
README's shapes-world status has what they measured.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import environment  # noqa: E402

from styledrop.checkpoint import read_meta, save_weights  # noqa: E402
from styledrop.pipeline import default_device  # noqa: E402
from styledrop.toyworld.build import (  # noqa: E402
    DEFAULT_WORK,
    BuildConfig,
    build,
    checkpoint_uvit,
    finished_inputs,
    pool_tokens,
    train_uvit,
    uvit_stage_name,
)

FINISHED_STAGES = ("vq", "clip", "oracle", "tokenizer", "data")  # data: the pool's cached tokens, once made


def copy_finished_stages(work: Path, scratch: Path) -> None:
    scratch.mkdir(parents=True)
    for name in FINISHED_STAGES:
        if (work / name).is_dir():
            shutil.copytree(work / name, scratch / name, ignore=shutil.ignore_patterns("pool-*"))


def probe_calls(work: Path, config: BuildConfig, inputs: tuple, budgets, device: str, around_last=None):
    """Train a throwaway copy of the build once per budget (seconds; each call resumes the last, and a call takes
    at least one step), the last call inside the context manager around_last: (each call's seconds, including
    its loading of the pool, and the steps taken in all)."""
    probe = Path(f"{work}-probe")
    copy_finished_stages(work, probe)
    endless = dataclasses.replace(config, uvit_steps=10**6)
    calls = []
    for i, budget in enumerate(budgets):
        last = i == len(budgets) - 1 and around_last is not None
        with around_last if last else contextlib.nullcontext():
            start = time.time()
            train_uvit(probe, endless, *inputs, start + budget, progress=False, device=device)
            calls.append(time.time() - start)
    steps = read_meta(probe / uvit_stage_name(config))["step"]
    shutil.rmtree(probe)
    return calls, steps


def steps_within(work: Path, config: BuildConfig, inputs: tuple, seconds: float, device: str) -> tuple[int, float]:
    """(steps that fit in `seconds`, seconds per step): a call that loads the pool and takes one step, then one
    that loads it again and runs for 20 s, so the loading cancels out. The run loads the pool too, inside its
    budget."""
    calls, taken = probe_calls(work, config, inputs, (0.0, 20.0), device)
    per_step = (calls[1] - calls[0]) / (taken - 2)
    steps = int(0.9 * (seconds - calls[0]) / per_step)
    return max(1, steps // 100 * 100 if steps >= 100 else steps), per_step


def profile(work: Path, config: BuildConfig, inputs: tuple, seconds: float, device: str) -> str:
    """A table of the U-ViT stage's operations over `seconds` of training, by their own time on the device (the
    CPU without a GPU), after a first call that loads the pool and takes one step; its loading is in the table."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    activities += [torch.profiler.ProfilerActivity.CUDA] if device == "cuda" else []
    prof = torch.profiler.profile(activities=activities)
    calls, taken = probe_calls(work, config, inputs, (0.0, seconds), device, around_last=prof)
    sort = "self_device_time_total" if device == "cuda" else "self_cpu_time_total"
    head = f"{taken - 1} steps in {calls[1]:.1f} s, loading the pool included ({device}, batch {config.uvit_batch}"
    head += f", {config.uvit_precision})\n"
    return head + prof.key_averages().table(sort_by=sort, row_limit=30)


def weights_only(stage: Path, dest: Path) -> None:
    """The stage's U-ViT weights, without the optimizer's moments of an unfinished checkpoint (3x the size)."""
    uvit, meta = checkpoint_uvit(stage)
    save_weights(dest, {"uvit": uvit}, meta)


def encoded_pool(work: Path, config: BuildConfig) -> tuple:
    """The finished stages' inputs to the U-ViT, after caching the pool's tokens in work/data (runs that copy
    the folder then skip rendering and encoding it)."""
    inputs = finished_inputs(work, config)
    if inputs is None:
        raise SystemExit(f"{work}: the VQ and CLIP stages are not finished")
    pool_tokens(work, config, inputs[0].to(default_device()))
    return inputs


def train(work: Path, config: BuildConfig, minutes: float, out: Path, scratch: Path, probe: bool) -> None:
    """probe: train as many steps as fit the minutes, in place of config.uvit_steps."""
    device = default_device()
    shutil.rmtree(scratch, ignore_errors=True)
    copy_finished_stages(work, scratch)
    inputs = encoded_pool(scratch, config)  # once, for the probe and the run
    probed = None
    if probe:
        steps, probed = steps_within(scratch, config, inputs, minutes * 60, device)
        config = dataclasses.replace(config, uvit_steps=steps)
    start = time.time()
    status = build(scratch, config, budget_s=minutes * 60, progress=False, dest=scratch / "export", device=device)
    seconds = time.time() - start
    stage = scratch / uvit_stage_name(config)
    weights_only(stage, out / "uvit")
    record = {**environment(), "status": status, "uvit_steps": config.uvit_steps, "probe_s_per_step": probed}
    record |= {"uvit_batch": config.uvit_batch, "uvit_downsample": config.uvit_downsample}
    record |= {"uvit_lr": config.uvit_lr, "uvit_precision": config.uvit_precision}
    record |= {"step": read_meta(stage)["step"], "train_s": round(seconds, 1)}
    (out / "run.json").write_text(json.dumps(record, indent=1))
    print(json.dumps(record))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default=DEFAULT_WORK, help="the build folder with the finished stages")
    parser.add_argument("--minutes", type=float, default=5.0, help="the training's time budget")
    parser.add_argument("--steps", type=int, default=0, help="U-ViT steps (0: as many as fit the minutes)")
    parser.add_argument("--batch", type=int, default=BuildConfig.uvit_batch, help="the U-ViT's batch")
    parser.add_argument("--lr", type=float, default=BuildConfig.uvit_lr, help="the U-ViT's peak learning rate")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="BuildConfig.uvit_precision")
    parser.add_argument("--flat", action="store_true", help="the flat U-ViT (BuildConfig.uvit_downsample False)")
    parser.add_argument("--name", default="run", help="this run's output folder under $OUT, and its scratch's name")
    parser.add_argument("--tokens-only", action="store_true", help="only encode the pool into --work/data")
    parser.add_argument("--profile", type=float, default=0, help="only profile this many seconds of training")
    args = parser.parse_args()
    steps = args.steps or BuildConfig.uvit_steps  # a placeholder when probed
    config = BuildConfig(
        uvit_steps=steps,
        uvit_batch=args.batch,
        uvit_lr=args.lr,
        uvit_downsample=not args.flat,
        uvit_precision=args.precision,
    )
    if args.tokens_only:
        encoded_pool(Path(args.work), config)
        return
    out = Path(os.environ.get("OUT", "gpu-out")) / args.name
    if args.profile:
        table = profile(Path(args.work), config, encoded_pool(Path(args.work), config), args.profile, default_device())
        out.mkdir(parents=True, exist_ok=True)
        (out / "profile.txt").write_text(table)
        print(table)
        return
    train(Path(args.work), config, args.minutes, out, Path(f"/tmp/gpu-uvit-{args.name}"), not args.steps)


if __name__ == "__main__":
    main()
