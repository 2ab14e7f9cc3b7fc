"""`styledrop` command line: each command parses its arguments, calls one library function, prints."""

from __future__ import annotations

import argparse
import sys
import warnings

from .errors import StyleDropError


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one line, not usage plus message."""

    def error(self, message: str):
        raise StyleDropError(f"{self.prog}: {message}")


def add_train(sub) -> None:
    p = sub.add_parser("train", help="train a style adapter on one or a few reference images")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument(
        "--content",
        action="append",
        required=True,
        help='what each image shows, e.g. "a house" (once per image, or once for all)',
    )
    p.add_argument("--style", required=True, help='the style descriptor, e.g. "in watercolor painting style"')
    p.add_argument(
        "--base", default=None, help="hub id or folder of an aMUSEd-format model (default: the built-in toy base)"
    )
    p.add_argument("--out", required=True, help="adapter folder to write")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--rank", type=int, default=4)
    p.add_argument(
        "--per-layer", action="store_true", help="per-layer adapter weights (paper round 2) instead of shared"
    )
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=100)
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    p.add_argument("--device", default=None)
    p.set_defaults(run=run_train)


def run_train(args) -> None:
    from .adapters.config import AdapterConfig
    from .pipeline import train_from_files
    from .train import TrainConfig

    config = TrainConfig(
        steps=args.steps,
        lr=args.lr,
        batch_size=args.batch_size,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        gradient_checkpointing=args.gradient_checkpointing,
    )
    adapter = AdapterConfig(rank=args.rank, shared=not args.per_layer)
    out = train_from_files(
        args.images, args.content, args.style, args.base, args.out, adapter, config, args.resume, args.device
    )
    print(f"adapter saved to {out}")


def add_generate(sub) -> None:
    p = sub.add_parser("generate", help="generate images in an adapter's style")
    p.add_argument("adapter", metavar="ADAPTER_DIR")
    p.add_argument(
        "prompts", nargs="+", metavar="PROMPT", help='content prompts, e.g. "a cat" (the style descriptor is added)'
    )
    p.add_argument("--out", required=True, help="folder for the PNGs, grid.png and images.json")
    p.add_argument("--n", type=int, default=4, help="images per prompt")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--style-scale", type=float, default=1.0, help="lA, style strength")
    p.add_argument("--guidance", type=float, default=5.0, help="lB, text guidance")
    p.add_argument("--steps", type=int, default=36, help="decoding steps")
    p.add_argument("--temperature", type=float, default=4.5)
    p.add_argument("--negative", default="", help="negative prompt")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--base", default=None, help="override the base recorded in the adapter")
    p.add_argument("--device", default=None)
    p.set_defaults(run=run_generate)


def run_generate(args) -> None:
    from .pipeline import SampleConfig, generate

    config = SampleConfig(
        steps=args.steps,
        temperature=args.temperature,
        style_scale=args.style_scale,
        guidance=args.guidance,
        negative=args.negative,
        batch_size=args.batch_size,
    )
    paths = generate(args.adapter, args.prompts, args.out, args.n, args.seed, config, args.base, args.device)
    print(f"wrote {len(paths)} images, grid.png and images.json to {args.out}")


def add_demo(sub) -> None:
    p = sub.add_parser("demo", help="learn a held-out style from one image and score the result")
    p.add_argument("--out", default="styledrop-demo")
    p.add_argument("--steps", type=int, default=None, help="adapter training steps")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=run_demo)


def run_demo(args) -> None:
    from .demo import run_demo as demo

    for name, value in demo(args.out, args.steps, args.seed).items():
        print(f"{name}: {value}")


def add_build_toy_base(sub) -> None:
    p = sub.add_parser("build-toy-base", help="(re)build the shapes-world base model, resuming where it stopped")
    p.add_argument("--work", default="toyworld-build", help="folder for stage checkpoints")
    p.add_argument("--budget-minutes", type=float, default=120.0, help="stop cleanly (checkpointed) after this long")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=run_build_toy_base)


def run_build_toy_base(args) -> None:
    from .toyworld.build import BuildConfig, build

    status = build(args.work, BuildConfig(seed=args.seed), budget_s=args.budget_minutes * 60)
    for stage, done in status.items():
        print(f"{stage}: {done if isinstance(done, str) else 'done' if done else 'not finished (run again to resume)'}")


def add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="score an adapter against ground truth in the shapes world")
    p.add_argument("adapter", nargs="?", metavar="ADAPTER_DIR", help="omit to score the base with the descriptor only")
    p.add_argument("--style", required=True, help="held-out style the adapter was trained on (candy, blueprint, ...)")
    p.add_argument("--n", type=int, default=4, help="images per content prompt")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--style-scale", type=float, default=1.0)
    p.add_argument("--guidance", type=float, default=5.0)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--json", action="store_true", help="print machine-readable results")
    p.set_defaults(run=run_evaluate)


def run_evaluate(args) -> None:
    from .pipeline import SampleConfig
    from .toyworld.evaluate import evaluate_adapter

    sample = SampleConfig(steps=args.steps, style_scale=args.style_scale, guidance=args.guidance)
    print(evaluate_adapter(args.adapter, args.style, sample, args.n, args.seed, as_json=args.json))


def build_parser() -> Parser:
    parser = Parser(prog="styledrop", description="StyleDrop: learn a style from one image, generate in it.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    add_train(sub)
    add_generate(sub)
    add_demo(sub)
    add_build_toy_base(sub)
    add_evaluate(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    warnings.formatwarning = lambda message, category, *a, **k: f"styledrop: warning: {message}\n"
    try:
        args = build_parser().parse_args(argv)
        args.run(args)
    except StyleDropError as e:
        print(f"styledrop: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("styledrop: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
