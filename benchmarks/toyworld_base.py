"""The toy base's shipping bar: does it draw the asked shape AND colour on plain prompts ("a red star"), and
honour a named style family ("a red star in striped style")? Every shape x colour, read by the oracle. Writes
grids (one row per shape, one column per colour) and appends to benchmarks/results/toyworld_base.jsonl.

    .venv/bin/python benchmarks/toyworld_base.py [--base FOLDER | --checkpoint WORK [--vq-local-steps N]]
        [--per-content N] [--decode-steps K] [--temperature T] [--guidance G] [--descriptor-guidance D]
        [--token-temperature T] [--plausibility A] [--seed S]

--seed moves every sample to fresh seeds (S, S+1, ...): a setting picked by looking at seed 0's samples is
confirmed on samples it was not picked on.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import append_result, plausibility_tag, token_temperature_tag  # noqa: E402

from styledrop.images import grid, save_png, to_pil  # noqa: E402
from styledrop.models.amused import AmusedBase, load_base  # noqa: E402
from styledrop.pipeline import SampleConfig  # noqa: E402
from styledrop.toyworld.build import ASSETS, DEFAULT_WORK, BuildConfig, export_checkpoint, trained_steps  # noqa: E402
from styledrop.toyworld.evaluate import base_quality  # noqa: E402
from styledrop.toyworld.metrics import Ruler  # noqa: E402
from styledrop.toyworld.render import COLOUR_NAMES  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def add_base_arguments(parser: argparse.ArgumentParser) -> None:
    """--base, or --checkpoint (with --vq-local-steps): the base a toy-world benchmark measures."""
    parser.add_argument("--base", default=None, help="aMUSEd-format folder (default: the built-in toy base)")
    parser.add_argument("--checkpoint", default=None, metavar="WORK", help="measure an unfinished build's U-ViT")
    parser.add_argument("--vq-local-steps", type=int, default=0, help="with --checkpoint: the build's uvit_local")


def load_measured_base(args) -> tuple[AmusedBase, dict | None]:
    """The base of add_base_arguments' options, and its U-ViT checkpoint's meta (None for a finished base)."""
    base_dir, meta = args.base, None
    if args.checkpoint:
        config = BuildConfig(vq_local_steps=args.vq_local_steps)
        base_dir, meta = export_checkpoint(args.checkpoint, tempfile.mkdtemp(), config)
    return load_base(base_dir, "cpu"), meta


def checkpoint_record(meta: dict | None) -> dict:
    """What a result row says of the measured U-ViT: its build steps (None for a finished base) and, for a
    checkpoint, its architecture and the build config it was trained with (its fill weight, its cycles)."""
    if meta is None:
        return {"uvit_step": None}
    return {"uvit_step": trained_steps(meta), "architecture": meta["architecture"], "trained_with": meta["config"]}


def checkpoint_label(work: str | None) -> str:
    """Grid names of a build folder other than the default one carry its name."""
    return "" if work is None or Path(work).name == DEFAULT_WORK else f"_{Path(work).name}"


def save_grids(quality, per_content: int, prefix: str) -> None:
    """RESULTS/{prefix}_plain.png and _family.png: one sample per shape (rows) and colour (columns)."""
    for name, pixels in quality.images.items():
        first_of_each = pixels[::per_content]
        save_png(grid([to_pil(p) for p in first_of_each], columns=len(COLOUR_NAMES)), RESULTS / f"{prefix}_{name}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_base_arguments(parser)
    parser.add_argument("--per-content", type=int, default=4)
    parser.add_argument("--decode-steps", type=int, default=12)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--descriptor-guidance", type=float, default=SampleConfig.descriptor_guidance)
    parser.add_argument("--temperature", type=float, default=SampleConfig.temperature, help="of the confidence noise")
    parser.add_argument("--token-temperature", type=float, default=SampleConfig.token_temperature)
    parser.add_argument("--plausibility", type=float, default=SampleConfig.plausibility)
    parser.add_argument("--seed", type=int, default=0, help="of the first sample (the rest count up from it)")
    args = parser.parse_args()

    (base, meta), ruler = load_measured_base(args), Ruler.load(ASSETS)
    checkpoint = checkpoint_record(meta)
    step = checkpoint["uvit_step"]
    sample = SampleConfig(
        args.decode_steps,
        args.temperature,
        token_temperature=args.token_temperature,
        guidance=args.guidance,
        descriptor_guidance=args.descriptor_guidance,
        plausibility=args.plausibility,
    )
    quality = base_quality(base, ruler, args.per_content, sample, seed=args.seed)
    variant = ("_local" if args.vq_local_steps else "") + checkpoint_label(args.checkpoint)
    prefix = "toyworld_base" if step is None else f"toyworld_base{variant}_step{step}"
    sampling = ("decode_steps", "temperature", "guidance", "descriptor_guidance")
    if any(getattr(args, k) != parser.get_default(k) for k in sampling):  # the shipped grids stay the defaults'
        prefix += f"_k{args.decode_steps}_t{args.temperature:g}_g{args.guidance:g}_d{args.descriptor_guidance:g}"
    prefix += token_temperature_tag(args.token_temperature)
    prefix += plausibility_tag(args.plausibility)
    prefix += f"_s{args.seed}" if args.seed else ""
    save_grids(quality, args.per_content, prefix)
    record = {"plain": quality.plain, "family": quality.family, "passes": quality.passes(), **checkpoint}
    record["settings"] = vars(args)
    append_result(RESULTS / "toyworld_base.jsonl", record)
    print({k: v for k, v in record.items() if k != "settings"})


if __name__ == "__main__":
    main()
