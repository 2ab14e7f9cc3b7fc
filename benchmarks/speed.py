"""Fast and lean, measured: our adapter training step and sampler against diffusers' on the same model.

Three parts, each against diffusers in the same run, on the same weights:
  train   one adapter training step: ours (StyleDrop adapter, rank 4, on cached VQ tokens and text) against
          UVit2DModel with PEFT LoRA r16 on to_q/to_k/to_v and AdamW, as diffusers' examples/amused/train_amused.py
          runs it (VQ-encoding its pixel batch every step, the prompt encoded once as in its single-image mode).
          Also theirs on cached tokens, to show what the cache is worth. Time per step and peak memory;
          with --compile, also ours under torch.compile (its compilation time reported apart).
  sample  images/s of our sampler (text guidance only: 2 branches; full StyleDrop guidance: 3 branches) against
          AmusedPipeline with its classifier-free guidance, decoding to pixels in both.
  roofline  this machine's measured matrix-multiply peak; every measurement reports its achieved FLOP/s
          (FLOPs counted by torch.utils.flop_counter) as a fraction of it.

Each measurement runs in a fresh process, so its peak memory is its own: on CPU the peak resident set above
what the process held with the models loaded ("step" column) and in all ("peak"); on CUDA,
max_memory_allocated. Results are appended to benchmarks/results/speed.jsonl.

    .venv/bin/python benchmarks/speed.py                                   # CPU defaults (about 30 min)
    .venv/bin/python benchmarks/speed.py --parts train --archs amused-512 --batch 2
    python benchmarks/speed.py --device cuda --dtype bf16 --batch 8 --images 8   # on a GPU

A run records its results when it ends. On a lent GPU, whose time is short, chain one run per part and arch
in the call's command, so that one cut off loses only its own rows: each measurement builds its models in a
fresh process, about 45 s apiece on an H200 (2026-12-04).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from common import append_result  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "speed.jsonl"
PROMPT = "a lighthouse on a cliff in watercolor painting style"
ARCHS = ("toy", "amused-256", "amused-512")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


# -- measuring ----------------------------------------------------------------------------------------------------
def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def proc_status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


class PeakMemory:
    """Peak memory from now on, in MiB: CUDA's allocator statistics, else the process's resident-set high-water
    mark (reset through /proc/self/clear_refs, Linux)."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")
        gc.collect()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
            self.before = torch.cuda.memory_allocated() / 2**20
        else:
            Path("/proc/self/clear_refs").write_text("5")
            self.before = proc_status_kib("VmRSS") / 1024

    def peak(self) -> float:
        return torch.cuda.max_memory_allocated() / 2**20 if self.cuda else proc_status_kib("VmHWM") / 1024


def timed(fn, repeats: int, device: str) -> float:
    """Median seconds of fn() over `repeats` runs (after the caller's warm-up); the lower middle for an even
    count."""
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[(len(times) - 1) // 2]


def count_flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def matmul_peak(device: str, dtype: torch.dtype, size: int, repeats: int = 5) -> float:
    """FLOP/s of the best of `repeats` square matrix products: the roofline every result is compared with."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    torch.mm(a, b)
    seconds = min(timed(lambda: torch.mm(a, b), 1, device) for _ in range(repeats))
    return 2 * size**3 / seconds


# -- the models ---------------------------------------------------------------------------------------------------
def load(arch: str, device: str, dtype: torch.dtype):
    from styledrop.models.amused import load_base
    from styledrop.models.architectures import random_base

    base = load_base(None) if arch == "toy" else random_base(arch)
    base.transformer.to(device, dtype)
    base.text_encoder.to(device, dtype)
    base.vqvae.to(device)
    return base


def diffusers_twin(base):
    """diffusers' UVit2DModel with our transformer's weights (its state dict loads unchanged). The toy base's
    learned position embedding has no counterpart upstream; the twin goes without it."""
    from diffusers import UVit2DModel

    config = {k: v for k, v in base.config.to_dict().items() if k != "position_embedding"}
    model = UVit2DModel(**config)
    state = {k: v for k, v in base.transformer.state_dict().items() if k != "position_embedding"}
    model.load_state_dict(state)
    param = next(base.transformer.parameters())
    return model.to(param.device, param.dtype)


def drop_our_transformer(base) -> None:
    base.transformer = None
    gc.collect()


def random_image(resolution: int):
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    pixels = (torch.rand(resolution, resolution, 3, generator=g) * 255).to(torch.uint8).numpy()
    return Image.fromarray(pixels)


# -- training steps -------------------------------------------------------------------------------------------------
def our_train_step(base, batch: int, checkpointing: bool):
    """Our training step exactly as train_adapter runs it; returns a no-argument callable."""
    from styledrop.adapters.config import AdapterConfig
    from styledrop.train import ADAPTER_NAME, TrainConfig, prepare_training, train_step

    config = TrainConfig(batch_size=batch, gradient_checkpointing=checkpointing)
    generator = torch.Generator().manual_seed(config.seed)
    image = random_image(base.resolution)
    adapter, data, optimizer = prepare_training(base, [image], [PROMPT], AdapterConfig(), config, generator)

    def step():
        with base.adapters.route(ADAPTER_NAME):
            train_step(base, data, adapter, optimizer, config, generator)

    return step


def their_train_step(base, batch: int, cached_tokens: bool):
    """diffusers' examples/amused/train_amused.py step with --use_lora (r16 on to_q, to_k, to_v): VQ-encode the
    pixel batch, mask by the cosine schedule, cross-entropy over every position with ignore_index on the
    unmasked ones, backward, clip, AdamW. `cached_tokens` skips the VQ encoding (not what the script does)."""
    from peft import LoraConfig

    hidden, pooled = base.encode_text([PROMPT])
    res = base.resolution
    model = diffusers_twin(base)
    drop_our_transformer(base)
    model.add_adapter(LoraConfig(r=16, lora_alpha=16, target_modules=["to_q", "to_k", "to_v"]))
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, weight_decay=1e-2)
    param = next(model.parameters())
    device, dtype = param.device, param.dtype
    hidden, pooled = hidden.to(dtype).repeat(batch, 1, 1), pooled.to(dtype).repeat(batch, 1)
    micro = torch.tensor([[res, res, 0, 0, 6.0]], device=device, dtype=dtype).repeat(batch, 1)
    pixels = torch.rand(batch, 3, res, res, device=device)
    mask_id, codebook = model.config.vocab_size - 1, model.config.codebook_size
    cached = vq_encode(base.vqvae, pixels) if cached_tokens else None

    def step():
        tokens = cached if cached_tokens else vq_encode(base.vqvae, pixels)
        b, n = tokens.shape
        mask_prob = torch.cos(torch.rand(b, device=device) * math.pi * 0.5)
        num_masked = (n * mask_prob).round().clamp(min=1)
        mask = torch.rand(b, n, device=device).argsort(dim=-1) < num_masked[:, None]
        input_ids = torch.where(mask, mask_id, tokens).reshape(b, model.config.sample_size, -1)
        labels = torch.where(mask, tokens, -100)
        logits = model(input_ids=input_ids, encoder_hidden_states=hidden, micro_conds=micro, pooled_text_emb=pooled)
        logits = logits.reshape(b, codebook, -1).permute(0, 2, 1).reshape(-1, codebook)
        loss = F.cross_entropy(logits, labels.view(-1), ignore_index=-100)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


@torch.no_grad()
def vq_encode(vqvae, pixels: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, N) ids, as train_amused.py encodes (AmusedBase.encode_images needs our transformer,
    which their step has dropped)."""
    return vqvae.quantize(vqvae.encode(pixels).latents)[2][2].reshape(pixels.shape[0], -1)


def measure_train(job: dict) -> dict:
    device, dtype = job["device"], DTYPES[job["dtype"]]
    base = load(job["arch"], device, dtype)
    compiled = job["impl"] == "ours-compiled"
    if job["impl"] in ("ours", "ours-compiled"):
        step = our_train_step(base, job["batch"], job["checkpointing"])
    else:
        step = their_train_step(base, job["batch"], job["impl"] == "diffusers-cached")
    autocast = torch.autocast(device.split(":")[0], dtype) if dtype != torch.float32 else contextlib.nullcontext()
    with autocast, tempfile.TemporaryDirectory() as cache:
        if compiled:
            # A cold compilation, as a user's first run pays it: not from an earlier run's cache.
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
            base.transformer.compile(dynamic=False)
        memory = PeakMemory(device)
        start = time.perf_counter()
        step()  # warm-up: allocator, optimiser state, and the compilation when compiled
        warmup = time.perf_counter() - start
        seconds = timed(step, job["repeats"], device)
        peak = memory.peak()
        # The counter cannot see into compiled code; set_stance needs torch 2.6, so only when compiled.
        eager = torch.compiler.set_stance("force_eager") if compiled else contextlib.nullcontext()
        with eager:
            flops = count_flops(step)
    return {"seconds": seconds, "warmup_s": warmup, "peak_mib": peak, "step_mib": peak - memory.before, "flops": flops}


# -- sampling -----------------------------------------------------------------------------------------------------
def our_sampler(base, impl: str, steps: int, images: int):
    from styledrop.adapters.config import AdapterConfig
    from styledrop.pipeline import SampleConfig, sample_images

    adapter = None
    if impl == "ours-styledrop":
        adapter = "style"
        base.new_adapter(adapter, AdapterConfig(), torch.Generator().manual_seed(0))
    config = SampleConfig(steps=steps, batch_size=images)
    return lambda k=steps: sample_images(
        base, adapter, [PROMPT] * images, list(range(images)), dataclasses.replace(config, steps=k)
    )


def their_sampler(base, steps: int, images: int):
    from diffusers import AmusedPipeline, AmusedScheduler

    transformer = diffusers_twin(base)
    drop_our_transformer(base)
    pipe = AmusedPipeline(
        vqvae=base.vqvae,
        tokenizer=base.tokenizer,
        text_encoder=base.text_encoder,
        transformer=transformer,
        scheduler=AmusedScheduler(mask_token_id=transformer.config.vocab_size - 1),
    )
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator(base.vqvae.device).manual_seed(0)
    return lambda k=steps: pipe(
        [PROMPT] * images, num_inference_steps=k, guidance_scale=5.0, generator=generator, output_type="pt"
    )


def measure_sample(job: dict) -> dict:
    device, dtype = job["device"], DTYPES[job["dtype"]]
    base = load(job["arch"], device, dtype)
    if job["impl"] == "diffusers":
        run = their_sampler(base, job["steps"], job["images"])
    else:
        run = our_sampler(base, job["impl"], job["steps"], job["images"])
    with torch.inference_mode():
        run(2)  # warm-up
        seconds = timed(run, job["repeats"], device)
        one, two = count_flops(lambda: run(1)), count_flops(lambda: run(2))
    flops = one + (job["steps"] - 1) * (two - one)  # every step costs the same; text and VQ once per call
    return {"seconds": seconds, "images_per_s": job["images"] / seconds, "flops": flops}


# -- end to end ----------------------------------------------------------------------------------------------------
def measure_e2e(job: dict) -> dict:
    """Time to learn a style on the toy base: load it, train a round-1 adapter with the defaults, save it."""
    import tempfile

    from styledrop.adapters.config import AdapterConfig
    from styledrop.demo import STYLE
    from styledrop.models.amused import load_base
    from styledrop.toyworld.evaluate import train_round1
    from styledrop.train import TrainConfig

    start = time.perf_counter()
    base = load_base(None, job["device"])
    with tempfile.TemporaryDirectory() as out:
        train_round1(base, STYLE, AdapterConfig(), TrainConfig(), Path(out) / "adapter", False)
    return {"seconds": time.perf_counter() - start, "steps": TrainConfig.steps, "batch": TrainConfig.batch_size}


H100_BF16_PEAK = 798e12  # measured on the lent H100 (tool library, device/KINDS.md): 8192^3 bf16 matmul


def project_round1(train_rows: list[dict]) -> dict | None:
    """aMUSEd-512 round 1 (1000 steps, batch 8) from our measured FLOPs per step, at 40% of an H100's measured
    bf16 peak (the GPU target of this benchmark): a projection, not a measurement."""
    ours = [r for r in train_rows if r["arch"] == "amused-512" and r["impl"] == "ours" and not r["checkpointing"]]
    if not ours:
        return None
    flops_per_step = ours[0]["flops"] * 8 / ours[0]["batch"]
    return {
        "flops_per_step_batch8": flops_per_step,
        "h100_seconds_at_40pct": 1000 * flops_per_step / (0.4 * H100_BF16_PEAK),
    }


# -- the driver ---------------------------------------------------------------------------------------------------
def worker(job: dict) -> None:
    torch.manual_seed(0)
    if job["kind"] == "roofline":
        out = {"flops_per_s": matmul_peak(job["device"], DTYPES[job["dtype"]], job["size"])}
    elif job["kind"] == "train":
        out = measure_train(job)
    elif job["kind"] == "e2e":
        out = measure_e2e(job)
    else:
        out = measure_sample(job)
    print("RESULT " + json.dumps(out), flush=True)


def run_job(job: dict) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(job)], capture_output=True, text=True, check=False
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise SystemExit(f"worker failed for {job}:\n{proc.stderr[-3000:]}")
    return {**job, **json.loads(lines[-1][len("RESULT ") :])}


def train_jobs(args) -> list[dict]:
    jobs = []
    for arch in args.archs:
        variants = [("ours", False), ("diffusers", False), ("diffusers-cached", False)]
        if arch == "amused-512":
            variants.append(("ours", True))
        if args.compile:
            variants.append(("ours-compiled", False))
        for impl, checkpointing in variants:
            jobs.append({"kind": "train", "arch": arch, "impl": impl, "checkpointing": checkpointing,
                         "batch": args.toy_batch if arch == "toy" else args.batch,
                         "repeats": args.repeats})  # fmt: skip
    return jobs


def sample_jobs(args) -> list[dict]:
    return [
        {"kind": "sample", "arch": arch, "impl": impl, "steps": steps, "images": args.images, "repeats": args.repeats}
        for arch in args.archs
        if arch != "toy" or args.sample_toy
        for steps in args.decode_steps
        for impl in ("ours-text", "ours-styledrop", "diffusers")
    ]


def summarise_train(rows: list[dict], peak: float) -> list[dict]:
    verdicts = []
    for arch in dict.fromkeys(r["arch"] for r in rows):
        by = {(r["impl"], r["checkpointing"]): r for r in rows if r["arch"] == arch}
        ours, theirs = by[("ours", False)], by[("diffusers", False)]
        verdict = {
            "arch": arch,
            "time_ratio": ours["seconds"] / theirs["seconds"],
            "time_ratio_vs_cached": ours["seconds"] / by[("diffusers-cached", False)]["seconds"],
            "peak_ratio": ours["peak_mib"] / theirs["peak_mib"],
            "step_memory_ratio": ours["step_mib"] / theirs["step_mib"],
            "flops_fraction": ours["flops"] / ours["seconds"] / peak,
        }
        if ("ours-compiled", False) in by:
            compiled = by[("ours-compiled", False)]
            verdict["compiled_time_ratio"] = compiled["seconds"] / theirs["seconds"]
            verdict["compiled_flops_fraction"] = compiled["flops"] / compiled["seconds"] / peak
            verdict["compile_s"] = compiled["warmup_s"] - ours["warmup_s"]
        if ("ours", True) in by:
            verdict["checkpointed_peak_ratio"] = by[("ours", True)]["peak_mib"] / theirs["peak_mib"]
            verdict["checkpointed_step_memory_ratio"] = by[("ours", True)]["step_mib"] / theirs["step_mib"]
        verdicts.append(verdict)
    return verdicts


def summarise_sample(rows: list[dict], peak: float) -> list[dict]:
    verdicts = []
    for arch, steps in dict.fromkeys((r["arch"], r["steps"]) for r in rows):
        by = {r["impl"]: r for r in rows if r["arch"] == arch and r["steps"] == steps}
        theirs = by["diffusers"]["images_per_s"]
        verdicts.append(
            {
                "arch": arch,
                "steps": steps,
                "text_ratio": by["ours-text"]["images_per_s"] / theirs,
                "styledrop_ratio": by["ours-styledrop"]["images_per_s"] / theirs,
                "flops_fraction": by["ours-text"]["flops"] / by["ours-text"]["seconds"] / peak,
            }
        )
    return verdicts


def print_table(rows: list[dict], columns: list[str]) -> None:
    def cell(v):
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    widths = [max(len(c), *(len(cell(r.get(c, ""))) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for r in rows:
        print("  ".join(cell(r.get(c, "")).ljust(w) for c, w in zip(columns, widths, strict=True)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=["train", "sample", "e2e"], choices=["train", "sample", "e2e"])
    parser.add_argument("--archs", nargs="+", default=list(ARCHS), choices=ARCHS)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=sorted(DTYPES))
    parser.add_argument("--batch", type=int, default=4, help="training batch size of the aMUSEd architectures")
    parser.add_argument("--toy-batch", type=int, default=8, help="training batch size on the toy base")
    parser.add_argument("--images", type=int, default=1, help="images per sampling call")
    parser.add_argument("--decode-steps", type=int, nargs="+", default=[12, 36])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sample-toy", action="store_true", help="also time sampling on the toy base")
    parser.add_argument("--compile", action="store_true", help="also time our training step under torch.compile")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(json.loads(args.worker))

    common = {"device": args.device, "dtype": args.dtype}
    size = 4096 if args.device == "cpu" else 8192
    peak = run_job({**common, "kind": "roofline", "size": size})["flops_per_s"]
    print(f"matrix-multiply peak ({args.dtype}, {size}^3): {peak / 1e9:.1f} GFLOP/s")
    record: dict = {"benchmark": "speed", "args": {k: v for k, v in vars(args).items() if k != "worker"},
                    "matmul_peak_flops": peak}  # fmt: skip
    for part, make_jobs, summarise in (
        ("train", train_jobs, summarise_train),
        ("sample", sample_jobs, summarise_sample),
    ):
        if part not in args.parts:
            continue
        rows = []
        for job in make_jobs(args):
            rows.append(run_job({**common, **job}))
            r = rows[-1]
            r["gflop_per_s"] = r["flops"] / r["seconds"] / 1e9
            r["of_peak"] = r["flops"] / r["seconds"] / peak
            print(f"  {part} {r['arch']} {r['impl']}: {r['seconds']:.2f} s", flush=True)
        columns = ["arch", "impl", "seconds", "gflop_per_s", "of_peak"]
        columns += (
            ["checkpointing", "batch", "warmup_s", "peak_mib", "step_mib"]
            if part == "train"
            else ["steps", "images_per_s"]
        )
        print_table(rows, columns)
        verdicts = summarise(rows, peak)
        print_table(verdicts, list(verdicts[0]))
        record[part] = {"rows": rows, "verdicts": verdicts}
    if "train" in record and (projection := project_round1(record["train"]["rows"])):
        record["amused512_round1_projection"] = projection
        print(f"aMUSEd-512 round 1 on an H100, projected: {projection['h100_seconds_at_40pct']:.1f} s")
    if "e2e" in args.parts:
        record["e2e_toy"] = run_job({**common, "kind": "e2e"})
        print(f"toy base, round 1 end to end: {record['e2e_toy']['seconds']:.1f} s")
    append_result(RESULTS, record)


if __name__ == "__main__":
    main()
