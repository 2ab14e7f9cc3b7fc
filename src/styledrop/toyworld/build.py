"""Building the shapes-world base model, reproducibly from a seed, in resumable stages.

Stages run in order: `vq` (diffusers VQModel on renders and random textures), `clip` (a tiny transformers
CLIPModel trained contrastively on renders and prompts), `oracle`, then, with `vq_local_steps`, `vq_local`
(the merged VQ fine-tuned with an encoder that sees only its own 2x2 patch), and `uvit` (our U-ViT,
masked-token objective with conditioning dropout, on the VQ's codes merged into `token_groups` groups; or
`uvit_local`, the same on the local VQ's codes). The base ships the VQ whose codes its U-ViT predicts.
Each stage checkpoints to WORK/<stage>/ (safetensors + JSON) and stops cleanly at a time budget; running the
build again continues where it stopped. A finished stage keeps its weights only.

The U-ViT stage, the long one, runs on any device (`build(..., device="cuda")`). Its random draws stay on a CPU
generator, so it draws the same batches and masks on every device and a checkpoint resumes on another one. It
reads the pool as tokens cached in WORK/data, so a resumed stage neither renders nor encodes the pool again.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..checkpoint import is_complete, load_state, load_weights, read_meta, save_state, save_weights
from ..draws import choice, rand, randint
from ..errors import StyleDropError, check_ranges
from ..fileio import replace_dir, write_json, write_with
from ..images import array_to_tensor
from ..models.clip import Preprocess
from ..models.uvit import UViT, UViTConfig
from .codebook import merge_codebook
from .oracle import OracleConfig, load_oracle, save_oracle, train_oracle
from .render import COLOUR_NAMES, FAMILIES, SHAPES, SIZE, shape_mask
from .world import random_textures, render_all, sample_scenes

PRECISIONS = ("fp32", "bf16")  # BuildConfig.uvit_precision
POSITION_INITS = ("random", "fourier")  # BuildConfig.uvit_position_init


@dataclass(frozen=True)
class BuildConfig:
    seed: int = 0
    vq_images: int = 20_000
    vq_textures: int = 5_000
    vq_steps: int = 4_000
    vq_batch: int = 64
    vq_lr: float = 2e-3
    vq_restart_every: int = 100  # steps between restarts of unused codebook entries
    codebook_size: int = 2048
    # 2x2-pixel tokens (a 16x16 grid): 4x4-pixel tokens (measured: the v2 build) smear stripes, checkers,
    # hatching and grain into flat colour, so neither the base nor an adapter could draw a pattern family.
    vq_blocks: tuple[int, ...] = (32, 64)  # one downsampling per extra block
    pool: int = 60_000  # rendered scenes shared by the CLIP and U-ViT stages
    clip_steps: int = 2_000
    clip_batch: int = 256
    clip_lr: float = 1e-3
    # The U-ViT's target: the VQ's codebook merged by k-means into this many groups (0: all codes). The conv
    # encoder picks among near-duplicate codes by a token's surroundings, so the exact code is barely
    # predictable from context (benchmarks/toyworld_tokens.py); 256 groups keep the family readable.
    token_groups: int = 256
    # Steps of the `vq_local` stage (0: no such stage). A token of the merged VQ still depends on its patch's
    # surroundings, so only 3% of them can be predicted from their 4 neighbours (benchmarks/toyworld_inpaint.py)
    # and samples come out speckled; a local encoder gives a flat region one code, while the conv decoder
    # still smooths near-misses (k-means patch tokens, with no decoder, sampled worse: toyworld_uvit_ab.py).
    # Off: with 400 steps its U-ViT honoured the family in 32% of samples (merged: 27%) and drew the asked
    # shape in 82% (91%); benchmarks/family_bar.md has the numbers.
    vq_local_steps: int = 0
    uvit_steps: int = 8_000
    # Cosine cycles of uvit_steps each (warm restarts). A cycle after the first starts from the last one's weights
    # with a fresh AdamW (a finished stage keeps weights only) and a new pool of scenes, in a stage of its own
    # (`uvit_cycle2`, ...), so a finished build trains further without redoing what it has done (and, once a cycle
    # is finished, needs none of the checkpoints before it). 12, measured cycle by cycle (benchmarks/family_bar.md):
    # the named family, honoured in 43% of samples after one (64% with descriptor guidance), levels at 90% with
    # descriptor guidance over the ninth to eleventh; the twelfth, with striped and hatched scenes drawn twice as
    # often (uvit_family_boost), reaches 92.1% of 768 samples, the shipped base.
    uvit_cycles: int = 12
    uvit_batch: int = 64
    uvit_lr: float = 1e-3
    # ConvNeXt blocks at the 16x16 token grid on each side of the U-ViT's 2x2 resampling (UViTConfig): 0, as
    # measured by benchmarks/toyworld_uvit_ab.py (merged256_fullres learned no faster per second), and a U-ViT
    # with 1, trained 3750 steps, drew fewer of the asked shapes than the one-cycle base and, with descriptor
    # guidance, honoured the named family less often (benchmarks/family_bar.md, 2026-12-02).
    uvit_full_resolution_blocks: int = 0
    # Channels of the U-ViT's conv path (the token embedding stays 64 wide). At 64 its 2x2 downsampling squeezes a
    # cell's four tokens into a quarter of their width; 256 keeps them all and learns more per step, at 2.5x the
    # time per step (benchmarks/toyworld_uvit_ab.py, merged256_wide). 64: trained 4850 steps at 256, it drew more of
    # the asked shapes (97.7% against 91.4%) but honoured the named family no more often (benchmarks/family_bar.md).
    uvit_block_channels: int = 64
    # Width and depth of the U-ViT's transformer (its 8x8 positions); the MLP is 3x the width. 128 and 5: at 256 and
    # 8, trained 3500 steps, it drew fewer of the asked shapes (78.9%) and honoured the named family no more often
    # (25.0%; 34.4% with descriptor guidance against 60.9%) than the one-cycle base (benchmarks/family_bar.md,
    # 2026-12-02).
    uvit_hidden_size: int = 128
    uvit_layers: int = 5
    # False: no 2x2 down/up-sampling, so the transformer layers see all 16x16 tokens, one position each, as
    # MaskGIT's do (2.2-3.0 s per step on 2 CPU cores). Kept True: trained 8000 steps, the flat U-ViT drew the asked
    # shape in 99% of samples but honoured the named family in 36% (59% with descriptor guidance;
    # benchmarks/family_bar.md, 2026-12-03), where the one-cycle base reaches 91% and 27% (61%): both miss the 90%
    # family bar. Sampled with the plausibility constraint it leads, 58% against 43% (62.5% after 3700 steps at
    # batch 256 on an H200), still far from the bar; the resampling U-ViT trained on for twelve cycles cleared it.
    uvit_downsample: bool = True
    # "bf16": the U-ViT's forward autocast to bfloat16, for a GPU: on an H200 the flat U-ViT's step at batch 256
    # took 0.033 s against 0.048 s in fp32 (benchmarks/gpu_uvit.py). "fp32" on a CPU, which emulates bf16.
    uvit_precision: str = "fp32"
    # torch.compile the U-ViT's training forward, for a GPU, where a bf16 step spends 80% of its time in the
    # elementwise kernels that compiling fuses (benchmarks/gpu_uvit.py; not yet timed there). Off: on 2 CPU cores it
    # took a step at batch 64 only from 0.49 to 0.44 s (flat U-ViT: 1.76 to 1.71 s), for the same losses, and
    # every start of the stage (each resume) compiles again, with a C++ compiler.
    uvit_compile: bool = False
    # "fourier": the U-ViT's learned position embedding starts as plane waves over the token grid (8 orientations,
    # periods of 2-4 tokens, the periods of the world's stripes, dots and hatching), so that a periodic fill is a
    # sum of features the U-ViT already has; "random": the usual small noise. Measured from scratch, 2000 steps each
    # (benchmarks/family_bar.md, 2026-12-04): fourier drew the asked shape in 91% of samples against 66%, but
    # striped, dotted, checkered and hatched fills in 0-6% either way. "random" stays the default: the shipped base
    # was built so.
    uvit_position_init: str = "random"
    # Rotary positions in the transformer's self-attention (UViTConfig.rotary_positions), so that attention depends
    # on the offset between tokens, the same anywhere on the grid, as a periodic fill does. Off: trained from
    # scratch on the minimal world's striped scenes (1500 steps, benchmarks/family_bar.md, 2026-12-04) it ended at a
    # lower loss (2.01 against 2.07 nats) but drew striped fills no more often (8% against 14%), and the shipped
    # base was built without it.
    uvit_rotary: bool = False
    # The U-ViT's masked-token loss weighs a token inside the shape this many times one of the backdrop (by the
    # shape's coverage of the token's pixels). The backdrop's variety is what most delays the periodic fills, and its
    # tokens, most of an image's, carry most of the loss: trained from scratch on striped scenes alone for 7500 steps,
    # weighing the fill 4 times drew striped fills in 19% of striped prompts against 0%, the asked shape in 91%
    # against 97% (benchmarks/family_bar.md, 2026-12-06). On every family at once, in a second cycle, it honoured the
    # named family no more often (49% against 55%, stripes 0% in both); trained on, the weighted line reached the bar
    # (the unweighted one was measured to its second cycle only). One weight per cycle, the last for every cycle
    # after it: (1, 4), an unweighted first cycle (the base shipped until 2026-12-07) and weighted ones after it.
    uvit_fill_weight: tuple[float, ...] = (1.0, 4.0)
    # A U-ViT cycle draws the scenes of uvit_boost_families this many times as often as the others' (one per cycle,
    # the last for every cycle after it). The fill-weighted line levelled at 90% of samples honouring the named
    # family over its ninth to eleventh cycles, hatched (56-64%) and striped (81-89%) short of it and the rest at
    # 86-100% (benchmarks/family_bar.md, 2026-12-07): a late cycle spends more of its steps where the misses are.
    uvit_family_boost: tuple[float, ...] = (1.0,) * 11 + (2.0,)
    uvit_boost_families: tuple[str, ...] = ("striped", "hatched")
    plain_prompt_rate: float = 0.25  # prompts without the style descriptor, so "a red star" means something
    cond_dropout: float = 0.1
    save_every_s: float = 300.0

    PER_CYCLE = ("uvit_fill_weight", "uvit_family_boost")  # one value per U-ViT cycle, the last for the rest

    def __post_init__(self):
        object.__setattr__(self, "vq_blocks", tuple(self.vq_blocks))
        object.__setattr__(self, "uvit_boost_families", tuple(self.uvit_boost_families))
        for per_cycle in self.PER_CYCLE:  # one value for every cycle, or a list (from JSON)
            object.__setattr__(self, per_cycle, tuple(np.atleast_1d(getattr(self, per_cycle)).tolist()))
        check_ranges(
            self,
            {
                "seed": 0 <= self.seed < 2**63,
                **{f: getattr(self, f) >= 1 for f in ("vq_images", "vq_steps", "vq_batch", "vq_restart_every")},
                **{f: getattr(self, f) >= 1 for f in ("pool", "clip_steps", "clip_batch", "uvit_steps", "uvit_batch")},
                "uvit_cycles": self.uvit_cycles >= 1,
                **{f: len(getattr(self, f)) >= 1 and min(getattr(self, f)) > 0 for f in self.PER_CYCLE},
                "uvit_boost_families": set(self.uvit_boost_families) <= set(FAMILIES),
                **{f: 0 < getattr(self, f) <= 1 for f in ("vq_lr", "clip_lr", "uvit_lr")},
                "vq_textures": self.vq_textures >= 0,
                "vq_local_steps": self.vq_local_steps >= 0,
                "codebook_size": self.codebook_size >= 2,
                "token_groups": self.token_groups == 0 or 2 <= self.token_groups <= self.codebook_size,
                "vq_blocks": 1 <= len(self.vq_blocks) <= 4 and all(c >= 16 and c % 16 == 0 for c in self.vq_blocks),
                "uvit_layers": self.uvit_layers >= 1,
                "uvit_full_resolution_blocks": self.uvit_full_resolution_blocks >= 0,
                "plain_prompt_rate": 0 <= self.plain_prompt_rate <= 1,
                "cond_dropout": 0 <= self.cond_dropout < 1,
                "save_every_s": self.save_every_s >= 0,
            },
        )
        # The U-ViT's attention has 4 heads, in its transformer and in its conv blocks.
        for option, width in (("--uvit-hidden", self.uvit_hidden_size), ("--uvit-channels", self.uvit_block_channels)):
            if width < 4 or width % 4:
                raise StyleDropError(f"{option}: must be a positive multiple of 4 (4 attention heads), got {width!r}")
        for option, value, choices in (
            ("--uvit-position-init", self.uvit_position_init, POSITION_INITS),
            ("--uvit-precision", self.uvit_precision, PRECISIONS),
        ):
            if value not in choices:
                raise StyleDropError(f"{option}: must be {' or '.join(choices)}, got {value!r}")
        if self.uvit_full_resolution_blocks and not self.uvit_downsample:
            raise StyleDropError("--uvit-flat: a flat U-ViT has no full-resolution blocks to add (all its blocks are)")

    def fill_weight(self, cycle: int) -> float:
        """The fill weight of U-ViT cycle `cycle` (from 1)."""
        return of_cycle(self.uvit_fill_weight, cycle)

    def family_boost(self, cycle: int) -> float:
        """How many times as often U-ViT cycle `cycle` (from 1) draws a scene of uvit_boost_families."""
        return of_cycle(self.uvit_family_boost, cycle)


def of_cycle(values: tuple[float, ...], cycle: int) -> float:
    """A per-cycle setting's value in cycle `cycle` (from 1): the last one holds for every cycle after it."""
    return values[min(cycle, len(values)) - 1]


def vq_model(config: BuildConfig):
    from diffusers import VQModel

    blocks = tuple(config.vq_blocks)
    return VQModel(
        block_out_channels=blocks,
        down_block_types=("DownEncoderBlock2D",) * len(blocks),
        up_block_types=("UpDecoderBlock2D",) * len(blocks),
        layers_per_block=2,
        latent_channels=32,
        vq_embed_dim=32,
        num_vq_embeddings=config.codebook_size,
        norm_num_groups=16,
        mid_block_add_attention=False,
        sample_size=32,
        lookup_from_codebook=True,
        force_upcast=False,
    )


def token_vq(vq, config: BuildConfig):
    """vq with its codebook merged: the VQ whose codes the U-ViT predicts, unless a `vq_local` stage runs."""
    return merge_codebook(vq, config.token_groups, config.seed) if config.token_groups else vq


def local_encoder(vq):
    """vq with an encoder that sees only its own 2x2-pixel patch: every 3x3 conv keeps its centre tap (the
    stride-2 one, the 2x2 taps over its patch, as diffusers pads it by (0, 1, 0, 1)), and gradient hooks keep
    the other taps at zero while it trains. The decoder keeps its 3x3 convs. (GroupNorm still normalises by
    per-image statistics: a flat region gets one code within an image.)"""
    for conv in vq.encoder.modules():
        if isinstance(conv, torch.nn.Conv2d) and conv.kernel_size == (3, 3):
            keep = torch.zeros(3, 3)
            if conv.stride == (2, 2):
                keep[:2, :2] = 1
            else:
                keep[1, 1] = 1
            with torch.no_grad():
                conv.weight.mul_(keep)
            conv.weight.register_hook(lambda grad, keep=keep: grad * keep)
    return vq


def cosine_lr(step: int, total: int, peak: float, warmup: int = 200) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup))))


DEFAULT_WORK = "toyworld-build"  # the build folder, relative to where the build runs (the repo root)
LOAD_ONLY = -1.0  # a deadline that runs no step: a finished stage loads, an unfinished one stays as it is
SHOW_EVERY = 20  # steps between the progress bar's readings of a step's statistics


def run_stage(
    work: Path,
    name: str,
    modules: dict[str, torch.nn.Module],
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    step_fn: Callable[[int], dict],
    total: int,
    meta: dict,
    deadline: float,
    save_every_s: float,
    progress: bool = True,
    running: dict[str, torch.nn.Module] | None = None,
) -> bool:
    """Run step_fn(step) from the stage's checkpoint to `total`; returns True when the stage is finished. It runs
    at least one step unless the deadline is LOAD_ONLY, however early the deadline.

    `running` holds state that matters only while the stage runs (statistics kept in buffers): it is
    checkpointed for an exact resume, and dropped once the stage is done.
    """
    folder = work / name
    step = 0
    checkpointed = {**modules, **(running or {})}
    saved = read_meta(folder) if is_complete(folder) else None
    if saved is not None:
        if saved.get("architecture", meta.get("architecture")) != meta.get("architecture"):
            raise StyleDropError(f"{folder}: a checkpoint of another architecture; move it away to start over")
        if saved.get("done"):
            load_weights(folder, modules)
            return True
    if deadline == LOAD_ONLY:
        return False
    if saved is not None:
        step = int(load_state(folder, checkpointed, optimizer, generator)["step"])
    last_save = time.time()
    bar = tqdm(range(step, total), initial=step, total=total, desc=name, disable=not progress)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, total, meta["lr"])
        stats = step_fn(step)
        if step % SHOW_EVERY == 0:  # reading a statistic left on a GPU makes the CPU wait for the GPU
            bar.set_postfix({k: f"{v:.4f}" for k, v in stats.items()}, refresh=False)
        if step + 1 < total and (time.time() > deadline or time.time() - last_save > save_every_s):
            save_state(folder, checkpointed, optimizer, generator, {**meta, "step": step + 1})
            last_save = time.time()
            if time.time() > deadline:
                return False
    save_weights(folder, modules, {**meta, "step": total, "done": True})
    return True


class Buffer(torch.nn.Module):
    """A tensor that checkpoints with the modules (a running statistic, say)."""

    def __init__(self, value: torch.Tensor):
        super().__init__()
        self.register_buffer("value", value)


# -- stage: VQ ---------------------------------------------------------------------------------------------------------
def vq_data(config: BuildConfig) -> torch.Tensor:
    renders = render_all(sample_scenes(config.vq_images, seed=config.seed + 101))
    textures = random_textures(config.vq_textures, seed=config.seed + 102)
    return array_to_tensor(np.concatenate([renders, textures]))


def vq_forward(vq, pixels: torch.Tensor):
    """-> (reconstruction, codebook + commitment loss, code indices (n*h*w,))."""
    latents = vq.encode(pixels).latents
    quant, commit, (_, _, indices) = vq.quantize(latents)
    return vq.decoder(vq.post_quant_conv(quant), None), commit, indices, latents


def edge_loss(recon: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """L1 between horizontal and vertical pixel differences: pixel losses alone blur stripes and dots."""
    return sum(F.l1_loss(recon.diff(dim=d), pixels.diff(dim=d)) for d in (-1, -2))


def vq_stage(
    work: Path,
    name: str,
    make_vq: Callable,
    steps: int,
    config: BuildConfig,
    seed: int,
    deadline: float,
    progress: bool,
):
    """Train make_vq() (made after seeding) on renders and random textures (reconstruction + edge + commitment
    losses, restarting dead codes) as stage `name`; returns it when the stage is finished, else None."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    vq = make_vq()
    optimizer = torch.optim.AdamW(vq.parameters(), lr=config.vq_lr, weight_decay=0.0)
    codes = vq.config.num_vq_embeddings
    data = None
    usage = Buffer(torch.zeros(codes))

    def step_fn(step: int) -> dict:
        nonlocal data
        if data is None:
            data = vq_data(config)
        idx = torch.randint(len(data), (config.vq_batch,), generator=generator)
        pixels = data[idx]
        recon, commit, indices, latents = vq_forward(vq, pixels)
        loss = F.l1_loss(recon, pixels) + F.mse_loss(recon, pixels) + edge_loss(recon, pixels) + commit.mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        usage.value.mul_(0.99).add_(torch.bincount(indices.flatten(), minlength=codes).float())
        if step % config.vq_restart_every == config.vq_restart_every - 1:
            restart_dead_codes(vq, usage.value, latents.detach(), generator)
        mse = F.mse_loss(recon.clamp(0, 1), pixels).item()
        return {"loss": loss.item(), "psnr": 10 * math.log10(1 / max(mse, 1e-10))}

    meta = {"stage": name, "config": asdict(config), "lr": config.vq_lr}
    if run_stage(
        work,
        name,
        {"vq": vq},
        optimizer,
        generator,
        step_fn,
        steps,
        meta,
        deadline,
        config.save_every_s,
        progress,
        running={"usage": usage},
    ):
        return vq
    return None


def train_vq(work: Path, config: BuildConfig, deadline: float, progress: bool = True):
    return vq_stage(work, "vq", lambda: vq_model(config), config.vq_steps, config, config.seed, deadline, progress)


def train_vq_local(work: Path, config: BuildConfig, vq, deadline: float, progress: bool = True):
    """The merged VQ (`token_vq`) fine-tuned with a `local_encoder`."""

    def make() -> torch.nn.Module:
        return local_encoder(token_vq(vq, config).train())

    return vq_stage(work, "vq_local", make, config.vq_local_steps, config, config.seed + 3, deadline, progress)


def uvit_tokens(work: Path, config: BuildConfig, vq, deadline: float, progress: bool = True):
    """The VQ whose codes the U-ViT predicts and the base ships; None while its stage is unfinished."""
    if config.vq_local_steps:
        return train_vq_local(work, config, vq, deadline, progress)
    return token_vq(vq, config)


def uvit_stage_name(config: BuildConfig, cycle: int = 1) -> str:
    """A U-ViT's checkpoint folder: one per token language, so both can live in one build folder, and one per
    cycle after the first."""
    name = "uvit_local" if config.vq_local_steps else "uvit"
    return name if cycle == 1 else f"{name}_cycle{cycle}"


def is_finished(folder: Path) -> bool:
    """Whether a stage's folder holds its finished weights."""
    return is_complete(folder) and bool(read_meta(folder).get("done"))


def latest_uvit_cycle(work: Path, config: BuildConfig) -> int:
    """The last U-ViT cycle with a checkpoint in work (1 when none has one)."""
    cycle = 1
    while is_complete(work / uvit_stage_name(config, cycle + 1)):
        cycle += 1
    return cycle


def restart_dead_codes(vq, usage: torch.Tensor, latents: torch.Tensor, generator: torch.Generator) -> None:
    """Move codes nobody uses onto random encoder outputs of the batch, so the whole codebook gets used."""
    dead = (usage < 1e-3).nonzero().flatten()
    if len(dead) == 0:
        return
    flat = latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1])
    picks = torch.randint(len(flat), (len(dead),), generator=generator)
    with torch.no_grad():
        vq.quantize.embedding.weight[dead] = flat[picks]
    usage[dead] = 1.0


# -- the shared pool of rendered scenes --------------------------------------------------------------------------------
POOL_SEED = 201  # added to the build's seed: the first pool's scenes
CYCLE_SEED = 1000  # added to a U-ViT cycle's seeds (its pool's, its draws') for each cycle after the first


def pool_scenes(config: BuildConfig, cycle: int = 1) -> list:
    """The pool's scenes: the build's first, shared by the CLIP and the U-ViT's first cycle, or a later cycle's."""
    return sample_scenes(config.pool, seed=config.seed + POOL_SEED + CYCLE_SEED * (cycle - 1))


def pool_name(config: BuildConfig, cycle: int = 1) -> str:
    """Which pool a cache holds: the build's seed, the pool's size and, after the first, the cycle."""
    return f"{config.seed}-{config.pool}" + (f"-cycle{cycle}" if cycle > 1 else "")


def scene_pool(work: Path, config: BuildConfig, cycle: int = 1):
    """(scenes, renders (n, 32, 32, 3) uint8), cached in WORK/data (regenerable from the seed, not committed)."""
    scenes = pool_scenes(config, cycle)
    cache = work / "data" / f"pool-{pool_name(config, cycle)}.npy"
    if cache.is_file():
        return scenes, np.load(cache)
    renders = render_all(scenes)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, renders)
    return scenes, renders


WORDS = ("a", "in", "style", *SHAPES, *COLOUR_NAMES, *FAMILIES)
MAX_PROMPT_TOKENS = 16


def tokenizer(work: Path):
    from transformers import CLIPTokenizer

    from ..models.tiny import write_tokenizer

    folder = work / "tokenizer"
    if not (folder / "vocab.json").is_file():
        write_tokenizer(folder, WORDS, max_length=MAX_PROMPT_TOKENS)
    return CLIPTokenizer.from_pretrained(folder)


# -- stage: CLIP -------------------------------------------------------------------------------------------------------
def clip_model(vocab_size: int):
    from transformers import CLIPConfig, CLIPModel

    text = dict(
        vocab_size=vocab_size,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=3,
        num_attention_heads=4,
        max_position_embeddings=MAX_PROMPT_TOKENS,
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
    )
    vision = dict(
        image_size=32, patch_size=4, hidden_size=128, intermediate_size=256, num_hidden_layers=3, num_attention_heads=4
    )
    return CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=128))


CLIP_PREPROCESS = Preprocess(32, 32, (0.5,) * 3, (0.5,) * 3)  # the toy CLIP sees [0, 1] as [-1, 1]


def train_prompts(scenes, rng: np.random.Generator, plain_rate: float) -> list[str]:
    return [s.prompt(with_style=rng.random() >= plain_rate) for s in scenes]


def train_clip(work: Path, config: BuildConfig, deadline: float, progress: bool = True):
    generator = torch.Generator().manual_seed(config.seed + 1)
    torch.manual_seed(config.seed + 1)
    tok = tokenizer(work)
    clip = clip_model(len(tok))
    optimizer = torch.optim.AdamW(clip.parameters(), lr=config.clip_lr, weight_decay=0.1)
    state = {}

    def step_fn(step: int) -> dict:
        if not state:
            state["scenes"], state["renders"] = scene_pool(work, config)
        idx = torch.randint(len(state["scenes"]), (config.clip_batch,), generator=generator).tolist()
        rng = np.random.default_rng(config.seed * 1_000_003 + step)
        prompts = train_prompts([state["scenes"][i] for i in idx], rng, config.plain_prompt_rate)
        ids = tok(prompts, padding="max_length", max_length=MAX_PROMPT_TOKENS, return_tensors="pt").input_ids
        pixels = CLIP_PREPROCESS(array_to_tensor(state["renders"][idx]))
        out = clip(input_ids=ids, pixel_values=pixels)
        # Prompts repeat within a batch: every image whose prompt matches counts as a positive.
        same = torch.tensor([[a == b for b in prompts] for a in prompts], dtype=torch.float32)
        target = same / same.sum(1, keepdim=True)
        loss = (F.cross_entropy(out.logits_per_image, target) + F.cross_entropy(out.logits_per_text, target)) / 2
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"loss": loss.item()}

    meta = {"stage": "clip", "config": asdict(config), "lr": config.clip_lr}
    if run_stage(
        work,
        "clip",
        {"clip": clip},
        optimizer,
        generator,
        step_fn,
        config.clip_steps,
        meta,
        deadline,
        config.save_every_s,
        progress,
    ):
        return clip
    return None


def text_encoder_from_clip(clip):
    """The CLIP text tower with its projection, as aMUSEd's text encoder (CLIPTextModelWithProjection)."""
    from transformers import CLIPTextModelWithProjection

    encoder = CLIPTextModelWithProjection(
        clip.config.text_config.__class__(
            **{**clip.config.text_config.to_dict(), "projection_dim": clip.config.projection_dim}
        )
    )
    encoder.text_model.load_state_dict(clip.text_model.state_dict())
    encoder.text_projection.load_state_dict(clip.text_projection.state_dict())
    return encoder.eval()


# -- stage: U-ViT ------------------------------------------------------------------------------------------------------
def token_grid(config: BuildConfig) -> int:
    return 32 // 2 ** (len(config.vq_blocks) - 1)


def uvit_config(config: BuildConfig, text_dim: int) -> UViTConfig:
    grid = token_grid(config)
    codes = config.token_groups or config.codebook_size
    halve = config.uvit_downsample and grid > 8  # the transformer layers see 8x8 positions of a 16x16 grid
    return UViTConfig(
        hidden_size=config.uvit_hidden_size,
        cond_embed_dim=text_dim,
        micro_cond_encode_dim=16,
        micro_cond_embed_dim=80,
        encoder_hidden_size=text_dim,
        vocab_size=codes + 1,
        codebook_size=codes,
        in_channels=64,
        block_out_channels=config.uvit_block_channels,
        num_res_blocks=1,
        block_num_heads=4,
        num_hidden_layers=config.uvit_layers,
        num_attention_heads=4,
        intermediate_size=3 * config.uvit_hidden_size,
        sample_size=grid,
        downsample=halve,
        upsample=halve,
        position_embedding=True,
        rotary_positions=config.uvit_rotary,
        full_resolution_blocks=config.uvit_full_resolution_blocks if halve else 0,  # they flank the halving
    )


def plane_waves(channels: int, size: int, amplitude: float = 0.5) -> torch.Tensor:
    """(1, channels, size, size): cos and sin pairs of plane waves at 8 orientations and channels // 16 periods
    from 2 to 4 tokens (under 16 channels: the first channels // 2 orientations of a period of 2); the channels past
    the last full pair stay 0."""
    pairs = channels // 2
    angles = torch.arange(8) * math.pi / 8
    periods = torch.linspace(2.0, 4.0, max(1, pairs // 8))
    y, x = torch.meshgrid(
        torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij"
    )
    waves = torch.zeros(1, channels, size, size)
    for k, (period, angle) in enumerate(itertools.islice(((p, a) for p in periods for a in angles), pairs)):
        phase = 2 * math.pi * (x * torch.cos(angle) + y * torch.sin(angle)) / period
        waves[0, 2 * k], waves[0, 2 * k + 1] = torch.cos(phase), torch.sin(phase)
    return amplitude * waves


def new_uvit(config: BuildConfig, text_dim: int) -> UViT:
    uvit = UViT(uvit_config(config, text_dim))
    if config.uvit_position_init == "fourier":
        with torch.no_grad():  # after UViT's own init, so every other weight is the same as with "random"
            uvit.position_embedding.copy_(plane_waves(*uvit.position_embedding.shape[1:3]))
    return uvit


def uvit_step(base, data: dict, optimizer, config: BuildConfig, generator: torch.Generator) -> torch.Tensor:
    """One masked-token step of the base's U-ViT on a batch of the pool; returns the loss, left on the device
    (reading it would make the CPU wait for a GPU every step). data: `uvit_data`."""
    from ..models.amused import Conditioning
    from ..train import drop_conditioning, masked_token_loss

    device = data["tokens"].device
    if "draw_weights" in data:
        idx = choice(data["draw_weights"], config.uvit_batch, generator, device)
    else:
        idx = randint(len(data["tokens"]), (config.uvit_batch,), generator, device)
    plain = rand((config.uvit_batch,), generator, device) < config.plain_prompt_rate
    text = data["text"].index(torch.where(plain, data["plain_row"][idx], data["styled_row"][idx]))
    cond, _ = drop_conditioning(
        Conditioning(text.hidden, text.pooled, data["micro"]), data["empty"], config.cond_dropout, generator
    )
    with torch.autocast(device.type, torch.bfloat16, enabled=config.uvit_precision == "bf16"):
        weights = data["weights"][idx] if "weights" in data else None
        loss = masked_token_loss(base, data["tokens"][idx], cond, None, generator, weights)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(base.transformer.parameters(), 1.0)
    optimizer.step()
    return loss.detach()


def encode_renders(vq, renders: np.ndarray) -> torch.Tensor:
    """(n, 32, 32, 3) uint8 renders -> (n, h, w) tokens of vq, on the CPU, encoded 500 at a time."""
    from ..models.amused import vq_encode

    return torch.cat([vq_encode(vq, array_to_tensor(renders[i : i + 500])).cpu() for i in range(0, len(renders), 500)])


def weights_fingerprint(module: torch.nn.Module) -> str:
    """12 hex digits of a module's weights: a cache made with other weights has another name."""
    digest = hashlib.sha256()
    for key, value in sorted(module.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:12]


def pool_tokens(work: Path, config: BuildConfig, vq, cycle: int = 1) -> tuple[list, torch.Tensor]:
    """(scenes, (n, h, w) tokens of their renders by vq), the tokens cached in WORK/data, compressed: a few MB
    where the renders take 180 MB and minutes to draw."""
    cache = work / "data" / f"tokens-{pool_name(config, cycle)}-{weights_fingerprint(vq)}.npz"
    if cache.is_file():
        return pool_scenes(config, cycle), torch.from_numpy(np.load(cache)["tokens"]).long()
    scenes, renders = scene_pool(work, config, cycle)
    tokens = encode_renders(vq, renders)
    dtype = np.uint8 if tokens.max() < 256 else np.int16

    def write(path: Path) -> None:
        with open(path, "wb") as f:
            np.savez_compressed(f, tokens=tokens.numpy().astype(dtype))

    write_with(cache, write)
    return scenes, tokens


def uvit_data(base, scenes, tokens: torch.Tensor, config: BuildConfig, cycle: int = 1) -> dict:
    """What uvit_step draws from, on the tokens' device: every prompt of the scenes (with and without style)
    encoded once, each scene's row of them with and without its style, and, with a fill weight in U-ViT cycle
    `cycle`, each token's weight in the loss; with a family boost, each scene's weight in the draw of a batch."""
    styled, plain = [s.prompt(True) for s in scenes], [s.prompt(False) for s in scenes]
    prompts = sorted(set(styled) | set(plain))
    row = {p: i for i, p in enumerate(prompts)}
    device = tokens.device
    data = dict(
        tokens=tokens,
        styled_row=torch.tensor([row[p] for p in styled], device=device),
        plain_row=torch.tensor([row[p] for p in plain], device=device),
        text=base.condition(prompts),
        empty=base.condition([""]),
        micro=base.micro_conds(config.uvit_batch),
    )
    if (fill_weight := config.fill_weight(cycle)) != 1:
        coverage = token_coverage(scenes, tokens.shape[-1]).to(device)
        data["weights"] = 1 + (fill_weight - 1) * coverage
    if (boost := config.family_boost(cycle)) != 1:  # on the CPU, where uvit_step's generator draws
        boosted = torch.tensor([s.style.family in config.uvit_boost_families for s in scenes])
        data["draw_weights"] = torch.where(boosted, boost, 1.0)
    return data


def token_coverage(scenes, grid: int) -> torch.Tensor:
    """(n, grid, grid) the shape's mean coverage of each token's pixels, per scene."""
    cell = SIZE // grid
    masks = np.stack([shape_mask(s.content) for s in scenes])
    return torch.from_numpy(masks.reshape(len(scenes), grid, cell, grid, cell).mean(axis=(2, 4))).float()


def train_uvit(
    work: Path, config: BuildConfig, tokens_vq, clip, deadline: float, progress: bool = True, device: str = "cpu"
):
    """tokens_vq: the VQ whose codes the U-ViT learns to predict (`uvit_tokens`). Returns the finished U-ViT (of
    the last cycle) on the CPU, or None while unfinished."""
    finished = [c for c in range(1, config.uvit_cycles + 1) if is_finished(work / uvit_stage_name(config, c))]
    uvit = None
    for cycle in range(finished[-1] if finished else 1, config.uvit_cycles + 1):  # a finished cycle needs none before
        uvit = train_uvit_cycle(work, config, tokens_vq, clip, deadline, progress, device, cycle, uvit)
        if uvit is None:
            return None
    return uvit


def train_uvit_cycle(
    work: Path, config: BuildConfig, tokens_vq, clip, deadline: float, progress: bool, device: str, cycle: int, start
):
    """One cosine cycle of the U-ViT stage: from scratch (cycle 1) or from `start`, the last cycle's U-ViT, with a
    fresh optimizer on the cycle's own pool. The finished U-ViT on the CPU, or None while unfinished."""
    from ..models.amused import AmusedBase

    seed = config.seed + 2 + CYCLE_SEED * (cycle - 1)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    tok = tokenizer(work)
    text_encoder = text_encoder_from_clip(clip).to(device)  # made before the U-ViT: its init draws from the seed too
    uvit = new_uvit(config, clip.config.projection_dim)
    if start is not None:
        uvit.load_state_dict(start.state_dict())
    uvit = uvit.to(device)
    trained = torch.compile(uvit) if config.uvit_compile else uvit  # the same parameters; returned uncompiled
    base = AmusedBase(trained, copy.deepcopy(tokens_vq).eval().to(device), text_encoder, tok, source="toyworld-build")
    uvit.requires_grad_(True).train()
    optimizer = torch.optim.AdamW(uvit.parameters(), lr=config.uvit_lr, weight_decay=0.01)
    data = {}

    def step_fn(step: int) -> dict:
        if not data:
            scenes, tokens = pool_tokens(work, config, base.vqvae, cycle)
            data.update(uvit_data(base, scenes, tokens.to(device), config, cycle))
        return {"loss": uvit_step(base, data, optimizer, config, generator)}

    name = uvit_stage_name(config, cycle)
    architecture = uvit.config.to_dict()
    meta = {"stage": name, "config": asdict(config), "lr": config.uvit_lr, "architecture": architecture, "cycle": cycle}
    if run_stage(
        work,
        name,
        {"uvit": uvit},
        optimizer,
        generator,
        step_fn,
        config.uvit_steps,
        meta,
        deadline,
        config.save_every_s,
        progress,
    ):
        return uvit.cpu().eval().requires_grad_(False)
    return None


# -- stage: oracle ----------------------------------------------------------------------------------------------------
def reconstruct(vq, pixels: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return vq_forward(vq, pixels)[0].clamp(0, 1)


def train_oracle_stage(work: Path, config: BuildConfig, vq, deadline: float, progress: bool = True):
    """Not resumable mid-way (it takes minutes): trained whole, or not started when too little time is left."""
    folder = work / "oracle"
    if (folder / "oracle_config.json").is_file():
        return load_oracle(folder)
    if time.time() + 1200 > deadline:
        return None
    oracle = train_oracle(OracleConfig(seed=config.seed), reconstruct=lambda px: reconstruct(vq, px), progress=progress)
    save_oracle(oracle, folder)
    return oracle


# -- export: the assets shipped inside the package -------------------------------------------------------------------
ASSETS = Path(__file__).parent / "assets"


def export_ruler(work: Path, clip, oracle, dest: Path = ASSETS) -> None:
    """The measuring instruments: the full toy CLIP (text score, CLIP style score) and the oracle."""

    def write_clip(tmp: Path) -> None:
        clip.save_pretrained(tmp, safe_serialization=True)
        tokenizer(work).save_pretrained(tmp)
        write_json(tmp / "preprocessor_config.json", CLIP_PREPROCESS.config())

    replace_dir(dest / "clip", write_clip, keep_same=True)
    replace_dir(dest / "oracle", lambda tmp: save_oracle(oracle, tmp), keep_same=True)


def export_base(work: Path, vq, clip, uvit, dest: Path = ASSETS) -> Path:
    """The default base, in the aMUSEd folder layout that `load_base` reads. vq: the U-ViT's (`uvit_tokens`)."""
    from ..models.tiny import save_transformer, write_model_index

    def write(tmp: Path) -> None:
        save_transformer(uvit, tmp / "transformer")
        vq.save_pretrained(tmp / "vqvae", safe_serialization=True)
        text_encoder_from_clip(clip).save_pretrained(tmp / "text_encoder", safe_serialization=True)
        tokenizer(work).save_pretrained(tmp / "tokenizer")
        write_model_index(tmp)

    return replace_dir(dest / "base", write, keep_same=True)


def finished_inputs(work: Path, config: BuildConfig) -> tuple | None:
    """(the VQ whose codes the U-ViT predicts, the CLIP) of a build whose VQ and CLIP stages are finished, loaded
    without training anything; None otherwise. config picks the stages (`vq_local_steps`)."""
    vq, clip = train_vq(work, config, LOAD_ONLY, False), train_clip(work, config, LOAD_ONLY, False)
    tokens_vq = uvit_tokens(work, config, vq, LOAD_ONLY, False) if vq is not None else None
    return None if tokens_vq is None or clip is None else (tokens_vq, clip)


def checkpoint_uvit(folder: Path) -> tuple[UViT, dict]:
    """(the U-ViT of a stage's checkpoint, finished or not, in the shape the checkpoint records; its meta)."""
    from safetensors.torch import load_file

    from ..checkpoint import STATE, load_module_tensors

    meta = read_meta(folder)
    uvit = UViT(UViTConfig.from_dict(meta["architecture"]))
    load_module_tensors(load_file(folder / STATE), {"uvit": uvit})
    return uvit.eval(), meta


def export_checkpoint(work: str | Path, dest: str | Path, config: BuildConfig = BuildConfig()) -> tuple[Path, dict]:
    """The U-ViT as it stands in an unfinished build (its last cycle with a checkpoint), exported beside finished
    VQ and CLIP stages (to watch quality while it trains). config picks the stages (`vq_local_steps`); the U-ViT's
    shape is the one its checkpoint records. Returns (base folder, the checkpoint's meta: its "config" is the one
    it was trained with, `trained_steps` of it the steps of every cycle)."""
    work = Path(work)
    inputs, folder = finished_inputs(work, config), work / uvit_stage_name(config, latest_uvit_cycle(work, config))
    if inputs is None or not is_complete(folder):
        raise StyleDropError(f"{work}: no U-ViT checkpoint beside finished VQ and CLIP stages")
    uvit, meta = checkpoint_uvit(folder)  # as it was built, whatever config is passed here
    return export_base(work, *inputs, uvit, Path(dest)), meta


def trained_steps(meta: dict) -> int:
    """A U-ViT checkpoint's steps, those of the cycles before its own included."""
    return (meta.get("cycle", 1) - 1) * meta["config"]["uvit_steps"] + int(meta["step"])


def build(
    work: str | Path,
    config: BuildConfig = BuildConfig(),
    budget_s: float = 3600,
    progress: bool = True,
    dest: str | Path = ASSETS,
    device: str | None = None,
) -> dict:
    """Run every stage that is not finished, within budget_s; export the ruler and the base into dest (the
    package's assets by default: an experiment exports elsewhere to leave the shipped base alone); an exported
    folder that would not change but for library version stamps is left as it is. device: the U-ViT stage's
    (default: cuda if available); the other stages run on the CPU."""
    from ..pipeline import default_device

    work, dest, device = Path(work), Path(dest), device or default_device()
    deadline = time.time() + budget_s
    status = {}
    vq = train_vq(work, config, deadline, progress)
    status["vq"] = vq is not None
    clip = train_clip(work, config, deadline, progress) if vq is not None else None
    status["clip"] = clip is not None
    oracle = train_oracle_stage(work, config, vq, deadline, progress) if clip is not None else None
    status["oracle"] = oracle is not None
    if oracle is not None:
        export_ruler(work, clip, oracle, dest)
    tokens_vq = uvit_tokens(work, config, vq, deadline, progress) if oracle is not None else None
    if config.vq_local_steps:
        status["vq_local"] = tokens_vq is not None
    uvit = train_uvit(work, config, tokens_vq, clip, deadline, progress, device) if tokens_vq is not None else None
    status["uvit"] = uvit is not None
    if uvit is not None:
        status["exported"] = str(export_base(work, tokens_vq, clip, uvit, dest))
    return status


if __name__ == "__main__":
    import sys

    print(
        build(
            sys.argv[1] if len(sys.argv) > 1 else DEFAULT_WORK,
            budget_s=float(sys.argv[2]) if len(sys.argv) > 2 else 3600,
        )
    )
