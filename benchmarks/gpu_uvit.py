"""Train the toy base's U-ViT on a lent GPU machine (the `device` tool): tens of thousands of steps, where this
project's 2 CPU cores take 0.6-2.8 s each (benchmarks/toyworld_uvit_ab.py). It starts from the committed build's
finished VQ, CLIP and oracle stages (toyworld-build/), renders the pool there on every core and encodes it on the
GPU.

Here, once (the GPU image has every other package this needs; the working tree and the wheels travel within 64
MiB, and the tracked files alone were 57.5 MiB on 2026-12-04, so the wheel leaves out the pipelines, which this
run never imports: benchmarks/slim_wheel.py; at 62.3 MiB on 2026-12-06, by `git ls-files -z | xargs -0 du -cb`,
they leave no room for it, so move benchmarks/results/, which the run never reads, out of the working tree for
the call and back after):
    .venv/bin/pip download --no-deps -d .whl/slim diffusers==0.42.1
    .venv/bin/python benchmarks/slim_wheel.py .whl/slim/diffusers-*.whl \
        --drop diffusers/pipelines diffusers/modular_pipelines

There, as one `run` call carrying .whl/slim (timeout_s 600; the machine's start and the transfers take about 40 s more
of the session's 15 minutes). `--minutes` is a run's whole wall time after its imports (loading the pool, timing
itself, training, writing its weights to $OUT), so the minutes of the runs and whatever runs before them must stay
under the call's limit. The pool is rendered and encoded once into the build folder (45 s); a 15-second timing
with --compile (plus its compiling, two starts of it, not yet timed on a GPU: about a minute per start on the
CPU) decides whether the run compiles, so a compiler failure cannot cost the session its run:
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/slim/*.whl && export PYTHONPATH=/tmp/site:src
    python3 -m pytest -q tests/test_toyworld_build.py -k gpu  # 40 s; when the stage changed since it last passed
    python3 benchmarks/gpu_uvit.py --tokens-only
    F="--flat --batch 256 --precision bf16"
    python3 benchmarks/gpu_uvit.py $F --compile --speed 15 --name speed-compile && C=--compile
    python3 benchmarks/gpu_uvit.py $F $C --name flat256 --minutes 5

`--speed SECONDS --name NAME` writes $OUT/NAME/speed.json instead of training (seconds per step over that many
seconds of training, and with --flops one step's FLOPs); `--profile SECONDS` writes $OUT/NAME/profile.txt, the
stage's operations by their own GPU time. Two runs under different --names can share the GPU (`&`, then `wait`).

Each run writes $OUT/NAME/uvit/ (the stage's weights, and state.json, whose "step" says how far it got) and
$OUT/NAME/run.json (steps, seconds per step, the GPU). Back here, keep the run's record (one line per run, "name"
first, in benchmarks/results/gpu_uvit.jsonl) and measure its U-ViT as any build's, the folder named after the run:
    mkdir -p WORK/NAME && cp -r toyworld-build/{vq,clip,oracle,tokenizer} FILES_AT/NAME/uvit WORK/NAME/
    .venv/bin/python benchmarks/toyworld_base.py --checkpoint WORK/NAME --per-content 2

Measured (rows in benchmarks/results/gpu_uvit.jsonl, the calls' logs in gpu_uvit_2026-12-04*.log):
- 2026-12-04, first session (H200, torch 2.11), --minutes 5.5 counted from after loading and timing: two runs
  sharing the GPU at 0.053 and 0.077 s per step (batch 64 and 256, fp32) ran 5500 and 3700 steps;
  benchmarks/family_bar.md has what they measured.
- 2026-12-04, second session: the flat U-ViT at batch 256, alone on the H200, once the stage waited for the GPU
  once per step instead of seven times: 0.048 s per step in fp32, 0.033 s in bf16. A step is 0.55 TFLOP of
  matmuls (--flops, counted on the CPU), so bf16 runs at 17 TFLOP/s: its profile gives 80% of the GPU's time to
  elementwise kernels and reductions (multiplies, dtype casts, norms, AdamW), 20% to matmuls and attention;
  fusing those is what --compile is for, not yet timed on a GPU. The call lost both its training runs (bf16,
  batch 256 and 1024): their minutes, counted from after their loading and timing, left no room for the test, the
  pool and two profiles before them, and the call's limit came as they wrote their weights. --minutes has counted
  a run's whole time since.
- 2026-12-04, this project's 2 CPU cores, batch 64, fp32, `--speed 40 [--compile] [--flat]`: --compile took a step
  from 0.49 to 0.44 s (flat U-ViT: 1.76 to 1.71 s). Rows "timed": "steps": a timing now reads the clock at each
  step inside one call; it used to subtract a one-step call from a longer one, which with --compile counted
  compiling that differed between the calls and gave 0.36 s and 1.44 s (those rows were replaced). The
  second session's GPU timings, without compiling, were made that older way.
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

import styledrop.toyworld.build as build_module  # noqa: E402
from styledrop.checkpoint import read_meta, save_weights  # noqa: E402
from styledrop.pipeline import default_device  # noqa: E402
from styledrop.toyworld.build import (  # noqa: E402
    DEFAULT_WORK,
    PRECISIONS,
    BuildConfig,
    build,
    checkpoint_uvit,
    finished_inputs,
    pool_tokens,
    train_uvit,
    uvit_stage_name,
)

STARTED = time.time()
FINISHED_STAGES = ("vq", "clip", "oracle", "tokenizer", "data")  # data: the pool's cached tokens, once made


def copy_finished_stages(work: Path, scratch: Path) -> None:
    scratch.mkdir(parents=True)
    for name in FINISHED_STAGES:
        if (work / name).is_dir():
            shutil.copytree(work / name, scratch / name, ignore=shutil.ignore_patterns("pool-*"))


def probe_calls(work: Path, config: BuildConfig, inputs: tuple, budgets, device: str, around_last=None):
    """Train a throwaway copy of the build once per budget (seconds of training beyond the loading of the pool,
    as the call before measures it; each call resumes the last and takes at least one step), the last call inside
    the context manager around_last: (each call's seconds, its loading included, and the steps taken in all)."""
    probe = Path(f"{work}-probe")
    copy_finished_stages(work, probe)
    endless = dataclasses.replace(config, uvit_steps=10**6)
    calls = []
    for i, budget in enumerate(budgets):
        last = i == len(budgets) - 1 and around_last is not None
        with around_last if last else contextlib.nullcontext():
            start = time.time()
            loading = calls[-1] if calls else 0.0  # the last call: loading and one step
            train_uvit(probe, endless, *inputs, start + loading + budget, progress=False, device=device)
            calls.append(time.time() - start)
    steps = read_meta(probe / uvit_stage_name(config))["step"]
    shutil.rmtree(probe)
    return calls, steps


@contextlib.contextmanager
def each_step(wrap):
    """Inside, every U-ViT step of the build runs as wrap(the step, its arguments)."""
    original = build_module.uvit_step
    build_module.uvit_step = lambda *args: wrap(original, *args)
    try:
        yield
    finally:
        build_module.uvit_step = original


@contextlib.contextmanager
def step_ends():
    """The time.time() at the end of each U-ViT step taken inside (on a GPU, when the step was queued: the host
    runs at most SHOW_EVERY steps ahead, where the progress bar reads the loss back)."""
    times = []

    def timed(step, *args):
        loss = step(*args)
        times.append(time.time())
        return loss

    with each_step(timed):
        yield times


def step_flops(work: Path, config: BuildConfig, inputs: tuple, device: str) -> int:
    """The matmul, convolution and attention FLOPs of one U-ViT step, forward, backward and all (the count of
    torch.utils.flop_counter, as benchmarks/speed.py counts them)."""
    from torch.utils.flop_counter import FlopCounterMode

    counted = []

    def count(step, *args):
        with FlopCounterMode(display=False) as counter:
            loss = step(*args)
        counted.append(counter.get_total_flops())
        return loss

    with each_step(count):
        probe_calls(work, config, inputs, (0.0,), device)
    return counted[0]


def seconds_per_step(work: Path, config: BuildConfig, inputs: tuple, seconds: float, device: str):
    """(seconds of a call that loads the pool, compiles with --compile and takes one step: more than a later call
    spends before its steps; seconds per step, over the last four fifths of `seconds` of training, timed inside the
    next call, which resumes the first)."""
    with step_ends() as ends:
        calls, _ = probe_calls(work, config, inputs, (0.0, seconds), device)
    trained = ends[1:]
    skip = len(trained) // 5
    if len(trained) - skip < 2:
        raise SystemExit(f"--speed {seconds}: too short to time a step; give it more seconds")
    return calls[0], (trained[-1] - trained[skip]) / (len(trained) - 1 - skip)


def steps_within(work: Path, config: BuildConfig, inputs: tuple, ends: float, device: str) -> tuple[int, float]:
    """(steps that fit between the end of this timing, over 20 s, and `ends`, a time.time(); seconds per step).
    The run loads the pool too, inside that time."""
    loading, per_step = seconds_per_step(work, config, inputs, 20.0, device)
    steps = int(0.9 * (ends - time.time() - loading) / per_step)
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


def settings(config: BuildConfig) -> dict:
    """What a timing or a run records of the U-ViT's training settings."""
    return {
        "uvit_batch": config.uvit_batch,
        "uvit_downsample": config.uvit_downsample,
        "uvit_precision": config.uvit_precision,
        "uvit_compile": config.uvit_compile,
        "uvit_rotary": config.uvit_rotary,
    }


WRAP_UP_S = 30.0  # the build's export and the copy of the weights to $OUT, at the end of a run's minutes


def train(work: Path, config: BuildConfig, ends: float, out: Path, scratch: Path, probe: bool) -> None:
    """ends: the time by which the weights are in `out` (the 2026-12-04 session lost two runs whose training
    budget left no room for what came before and after it). probe: train as many steps as fit, in place of
    config.uvit_steps."""
    device = default_device()
    ends -= WRAP_UP_S
    shutil.rmtree(scratch, ignore_errors=True)
    copy_finished_stages(work, scratch)
    inputs = encoded_pool(scratch, config)  # once, for the probe and the run
    probed = None
    if probe:
        steps, probed = steps_within(scratch, config, inputs, ends, device)
        config = dataclasses.replace(config, uvit_steps=steps)
    start = time.time()
    status = build(scratch, config, budget_s=ends - start, progress=False, dest=scratch / "export", device=device)
    seconds = time.time() - start
    stage = scratch / uvit_stage_name(config)
    weights_only(stage, out / "uvit")
    record = {**environment(), "status": status, "uvit_steps": config.uvit_steps, "probe_s_per_step": probed}
    record |= {**settings(config), "uvit_lr": config.uvit_lr}
    record |= {"step": read_meta(stage)["step"], "train_s": round(seconds, 1)}
    (out / "run.json").write_text(json.dumps(record, indent=1))
    print(json.dumps(record))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default=DEFAULT_WORK, help="the build folder with the finished stages")
    parser.add_argument(
        "--minutes",
        type=float,
        default=5.0,
        help="this run's wall time after its imports: loading, timing and writing included",
    )
    parser.add_argument("--steps", type=int, default=0, help="U-ViT steps (0: as many as fit the minutes)")
    parser.add_argument("--batch", type=int, default=BuildConfig.uvit_batch, help="the U-ViT's batch")
    parser.add_argument("--lr", type=float, default=BuildConfig.uvit_lr, help="the U-ViT's peak learning rate")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32", help="BuildConfig.uvit_precision")
    parser.add_argument("--compile", action="store_true", help="BuildConfig.uvit_compile")
    parser.add_argument("--flat", action="store_true", help="the flat U-ViT (BuildConfig.uvit_downsample False)")
    parser.add_argument("--rotary", action="store_true", help="BuildConfig.uvit_rotary")
    parser.add_argument("--name", default="run", help="this run's output folder under $OUT, and its scratch's name")
    parser.add_argument("--tokens-only", action="store_true", help="only encode the pool into --work/data")
    parser.add_argument("--profile", type=float, default=0, help="only profile this many seconds of training")
    parser.add_argument("--speed", type=float, default=0, help="only time this many seconds of training")
    parser.add_argument("--flops", action="store_true", help="with --speed: also count one step's FLOPs")
    args = parser.parse_args()
    steps = args.steps or BuildConfig.uvit_steps  # a placeholder when probed
    config = BuildConfig(
        uvit_steps=steps,
        uvit_batch=args.batch,
        uvit_lr=args.lr,
        uvit_downsample=not args.flat,
        uvit_precision=args.precision,
        uvit_compile=args.compile,
        uvit_rotary=args.rotary,
    )
    if args.tokens_only:
        encoded_pool(Path(args.work), config)
        return
    out = Path(os.environ.get("OUT", "gpu-out")) / args.name
    if args.speed:
        inputs = encoded_pool(Path(args.work), config)
        per_step = seconds_per_step(Path(args.work), config, inputs, args.speed, default_device())[1]
        record = {**environment(), "s_per_step": round(per_step, 5), "timed": "steps", **settings(config)}
        if args.flops:
            record["tflop_per_step"] = round(step_flops(Path(args.work), config, inputs, default_device()) / 1e12, 4)
        out.mkdir(parents=True, exist_ok=True)
        (out / "speed.json").write_text(json.dumps(record))
        print(json.dumps(record))
        return
    if args.profile:
        table = profile(Path(args.work), config, encoded_pool(Path(args.work), config), args.profile, default_device())
        out.mkdir(parents=True, exist_ok=True)
        (out / "profile.txt").write_text(table)
        print(table)
        return
    ends = STARTED + args.minutes * 60
    train(Path(args.work), config, ends, out, Path(f"/tmp/gpu-uvit-{args.name}"), not args.steps)


if __name__ == "__main__":
    main()
