"""Would a simpler world let the toy base honour its families? The shipped U-ViT (or `--checkpoint WORK`'s, as
toyworld_base takes it), fine-tuned on one of the worlds below for the same steps, then measured against the base's
bar (evaluate.base_quality).

Worlds (all keep the held-out regions out):
- regular: the world the base was built on (angles and periods drawn from continuous ranges): the control, so
  that what fine-tuning alone does is measured;
- discrete: the same families with stripe, hatch and gradient angles in steps of 45 (gradient: 90) degrees and
  periods of 4, 6 or 8 pixels, so that each family is a handful of exact patterns instead of a continuum;
- coarse: the same families with periods of 8-12 pixels (4-6 tokens) instead of 3.5-8, so that a stripe, dot or
  check spans whole tokens. The oracle, trained on 3.5-8, reads coarse stripes in 88% of VQ reconstructions but
  coarse dots in 48% (`toyworld_ruler.py --world coarse`): measure this world with `--family striped`;
- minimal: the discrete world with every nuisance held fixed (black ink, no outline, a plain background, no
  palette shift): does the U-ViT learn a family's pattern when nothing else about the look varies?
- minimal-ink, minimal-background, minimal-outline, minimal-palette: the minimal world with that one nuisance
  drawn as in the regular world: which nuisance is it that keeps the pattern from coming?
- minimal-background-colour|grid|texture: minimal-background with its kinds cut to plain and colour backdrops
  (colour), or to those and one more, grid (grid) or texture (texture): which of the background's kinds is it?
- minimal-background-rare: every background kind, but a plain white one in 70% of draws: do the kinds' shares
  size the world?
- rare: the regular world (continuous angles and periods) with each nuisance drawn as there in a quarter of the
  scenes and held at its minimal value in the rest: every element the issue names, less often. Can shares alone
  size the world to the bar?

If the discrete world lifts the family far above the control, a rebuild on a simpler world is the way to the
bar; if not, the U-ViT's learning of patterns is, whatever their number. `--first-world W --first-steps N` trains
on world W first (its own learning-rate schedule, peak `--first-lr`) and then on `--world`: a curriculum, to
measure whether a pattern learnt where the look varies little is kept when it varies as in the base's world.
`--family F` draws every scene of one family: whether the U-ViT learns that family at all when nothing else
competes for its capacity. `--fresh` trains a new U-ViT of the same architecture from scratch instead (`--rotary`:
with rotary positions in its self-attention), so that architectures can be compared on one world without a whole
build. Measured with the default sampling and with descriptor guidance (lD 5, lB 2, 36 steps, temperature 0);
`--measure-every N` also measures with the default sampling every N steps of the `--world` run (its grids named
`..._default_atSTEP_...`), to see when a pattern comes. `--batch N` trains N scenes a step instead of the build's
64: does a bigger batch stand in for steps? `--fill-weight W` weighs the loss of the tokens inside the shape W
times those of the backdrop (by the shape's coverage of each token's pixels; `BuildConfig.uvit_fill_weight`): the
backdrop's grids and textures fill most of an image's tokens, and its variety is what most delays the stripes;
does a larger share of the gradient for the fill bring them sooner? A grid's name gives the learning rate when it is not the build's
U-ViT peak, 1e-3 (grids made before 2026-12-06 do not: those of the 1000-step fine-tunes are at 3e-4, the
batch-256 run's at 2e-3).
Appends to benchmarks/results/toyworld_world_finetune.jsonl; grids in benchmarks/results/toyworld_world_finetune_*.png.

    .venv/bin/python benchmarks/toyworld_world_finetune.py --world discrete|coarse|minimal[-NUISANCE[-KIND|-rare]]|rare|regular [--family F]
        [--steps 1000] [--batch 64] [--checkpoint WORK] [--fresh [--rotary] --lr 1e-3] [--fill-weight 1]
        [--first-world W --first-steps N [--first-lr 1e-3]] [--measure-every N]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import append_result  # noqa: E402
from toyworld_base import add_base_arguments, checkpoint_label, load_measured_base, save_grids  # noqa: E402

from styledrop.images import grid, save_png, to_pil  # noqa: E402
from styledrop.models.amused import AmusedBase  # noqa: E402
from styledrop.models.uvit import UViT  # noqa: E402
from styledrop.pipeline import SampleConfig  # noqa: E402
from styledrop.toyworld.build import ASSETS, BuildConfig, cosine_lr, encode_renders, uvit_data, uvit_step  # noqa: E402
from styledrop.toyworld.evaluate import base_quality  # noqa: E402
from styledrop.toyworld.metrics import Ruler  # noqa: E402
from styledrop.toyworld.render import FAMILIES, Scene  # noqa: E402
from styledrop.toyworld.world import in_held_out_region, render_all, sample_content, sample_style  # noqa: E402

RESULTS = Path(__file__).parent / "results"
DEFAULT_STEPS = 1000
DEFAULT_BATCH = BuildConfig().uvit_batch  # the build's U-ViT stage
SETTINGS = {
    "default": SampleConfig(batch_size=64),
    "descriptor": SampleConfig(steps=36, temperature=0.0, guidance=2.0, descriptor_guidance=5.0, batch_size=64),
}


def discrete_style(rng: np.random.Generator, family: str | None = None):
    """A training-region style (of `family`, default any) whose angle and period are snapped to a few values."""
    while True:
        style = sample_style(rng, family)
        step, turn = (90, 360) if style.family == "gradient" else (45, 180)  # the ranges of world._draw_style
        style = style.replace(angle=float(step * rng.integers(turn // step)), period=float(rng.choice([4.0, 6.0, 8.0])))
        if not in_held_out_region(style):
            return style


COARSE_PERIODS = (8.0, 12.0)


def coarse_style(rng: np.random.Generator, family: str | None = None):
    """A training-region style (of `family`, default any) whose period is drawn from COARSE_PERIODS."""
    while True:
        style = sample_style(rng, family).replace(period=float(rng.uniform(*COARSE_PERIODS)))
        if not in_held_out_region(style):
            return style


# The minimal world's nuisances, each held at one value: black ink at 0.9, no outline, a plain white background, no
# palette shift. Each group is the Style fields one nuisance of the look draws.
MINIMAL = {
    "ink": {"ink": "black", "ink_strength": 0.9},
    "background": {"background": "plain"},
    "outline": {"outline": "none", "outline_width": 0.0},
    "palette": {"hue_shift": 0.0, "brightness": 1.0},
}


def minimal_world(released: str | None = None, backgrounds: tuple[str, ...] | None = None):
    """The discrete world with every nuisance but `released` held fixed (None: all of them), so that only the
    family's pattern (angle, period, width), the content and that one nuisance vary. `backgrounds` (with the
    background released) restricts its kinds to those, each drawn as often."""
    fixed = {k: v for nuisance, fields in MINIMAL.items() if nuisance != released for k, v in fields.items()}

    def draw(rng: np.random.Generator, family: str | None = None):
        style = discrete_style(rng, family).replace(**fixed)
        if backgrounds is not None and style.background not in backgrounds:
            style = style.replace(background=str(rng.choice(backgrounds)))  # the kinds stay equally likely
        return style

    return draw


# The background split: plain and colour backdrops with one of the patterned kinds (or neither), to measure which
# of the background's kinds costs the stripes.
BACKGROUND_SPLITS = {
    "colour": ("plain", "colour"),
    "grid": ("plain", "colour", "grid"),
    "texture": ("plain", "colour", "texture"),
}


minimal_background = minimal_world("background")


def rare_backgrounds(rng: np.random.Generator, family: str | None = None):
    """minimal-background with every kind kept but their shares changed: a plain white backdrop in 70% of draws,
    colour, grid and texture in 10% each (0.25 + 0.75 * 0.6 of the uniform draws become plain)."""
    style = minimal_background(rng, family)
    if style.background != "plain" and rng.random() < 0.6:
        style = style.replace(background="plain")
    return style


# A world sized by shares alone: each nuisance of the look is drawn as in the regular world in this fraction of
# scenes (independently) and held at its minimal value in the rest; angles and periods stay continuous. Every
# element the issue names (any angle, period and ink; outlines; every background kind; palette shifts) is still
# drawn, only less often.
RARE_SHARE = 0.25


def rare_nuisances(rng: np.random.Generator, family: str | None = None):
    """The regular world's style with each nuisance group of MINIMAL held fixed in 1 - RARE_SHARE of draws."""
    style = sample_style(rng, family)
    fixed = {k: v for fields in MINIMAL.values() if rng.random() >= RARE_SHARE for k, v in fields.items()}
    return style.replace(**fixed)


WORLDS = {
    "regular": sample_style,
    "rare": rare_nuisances,
    "discrete": discrete_style,
    "coarse": coarse_style,
    "minimal": minimal_world(),
    **{f"minimal-{nuisance}": minimal_world(nuisance) for nuisance in MINIMAL},
    **{f"minimal-background-{k}": minimal_world("background", kinds) for k, kinds in BACKGROUND_SPLITS.items()},
    "minimal-background-rare": rare_backgrounds,
}


def world_scenes(world: str, n: int, seed: int, family: str | None = None) -> list[Scene]:
    rng = np.random.default_rng(seed)
    draw = WORLDS[world]
    return [Scene(sample_content(rng), draw(rng, family)) for _ in range(n)]


def fresh_base(base, rotary: bool) -> AmusedBase:
    """The base with a new, untrained U-ViT of its U-ViT's architecture (with rotary positions if asked)."""
    uvit = UViT(dataclasses.replace(base.transformer.config, rotary_positions=rotary))
    return AmusedBase(uvit, base.vqvae, base.text_encoder, base.tokenizer, source=f"{base.source}, fresh U-ViT")


def uvit_kind(args) -> str:
    """What the run trains, as its record says: "fine-tuned", "fresh" or "fresh, rotary"."""
    return ("fresh, rotary" if args.rotary else "fresh") if args.fresh else "fine-tuned"


def run_label(args) -> str:
    """What a grid's name says of the run: the checkpoint, a fresh U-ViT's kind, the learning rate when not the
    build's, a curriculum's first world and steps, and the steps and batch when not the default."""
    fresh = "_" + uvit_kind(args).replace(", ", "_") if args.fresh else ""
    lr = f"_lr{args.lr:g}" if args.lr != BuildConfig().uvit_lr else ""
    first = f"_after-{args.first_world}{args.first_steps}" if args.first_world else ""
    steps = f"_{args.steps}steps" if args.steps != DEFAULT_STEPS else ""
    batch = f"_batch{args.batch}" if args.batch != DEFAULT_BATCH else ""
    fill = f"_fill{args.fill_weight:g}" if args.fill_weight != 1 else ""
    return f"{checkpoint_label(args.checkpoint)}{fresh}{lr}{first}{steps}{batch}{fill}"


def finetune(
    base,
    scenes: list[Scene],
    steps: int,
    lr: float,
    seed: int,
    measure=None,
    every: int = 0,
    batch: int = DEFAULT_BATCH,
    fill_weight: float = 1.0,
) -> float:
    """Train the base's U-ViT in place on the scenes, `batch` scenes a step, the loss of the tokens inside the
    shape weighed fill_weight times those outside; returns the mean loss of the last 100 steps. With `every` > 0,
    measure(step, loss of the last 100 steps) is called every `every` steps before the last, the U-ViT in eval
    mode."""
    config = BuildConfig(uvit_lr=lr, uvit_batch=batch, uvit_fill_weight=fill_weight)
    data = uvit_data(base, scenes, encode_renders(base.vqvae, render_all(scenes)), config)
    uvit = base.transformer.requires_grad_(True).train()
    optimizer = torch.optim.AdamW(uvit.parameters(), lr=lr, weight_decay=0.01)
    generator, losses = torch.Generator().manual_seed(seed), []
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, steps, lr, warmup=50)
        losses.append(float(uvit_step(base, data, optimizer, config, generator)))
        if (step + 1) % 100 == 0:
            print(f"step {step + 1}: loss {np.mean(losses[-100:]):.4f}", flush=True)
        if every and (step + 1) % every == 0 and step + 1 < steps:
            uvit.eval()
            measure(step + 1, float(np.mean(losses[-100:])))
            uvit.train()
    uvit.eval().requires_grad_(False)
    return float(np.mean(losses[-100:]))


def train_on_world(base, world: str, steps: int, lr: float, args, measure=None, every: int = 0) -> float:
    """finetune on `args.scenes` scenes of the world (of `args.family`, if given), `args.batch` a step, the fill's
    tokens weighed `args.fill_weight`; every phase draws with seed 7."""
    scenes = world_scenes(world, args.scenes, seed=7, family=args.family)
    return finetune(base, scenes, steps, lr, 7, measure, every, args.batch, args.fill_weight)


def save_family_grids(quality, args, setting: str) -> None:
    """toyworld_base's grids of the fine-tuned U-ViT; with --family F, a row of every sample asked for F instead."""
    prefix = f"toyworld_world_finetune{run_label(args)}_{args.world}_{args.family or 'all'}_{setting}"
    if not args.family:
        save_grids(quality, args.per_content, prefix)
        return
    asked = [p for p, f in zip(quality.images["family"], quality.families, strict=True) if f == args.family]
    save_png(grid([to_pil(p) for p in asked], columns=len(asked)), RESULTS / f"{prefix}_{args.family}.png")


def measure_setting(base, ruler, args, setting: str, label: str = "") -> dict:
    """The bar (evaluate.base_quality) with one of SETTINGS, its grids saved (`label` joins their names) and its
    line printed; returns the record's row."""
    quality = base_quality(base, ruler, args.per_content, SETTINGS[setting])
    save_family_grids(quality, args, setting + label)
    per = ", ".join(f"{f} {v:.0%}" for f, v in quality.family["per_family"].items())
    print(
        f"{args.world} {args.family or 'all families'} {setting}{label}: shape {quality.plain['shape']:.1%} "
        f"colour {quality.plain['colour']:.1%} family {quality.family['family']:.1%} ({per})",
        flush=True,
    )
    return {"plain": quality.plain, "family": quality.family}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_base_arguments(parser)
    parser.add_argument("--world", choices=list(WORLDS), required=True)
    parser.add_argument(
        "--family", choices=FAMILIES, default=None, help="every scene of this family: can the U-ViT learn it at all?"
    )
    parser.add_argument("--fresh", action="store_true", help="train a new U-ViT of the same architecture instead")
    parser.add_argument("--rotary", action="store_true", help="with --fresh: rotary positions in its self-attention")
    parser.add_argument(
        "--steps", type=int, default=DEFAULT_STEPS, help="training steps (named in the grids when not the default)"
    )
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="scenes per step (named when not the default)")
    parser.add_argument("--scenes", type=int, default=20_000)
    parser.add_argument(
        "--fill-weight", type=float, default=1.0, help="loss weight of the shape's tokens against the backdrop's"
    )
    parser.add_argument("--per-content", type=int, default=2)
    parser.add_argument("--first-world", choices=list(WORLDS), default=None, help="train on this world first")
    parser.add_argument("--first-steps", type=int, default=0, help="with --first-world: its training steps")
    parser.add_argument("--first-lr", type=float, default=1e-3, help="with --first-world: its peak learning rate")
    parser.add_argument(
        "--measure-every", type=int, default=0, help="also measure (default sampling) every N steps of --world's run"
    )
    args = parser.parse_args()
    if args.rotary and not args.fresh:
        parser.error("--rotary: only with --fresh (a trained U-ViT's attention was learnt without it)")
    if bool(args.first_world) != (args.first_steps > 0):
        parser.error("--first-world and --first-steps: give both or neither")
    if args.batch < 1:
        parser.error(f"--batch: {args.batch} is not a positive number of scenes")
    if args.measure_every < 0:
        parser.error(f"--measure-every: {args.measure_every} is negative (0: measure only at the end)")
    if args.fill_weight <= 0:
        parser.error(f"--fill-weight: {args.fill_weight} is not positive")

    torch.manual_seed(0)
    (base, _), ruler = load_measured_base(args), Ruler.load(ASSETS)
    if args.fresh:
        base = fresh_base(base, args.rotary)
    start, first = time.time(), {}
    if args.first_world:
        first_loss = train_on_world(base, args.first_world, args.first_steps, args.first_lr, args)
        first = {"first": {"world": args.first_world, "steps": args.first_steps, "final_loss": round(first_loss, 4)}}
    during, measuring_seconds = [], 0.0

    def measure(step: int, loss: float) -> None:
        nonlocal measuring_seconds
        began = time.time()
        row = measure_setting(base, ruler, args, "default", f"_at{step}")
        during.append({"step": step, "loss": round(loss, 4), "default": row})
        measuring_seconds += time.time() - began

    loss = train_on_world(base, args.world, args.steps, args.lr, args, measure, args.measure_every)
    minutes = (time.time() - start - measuring_seconds) / 60
    rows = {name: measure_setting(base, ruler, args, name) for name in SETTINGS}
    record = {
        "world": args.world,
        "family": args.family,
        "uvit": uvit_kind(args),
        "final_loss": round(loss, 4),
        "train_minutes": round(minutes, 1),
        **first,
        **({"during": during} if during else {}),
        "rows": rows,
    }
    append_result(RESULTS / "toyworld_world_finetune.jsonl", {**record, "settings": vars(args)})


if __name__ == "__main__":
    main()
