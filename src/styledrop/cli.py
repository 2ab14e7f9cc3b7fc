"""`styledrop` command line: each command parses its arguments, calls one library function, prints."""

from __future__ import annotations

import argparse
import sys
import warnings

from .errors import OutOfRange, StyleDropError


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one line, not usage plus message."""

    def error(self, message: str):
        raise StyleDropError(f"{self.prog}: {message}")


def add_training_args(p, large: bool = False) -> None:
    """Adapter shape and training settings; round 2 and subjects default to the larger per-layer adapter."""
    from .adapters.config import LARGE_ADAPTER, AdapterConfig
    from .train import TrainConfig as T

    p.add_argument("--steps", type=int, default=T.steps, help="training steps")
    p.add_argument("--lr", type=float, default=T.lr, help="learning rate (AdamW)")
    p.add_argument("--rank", type=int, default=LARGE_ADAPTER.rank if large else AdapterConfig.rank)
    per_layer = large and not LARGE_ADAPTER.shared
    if per_layer:
        p.add_argument("--shared", dest="per_layer", action="store_false", help="one adapter shared by all layers")
    else:
        p.add_argument("--per-layer", action="store_true", help="per-layer adapter weights (paper round 2)")
    p.add_argument("--batch-size", type=int, default=T.batch_size)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=T.checkpoint_every)
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.set_defaults(per_layer=per_layer)


def training_configs(args):
    from .adapters.config import AdapterConfig
    from .train import TrainConfig

    config = TrainConfig(
        steps=args.steps,
        lr=args.lr,
        batch_size=args.batch_size,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        gradient_checkpointing=args.gradient_checkpointing,
    )
    return AdapterConfig(rank=args.rank, shared=not args.per_layer), config


def add_sampling_args(p, prefix: str = "", steps: int | None = None) -> None:
    """lA, lB, lD, decoding steps, temperatures, negative prompt and batch size, with SampleConfig's defaults."""
    from .pipeline import SampleConfig as S

    p.add_argument(
        f"--{prefix}style-scale",
        type=float,
        default=S.style_scale,
        help="lA, style strength: 0 = the adapter as trained, -1 = no style, above 0 = stronger",
    )
    p.add_argument(f"--{prefix}guidance", type=float, default=S.guidance, help="lB, text guidance")
    p.add_argument(
        f"--{prefix}descriptor-guidance",
        type=float,
        default=S.descriptor_guidance,
        help="lD, guidance toward the style descriptor: the full prompt against the content prompt alone",
    )
    p.add_argument(f"--{prefix}steps", type=int, default=steps or S.steps, help="decoding steps")
    p.add_argument(
        f"--{prefix}temperature", type=float, default=S.temperature, help="of the noise that picks which tokens to keep"
    )
    p.add_argument(
        f"--{prefix}token-temperature",
        type=float,
        default=S.token_temperature,
        help="of each token's draw: 1 = the model's distribution, 0 = its most likely token",
    )
    p.add_argument(
        f"--{prefix}plausibility",
        type=float,
        default=S.plausibility,
        help="only tokens with at least this fraction of the top token's probability under a guided-toward branch "
        "can be drawn; 0 = any token; stylize applies it times --strength",
    )
    p.add_argument(f"--{prefix}negative", default=S.negative, help="negative prompt")
    p.add_argument(f"--{prefix}batch-size", type=int, default=S.batch_size)


def sample_config(args, prefix: str = ""):
    from .pipeline import SampleConfig

    fields = (
        "style_scale",
        "guidance",
        "descriptor_guidance",
        "steps",
        "temperature",
        "token_temperature",
        "plausibility",
        "negative",
        "batch_size",
    )
    try:
        return SampleConfig(**{f: getattr(args, prefix + f) for f in fields})
    except OutOfRange as e:  # name the option typed: refine's --pool-steps, not its training --steps
        raise OutOfRange(e.field, e.value, prefix.replace("_", "-")) from None


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
    add_adapter_training_args(p)
    p.set_defaults(run=run_train)


def add_adapter_training_args(p, large: bool = False) -> None:
    """What `train` and `train-subject` share: the base, the output folder, the training settings, resuming."""
    p.add_argument(
        "--base", default=None, help="hub id or folder of an aMUSEd-format model (default: the built-in toy base)"
    )
    p.add_argument("--out", required=True, help="adapter folder to write")
    add_training_args(p, large)
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    p.add_argument("--device", default=None)


def run_train(args) -> None:
    from .pipeline import train_from_files

    adapter, config = training_configs(args)
    out = train_from_files(
        args.images, args.content, args.style, args.base, args.out, adapter, config, args.resume, args.device
    )
    print(f"adapter saved to {out}")


def weighted_folder(text: str) -> tuple[str, float]:
    """'DIR' or 'DIR:WEIGHT' (the weight only when what follows the last colon is a number)."""
    folder, _, weight = text.rpartition(":")
    try:
        return (folder, float(weight)) if folder else (text, 1.0)
    except ValueError:
        return text, 1.0


def add_generate(sub) -> None:
    p = sub.add_parser("generate", help="generate images in one or several styles, optionally of your subject")
    p.add_argument(
        "prompts", nargs="+", metavar="PROMPT", help='content prompts, e.g. "a cat" (each style adds its descriptor)'
    )
    p.add_argument(
        "--style",
        action="append",
        default=[],
        type=weighted_folder,
        metavar="DIR[:WEIGHT]",
        help="a style adapter; repeat to blend styles, e.g. --style a:0.7 --style b:0.3",
    )
    p.add_argument("--subject", default=None, metavar="DIR", help="a subject adapter (styledrop train-subject)")
    p.add_argument("--subject-weight", type=float, default=None, help="g in l = (1-g) l_style + g l_subject (0.6)")
    p.add_argument(
        "--sweep",
        default=None,
        metavar="NAME=START:STOP:COUNT",
        help="one grid column per value of style-scale, guidance, descriptor-guidance, subject-weight or blend "
        "(the first style's weight)",
    )
    p.add_argument("--out", required=True, help="folder for the PNGs, grid.png and images.json")
    p.add_argument("--n", type=int, default=4, help="images per prompt")
    p.add_argument("--seed", type=int, default=0)
    add_sampling_args(p)
    p.add_argument("--base", default=None, help="override the base recorded in the adapters")
    p.add_argument("--device", default=None)
    p.set_defaults(run=run_generate)


def run_generate(args) -> None:
    from .pipeline import Recipe, Sweep, generate

    if args.subject_weight is not None and args.subject is None:
        raise StyleDropError("--subject-weight: needs --subject")
    weight = {} if args.subject_weight is None else {"subject_weight": args.subject_weight}
    recipe = Recipe(styles=tuple(args.style), subject=args.subject, **weight)
    sweep = Sweep.parse(args.sweep) if args.sweep else None
    paths = generate(
        recipe, args.prompts, args.out, args.n, args.seed, sample_config(args), sweep, args.base, args.device
    )
    print(f"wrote {len(paths)} images, grid.png and images.json to {args.out}")


def add_train_subject(sub) -> None:
    p = sub.add_parser("train-subject", help="train a subject adapter on 3-6 images of one object (DreamBooth-style)")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--token", default="[V]", help="the rare word that names your subject")
    p.add_argument("--class-noun", required=True, help='what the subject is, e.g. "teapot": prompts are "a [V] teapot"')
    add_adapter_training_args(p, large=True)
    p.set_defaults(run=run_train_subject)


def run_train_subject(args) -> None:
    from .pipeline import train_subject

    adapter, config = training_configs(args)
    out = train_subject(
        args.images, args.token, args.class_noun, args.base, args.out, adapter, config, args.resume, args.device
    )
    print(f"subject adapter saved to {out}")


def add_stylize(sub) -> None:
    from .pipeline import DEFAULT_STYLIZE_METHOD, STYLIZE_METHODS

    p = sub.add_parser("stylize", help="redraw an existing image in an adapter's style (MaskGIT editing)")
    p.add_argument("adapter", metavar="ADAPTER_DIR")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("prompt", metavar="PROMPT", help='what the image shows, e.g. "a house"')
    p.add_argument("--strength", type=float, default=0.6, help="0 keeps the image, 1 ignores it")
    p.add_argument(
        "--method",
        choices=STYLIZE_METHODS,
        default=DEFAULT_STYLIZE_METHOD,
        help="anchor: redraw every token, pulled toward the image's own (default); remask: redraw a random "
        "strength fraction of the tokens (MaskGIT editing)",
    )
    p.add_argument("--out", default="stylized", help="folder for the PNGs, grid.png and images.json")
    p.add_argument("--n", type=int, default=4, help="versions to make")
    p.add_argument("--seed", type=int, default=0)
    add_sampling_args(p)
    p.add_argument("--base", default=None, help="override the base recorded in the adapter")
    p.add_argument("--device", default=None)
    p.set_defaults(run=run_stylize)


def run_stylize(args) -> None:
    from .pipeline import stylize

    paths = stylize(
        args.adapter,
        args.image,
        args.prompt,
        args.out,
        args.strength,
        args.n,
        args.seed,
        sample_config(args),
        args.base,
        args.device,
        method=args.method,
    )
    print(f"wrote {len(paths)} images, grid.png (input's reconstruction first) and images.json to {args.out}")


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
    from .toyworld.build import ASSETS, DEFAULT_WORK, POSITION_INITS, PRECISIONS
    from .toyworld.build import BuildConfig as B
    from .toyworld.render import FAMILIES

    p = sub.add_parser("build-toy-base", help="(re)build the shapes-world base model, resuming where it stopped")
    p.add_argument("--work", default=DEFAULT_WORK, help="folder for stage checkpoints")
    p.add_argument("--budget-minutes", type=float, default=120.0, help="stop cleanly (checkpointed) after this long")
    p.add_argument("--out", default=ASSETS, help="export the base and the ruler here (default: the package's assets)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--vq-local-steps", type=int, default=0, help="fine-tune a VQ with a patch-local encoder for the U-ViT (0: off)"
    )
    p.add_argument("--uvit-steps", type=int, default=B.uvit_steps, help="training steps of the U-ViT (of each cycle)")
    p.add_argument("--uvit-cycles", type=int, default=B.uvit_cycles, help="U-ViT cycles, each from the last's weights")
    p.add_argument("--uvit-channels", type=int, default=B.uvit_block_channels, help="channels of the U-ViT's conv path")
    p.add_argument("--uvit-hidden", type=int, default=B.uvit_hidden_size, help="width of the U-ViT's transformer")
    p.add_argument("--uvit-layers", type=int, default=B.uvit_layers, help="transformer layers of the U-ViT")
    p.add_argument(
        "--uvit-flat", action="store_true", help="no 2x2 resampling: the transformer sees every token (slower)"
    )
    p.add_argument("--uvit-precision", choices=PRECISIONS, default=B.uvit_precision, help="bf16: autocast, for a GPU")
    p.add_argument(
        "--uvit-position-init",
        choices=POSITION_INITS,
        default=B.uvit_position_init,
        help="fourier: the U-ViT's position embedding starts as plane waves",
    )
    p.add_argument(
        "--uvit-rotary",
        action="store_true",
        help="rotary positions in the U-ViT's self-attention (offsets, not places)",
    )
    for option, metavar, what in (
        ("--uvit-fill-weight", "W", "weigh the loss of the shape's tokens this many times the backdrop's"),
        ("--uvit-family-boost", "B", "draw scenes of --uvit-boost-families this many times as often"),
    ):
        default = getattr(B, option[2:].replace("-", "_"))
        p.add_argument(
            option,
            type=float,
            nargs="+",
            metavar=metavar,
            default=default,
            help=f"{what}: one per cycle, the last for the rest",
        )
    p.add_argument(
        "--uvit-boost-families",
        nargs="+",
        choices=FAMILIES,
        metavar="FAMILY",
        default=B.uvit_boost_families,
        help=f"the families --uvit-family-boost draws more often (default: {' '.join(B.uvit_boost_families)})",
    )
    p.add_argument("--uvit-compile", action="store_true", help="torch.compile the U-ViT's training (a minute first)")
    p.add_argument("--device", default=None, help="the U-ViT stage's device (default: cuda if available, else cpu)")
    p.set_defaults(run=run_build_toy_base)


def run_build_toy_base(args) -> None:
    from .toyworld.build import BuildConfig, build

    config = BuildConfig(
        seed=args.seed,
        vq_local_steps=args.vq_local_steps,
        uvit_steps=args.uvit_steps,
        uvit_cycles=args.uvit_cycles,
        uvit_block_channels=args.uvit_channels,
        uvit_hidden_size=args.uvit_hidden,
        uvit_layers=args.uvit_layers,
        uvit_downsample=not args.uvit_flat,
        uvit_precision=args.uvit_precision,
        uvit_compile=args.uvit_compile,
        uvit_position_init=args.uvit_position_init,
        uvit_rotary=args.uvit_rotary,
        uvit_fill_weight=args.uvit_fill_weight,
        uvit_family_boost=args.uvit_family_boost,
        uvit_boost_families=args.uvit_boost_families,
    )
    status = build(args.work, config, budget_s=args.budget_minutes * 60, dest=args.out, device=args.device)
    for stage, done in status.items():
        print(f"{stage}: {done if isinstance(done, str) else 'done' if done else 'not finished (run again to resume)'}")


def add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="score an adapter against ground truth in the shapes world")
    p.add_argument("adapter", nargs="?", metavar="ADAPTER_DIR", help="omit to score the base with the descriptor only")
    p.add_argument("--style", required=True, help="held-out style the adapter was trained on (candy, blueprint, ...)")
    p.add_argument("--n", type=int, default=4, help="images per content prompt")
    p.add_argument("--seed", type=int, default=0)
    add_sampling_args(p, steps=12)
    p.add_argument("--json", action="store_true", help="print machine-readable results")
    p.set_defaults(run=run_evaluate)


def run_evaluate(args) -> None:
    from .toyworld.evaluate import evaluate_adapter

    print(evaluate_adapter(args.adapter, args.style, sample_config(args), args.n, args.seed, as_json=args.json))


def add_refine(sub) -> None:
    p = sub.add_parser(
        "refine",
        help="round 2: generate a pool from an adapter, select by feedback, train a new adapter on the selection",
        description="Each stage (pool, scores, selection, adapter) is kept in --out and reused when the command "
        "runs again, so an interrupted round resumes, and a finished one can be re-run with another --feedback.",
    )
    p.add_argument("adapter", metavar="ADAPTER_DIR", help="the previous round's adapter")
    p.add_argument("--out", required=True, metavar="ROUND_DIR", help="folder for the round")
    p.add_argument("--prompts", default=None, metavar="FILE", help="content prompts, one per line (default: built in)")
    p.add_argument("--per-prompt", type=int, default=8, help="pool images per prompt")
    p.add_argument(
        "--feedback",
        choices=("clip", "human", "random"),
        default="clip",
        help="clip: best text score per prompt; human: picks from `styledrop review`; random: the control",
    )
    p.add_argument("--keep", type=int, default=1, help="images kept per prompt (clip, random)")
    p.add_argument("--min-style", type=float, default=None, help="clip: drop images with a lower style score")
    p.add_argument("--scorer", default=None, help="CLIP hub id or folder (default: per base)")
    p.add_argument("--pool-seed", type=int, default=0, help="pool image i uses seed pool-seed + i")
    add_sampling_args(p, prefix="pool-")
    add_training_args(p, large=True)
    p.add_argument("--device", default=None)
    p.set_defaults(run=run_refine)


def run_refine(args) -> None:
    from .feedback.rounds import SelectConfig, read_prompt_file, refine

    adapter, config = training_configs(args)
    result = refine(
        args.adapter,
        args.out,
        read_prompt_file(args.prompts) if args.prompts else None,
        args.per_prompt,
        args.pool_seed,
        sample_config(args, "pool_"),
        SelectConfig(args.feedback, args.keep, args.min_style, args.seed),
        args.scorer,
        adapter,
        config,
        args.device,
    )
    print(f"pool: {result.pool} images ({result.generated} generated now) in {args.out}/pool")
    for name, summary in result.summary.items():
        print(
            f"{name}: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in summary.items())
        )
    if result.adapter is not None:
        print(f"round adapter saved to {result.adapter}")


def add_review(sub) -> None:
    p = sub.add_parser("review", help="a local web page to pick a round's images and start its training")
    p.add_argument("round", metavar="ROUND_DIR")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    add_training_args(p, large=True)
    p.set_defaults(run=run_review)


def run_review(args) -> None:
    from .webui.server import serve

    adapter, config = training_configs(args)
    serve(args.round, args.host, args.port, adapter_config=adapter, config=config)


def build_parser() -> Parser:
    parser = Parser(prog="styledrop", description="StyleDrop: learn a style from one image, generate in it.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    add_train(sub)
    add_train_subject(sub)
    add_generate(sub)
    add_stylize(sub)
    add_demo(sub)
    add_build_toy_base(sub)
    add_evaluate(sub)
    add_refine(sub)
    add_review(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    warnings.formatwarning = lambda message, category, *a, **k: f"styledrop: warning: {message}\n"
    try:
        args = build_parser().parse_args(argv)
        args.run(args)
    except StyleDropError as e:
        print(f"styledrop: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk, a read-only folder, a vanished file: the OS's reason, on one line
        where = f"{e.filename}: " if e.filename else ""
        print(f"styledrop: error: {StyleDropError(f'{where}{e.strerror or e}')}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("styledrop: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
