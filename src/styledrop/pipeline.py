"""The library functions behind the CLI commands: train an adapter from files, generate images from one."""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import __version__
from .adapters.config import LARGE_ADAPTER, AdapterCard, AdapterConfig
from .adapters.io import read_card
from .errors import StyleDropError, check_ranges
from .fileio import write_json
from .guidance import CONTENT, NEGATIVE, Anchor, Component, Term, guided_logits, mixture_guidance
from .images import center_square, grid, labelled_grid, load_image, save_png, to_pil
from .masking import edit_mask
from .models.amused import AmusedBase, load_base
from .parallel import processes
from .sampler import decode
from .train import TrainConfig, train_adapter


@dataclass(frozen=True)
class SampleConfig:
    """Sampling settings; paper defaults: 36 decoding steps, temperature 4.5, lB = 5, lA in 0-2 for round 1."""

    steps: int = 36
    temperature: float = 4.5  # of the Gumbel noise on the confidence that picks which tokens to keep
    style_scale: float = 1.0  # lA: style strength; 0 = the adapter as trained, -1 = the base alone
    guidance: float = 5.0  # lB: text guidance
    descriptor_guidance: float = 0.0  # lD: guidance toward the style descriptor, lD (G(t) - G(c_t)) (guidance.py)
    negative: str = ""
    batch_size: int = 8
    # Last, so that positional use from before it keeps its meaning.
    token_temperature: float = 1.0  # of the draw of each token: 1 = the model's distribution, 0 = its argmax
    # Only tokens that a branch guidance pulls toward gives at least this fraction of its top token's probability
    # can be drawn (guidance.plausible); 0: any token. 0.1: in the shapes world it lifted the base's shapes and
    # families, round 1's style, content and leakage, and made every blend monotone (README, 2026-12-03).
    # Stylize by anchor applies it times the strength (anchored_config).
    plausibility: float = 0.1

    def __post_init__(self):
        check_ranges(
            self,
            {
                "steps": 1 <= self.steps <= 1000,
                "temperature": 0 <= self.temperature <= 100,
                "token_temperature": 0 <= self.token_temperature <= 10,
                "plausibility": 0 <= self.plausibility < 1,
                "style_scale": -1 <= self.style_scale <= 50,
                "guidance": 0 <= self.guidance <= 50,
                "descriptor_guidance": 0 <= self.descriptor_guidance <= 50,
                "batch_size": 1 <= self.batch_size <= 1024,
            },
        )


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def check_prompts(prompts: list[str], what: str = "prompt") -> list[str]:
    if not prompts:
        raise StyleDropError(f"{what}: none given")
    for i, p in enumerate(prompts, 1):
        if not isinstance(p, str) or not p.strip():
            raise StyleDropError(f"{what} {i}: empty")
    return [p.strip() for p in prompts]


def full_prompt(content: str, style: str) -> str:
    """Content plus style descriptor: 'a house' + 'in watercolor painting style'."""
    return f"{content.strip()} {style.strip()}".strip()


# -- train ------------------------------------------------------------------------------------------------------
def train_from_files(
    images: list[str | Path],
    contents: list[str],
    style: str,
    base: str | None,
    out_dir: str | Path,
    adapter_config: AdapterConfig = AdapterConfig(),
    config: TrainConfig = TrainConfig(),
    resume: bool = False,
    device: str | None = None,
    progress: bool = True,
) -> Path:
    """`styledrop train`: one content prompt per image (or one for all), one style descriptor."""
    if len(contents) == 1 and len(images) > 1:
        contents = contents * len(images)
    if len(contents) != len(images):
        raise StyleDropError(f"--content: give one per image ({len(images)} images, {len(contents)} --content)")
    contents = check_prompts(contents, "--content")
    if not style.strip():
        raise StyleDropError("--style: empty")
    loaded = [load_image(p) for p in images]
    procs = processes()
    model = load_base(base, device or procs.device or default_device())
    prompts = [full_prompt(c, style) for c in contents]
    return train_adapter(
        model, loaded, prompts, out_dir, style.strip(), adapter_config, config, resume, progress, procs=procs
    )


def train_subject(
    images: list[str | Path],
    token: str,
    class_noun: str,
    base: str | None,
    out_dir: str | Path,
    adapter_config: AdapterConfig = LARGE_ADAPTER,
    config: TrainConfig = TrainConfig(),
    resume: bool = False,
    device: str | None = None,
    progress: bool = True,
) -> Path:
    """`styledrop train-subject`: a DreamBooth-style adapter on a few images of one subject, all captioned
    "a [V] teapot" (token + class noun); sampled later with the prompt "a [V] teapot ..."."""
    (token,) = check_prompts([token], "--token")
    (class_noun,) = check_prompts([class_noun], "--class-noun")
    loaded = [load_image(p) for p in images]
    procs = processes()
    model = load_base(base, device or procs.device or default_device())
    prompt = f"a {token} {class_noun}"
    return train_adapter(
        model, loaded, [prompt] * len(loaded), out_dir, "", adapter_config, config, resume, progress,
        kind="subject", procs=procs,
    )  # fmt: skip


# -- generate ------------------------------------------------------------------------------------------------------
def slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit] or "image"


@torch.no_grad()
def sample_batch(
    base: AmusedBase,
    terms: list[Term],
    prompts: dict[str, list[str]],
    seeds: list[int],
    config: SampleConfig,
    progress: bool,
    start: torch.Tensor | None = None,
    anchor: Anchor | None = None,
):
    """Decode one batch: (B, 3, H, W) images in [0, 1]. prompts: B prompts per conditioning key; start: (B, h, w)
    tokens to edit, `mask_id` where they are to be re-drawn (default: all masked, i.e. generation); anchor: tokens
    whose logits gain its weight at every step."""
    side = base.config.token_grid
    rows_by_key = {**prompts, NEGATIVE: [config.negative] * len(seeds)}
    conds = {key: base.condition(rows_by_key[key]) for key in {t.prompt for t in terms}}  # only what terms use
    generators = [torch.Generator(base.device).manual_seed(s) for s in seeds]
    if start is None:
        tokens = torch.full((len(seeds), side * side), base.mask_id, dtype=torch.long, device=base.device)
    else:
        tokens = start.to(base.device).flatten(1)

    memo: dict = {}  # the conditioning is the same at every step: its text-side work is done once
    model = functools.partial(base.logits, memo=memo)

    def logits_fn(flat: torch.Tensor) -> torch.Tensor:
        return guided_logits(model, terms, conds, flat.view(-1, side, side), config.plausibility)

    tokens = decode(
        logits_fn if anchor is None else anchor.wrap(logits_fn),
        tokens,
        base.mask_id,
        config.steps,
        config.temperature,
        generators,
        progress=progress,
        token_temperature=config.token_temperature,
    )
    return base.decode_tokens(tokens.view(-1, side, side))


def sample_mix(
    base: AmusedBase,
    components: list[Component],
    prompts: dict[str, list[str]],
    seeds: list[int],
    config: SampleConfig,
    progress: bool = False,
    start: torch.Tensor | None = None,
    anchor: Anchor | None = None,
) -> torch.Tensor:
    """One image per seed -> (B, 3, H, W) in [0, 1], sampled from a mixture of StyleDrop-guided components
    (guidance.mixture_guidance). prompts maps each component's prompt key to one prompt per seed, and CONTENT to
    the prompts without their style descriptor where descriptor guidance is on. All branches of a batch run in one
    forward pass per decoding step. start: tokens to edit (sample_batch); anchor: tokens (B, N) to pull toward."""
    if NEGATIVE in prompts:
        raise ValueError(f"prompt key {NEGATIVE!r} is reserved for the negative prompt")
    terms = mixture_guidance(components, config.style_scale, config.guidance, config.descriptor_guidance)
    missing = {t.prompt for t in terms} - prompts.keys() - {NEGATIVE}
    if CONTENT in missing:
        raise ValueError(f"descriptor guidance needs the prompts without the style descriptor (key {CONTENT!r})")
    if missing:
        raise ValueError(f"no prompts for the guidance terms' keys {sorted(missing)}")
    size = config.batch_size
    batches = range(0, len(seeds), size)
    chunks = [
        sample_batch(
            base,
            terms,
            {key: rows[i : i + size] for key, rows in prompts.items()},
            seeds[i : i + size],
            config,
            progress,
            None if start is None else start[i : i + size],
            None if anchor is None else anchor.rows(i, i + size),
        )
        for i in tqdm(batches, desc="generating", disable=not progress or len(batches) < 2)
    ]
    return torch.cat(chunks)


def sample_images(
    base: AmusedBase,
    adapter: str | None,
    prompts: list[str],
    seeds: list[int],
    config: SampleConfig,
    progress: bool = False,
    contents: list[str] | None = None,
) -> torch.Tensor:
    """One image per (full prompt, seed) -> (B, 3, H, W) in [0, 1], with StyleDrop guidance around `adapter`
    (plain text guidance when adapter is None). contents: the prompts without their style descriptor, which
    descriptor guidance needs."""
    return sample_mix(base, [Component(1.0, adapter, "text")], one_prompt(prompts, contents), seeds, config, progress)


def one_prompt(prompts: list[str], contents: list[str] | None) -> dict[str, list[str]]:
    """The prompt rows of a single component on "text", with its contents when given (descriptor guidance)."""
    return {"text": prompts} if contents is None else {"text": prompts, CONTENT: contents}


# -- generate: one or several style adapters, a subject adapter, a sweep ------------------------------------------
@dataclass(frozen=True)
class Recipe:
    """What `generate` samples from: style adapters with blend weights, and optionally a subject adapter mixed in
    with weight g (paper equation 6). Neither: the base alone, with text guidance."""

    styles: tuple[tuple[str, float], ...] = ()  # (adapter folder, blend weight)
    subject: str | None = None
    subject_weight: float = 0.6  # g; the paper uses 0.5-0.7

    def __post_init__(self):
        object.__setattr__(self, "styles", tuple((str(d), float(w)) for d, w in self.styles))
        if any(w < 0 for _, w in self.styles) or (self.styles and sum(w for _, w in self.styles) <= 0):
            raise StyleDropError(
                f"--style: blend weights must be >= 0 and not all 0 (got {[w for _, w in self.styles]})"
            )
        if not 0 <= self.subject_weight <= 1:
            raise StyleDropError(f"--subject-weight: out of range ({self.subject_weight!r}), must be in [0, 1]")

    def weights(self) -> tuple[list[float], float]:
        """(weight of each style, weight of the subject): styles share 1 - g in their blend proportions."""
        g = self.subject_weight if self.subject else 0.0
        if not self.styles:
            return [], 1.0 if self.subject else 0.0
        total = sum(w for _, w in self.styles)
        return [(1 - g) * w / total for _, w in self.styles], g


SWEEPABLE = ("style-scale", "guidance", "descriptor-guidance", "subject-weight", "blend")


@dataclass(frozen=True)
class Sweep:
    """One setting varied across a grid's columns, e.g. style-scale over 0..3 in 7 steps."""

    name: str
    values: tuple[float, ...]

    @classmethod
    def parse(cls, text: str) -> Sweep:
        """'style-scale=0:3:7' (start:stop:count) or 'blend=0,0.5,1' (a list)."""
        name, _, spec = text.partition("=")
        if name not in SWEEPABLE or not spec:
            raise StyleDropError(
                f"--sweep {text!r}: expected NAME=START:STOP:COUNT, NAME one of {', '.join(SWEEPABLE)}"
            )
        try:
            if ":" in spec:
                start, stop, count = spec.split(":")
                values = torch.linspace(float(start), float(stop), int(count)).tolist()
            else:
                values = [float(v) for v in spec.split(",")]
        except ValueError:
            raise StyleDropError(f"--sweep {text!r}: START:STOP:COUNT must be numbers (COUNT a whole one)") from None
        if not 1 <= len(values) <= 64:
            raise StyleDropError(f"--sweep {text!r}: between 1 and 64 values, got {len(values)}")
        return cls(name, tuple(round(v, 6) for v in values))

    def apply(self, value: float, recipe: Recipe, config: SampleConfig) -> tuple[Recipe, SampleConfig]:
        if self.name == "style-scale":
            return recipe, dataclasses.replace(config, style_scale=value)
        if self.name == "guidance":
            return recipe, dataclasses.replace(config, guidance=value)
        if self.name == "descriptor-guidance":
            return recipe, dataclasses.replace(config, descriptor_guidance=value)
        if self.name == "subject-weight":
            if recipe.subject is None:
                raise StyleDropError("--sweep subject-weight: needs --subject")
            return dataclasses.replace(recipe, subject_weight=value), config
        if len(recipe.styles) != 2:
            raise StyleDropError(f"--sweep blend: needs exactly two --style (got {len(recipe.styles)})")
        (a, _), (b, _) = recipe.styles
        return dataclasses.replace(recipe, styles=((a, value), (b, 1 - value))), config


def load_recorded_base(folders: dict[str, str], cards: dict[str, AdapterCard], device: str | None) -> AmusedBase:
    """The base the first adapter was trained on, as its card records it."""
    name, card = next(iter(cards.items()))
    try:
        return load_base(card.base.source, device or default_device())
    except StyleDropError as e:
        raise StyleDropError(
            f"{Path(folders[name]) / 'adapter_config.json'}: cannot load the base it was trained on ({e}); "
            "pass --base to give its folder"
        ) from None


@dataclass
class Mixer:
    """A base with a recipe's adapters loaded: turns content prompts into the components and prompts of a mix."""

    base: AmusedBase
    folders: dict[str, str]  # adapter name in `base` ("style0", "style1", ..., "subject") -> its folder
    cards: dict[str, AdapterCard]

    @classmethod
    def load(cls, recipe: Recipe, base: str | None, device: str | None) -> Mixer:
        folders = {f"style{i}": d for i, (d, _) in enumerate(recipe.styles)}
        if recipe.subject is not None:
            folders["subject"] = recipe.subject
        cards = {name: read_card(folder) for name, folder in folders.items()}
        model = (
            load_base(base, device or default_device())
            if base or not cards
            else load_recorded_base(folders, cards, device)
        )
        for name, folder in folders.items():
            model.load_adapter(folder, name)
        return cls(model, folders, cards)

    def describe(self) -> list[dict]:
        """The loaded adapters, for images.json."""
        return [
            {
                "name": name,
                "kind": card.kind,
                "path": str(Path(self.folders[name]).resolve()),
                "weights_sha256": card.weights_sha256,
                "style": card.style,
            }
            for name, card in self.cards.items()
        ]

    def mix(self, recipe: Recipe, contents: list[str]) -> tuple[list[Component], dict[str, list[str]]]:
        """Each style on the content plus its own descriptor; the subject on the content alone (c_t)."""
        style_weights, g = recipe.weights()
        components = [Component(w, f"style{i}", f"style{i}") for i, w in enumerate(style_weights)]
        prompts = {
            f"style{i}": [full_prompt(c, self.cards[f"style{i}"].style) for c in contents]
            for i in range(len(style_weights))
        }
        if recipe.subject is not None or not recipe.styles:
            name = "subject" if recipe.subject is not None else None
            components.append(Component(g if recipe.styles else 1.0, name, CONTENT))
        prompts[CONTENT] = list(contents)  # the subject's prompt, and descriptor guidance's c_t
        return components, prompts


def check_n_and_seed(n: int, seed: int) -> None:
    if not 1 <= n <= 1000:
        raise StyleDropError(f"--n: out of range ({n})")
    if not 0 <= seed < 2**63:
        raise StyleDropError(f"--seed: out of range ({seed})")


def generate(
    recipe: Recipe,
    contents: list[str],
    out_dir: str | Path,
    n: int = 4,
    seed: int = 0,
    config: SampleConfig = SampleConfig(),
    sweep: Sweep | None = None,
    base: str | None = None,
    device: str | None = None,
    progress: bool = True,
) -> list[Path]:
    """`styledrop generate`: n images per content prompt from the recipe's mix of adapters; with a sweep, each
    image once per swept value (same seed). Writes PNGs, grid.png (labelled columns when sweeping) and
    images.json (everything needed to reproduce each image). Returns the PNG paths."""
    contents = check_prompts(contents)
    check_n_and_seed(n, seed)
    out_dir = Path(out_dir)
    mixer = Mixer.load(recipe, base, device)
    jobs = [(k, c, j) for k, c in enumerate(contents) for j in range(n)]  # k: the prompt's place, repeats apart
    seeds = [seed + i for i in range(len(jobs))]
    settings = (
        [(None, recipe, config)] if sweep is None else [(v, *sweep.apply(v, recipe, config)) for v in sweep.values]
    )

    columns, records = [], []
    for value, r, cfg in settings:
        components, prompts = mixer.mix(r, [c for _, c, _ in jobs])
        pixels = sample_mix(mixer.base, components, prompts, seeds, cfg, progress)
        columns.append([to_pil(p) for p in pixels])
        for i, ((k, content, j), image_seed) in enumerate(zip(jobs, seeds, strict=True)):
            tag = "" if value is None else f"-{sweep.name}{value:g}"
            name = f"{k:03d}-{slug(content)}-{j:02d}{tag}.png"
            save_png(columns[-1][i], out_dir / name)
            record = {
                "file": name,
                "content": content,
                "prompts": {key: rows[i] for key, rows in prompts.items()},
                "seed": image_seed,
            }
            records.append(record if value is None else {**record, sweep.name: value})
    if sweep is None:
        save_png(grid(columns[0], columns=n), out_dir / "grid.png")
    else:
        cells = [column[i] for i in range(len(jobs)) for column in columns]
        save_png(labelled_grid(cells, [f"{sweep.name} {v:g}" for v in sweep.values]), out_dir / "grid.png")
    write_json(
        out_dir / "images.json",
        {
            "styledrop_version": __version__,
            "adapters": mixer.describe(),
            "recipe": {
                "style_weights": [w for _, w in recipe.styles],
                "subject_weight": recipe.subject_weight if recipe.subject else None,
            },
            "base": dataclasses.asdict(mixer.base.identity),
            "sampling": dataclasses.asdict(config),
            "sweep": None if sweep is None else {"name": sweep.name, "values": list(sweep.values)},
            "reproduce": "styledrop generate CONTENT --n 1 --seed SEED with the same adapters and settings",
            "images": records,
        },
    )
    return [out_dir / r["file"] for r in records]


# -- stylize: MaskGIT editing of an existing image ------------------------------------------------------------------
STYLIZE_METHODS = ("anchor", "remask")
DEFAULT_STYLIZE_METHOD = "anchor"  # measured against remask in the README's stylize table
# The input's token gains ANCHOR_AT_0 x (1 - strength) in logit. Picked by hand in the shapes world; with 16 its
# stylize benchmark (README) sees the mean style score rise at every step of strength, at lB 1 and 5 alike.
ANCHOR_AT_0 = 16.0


def anchored_config(config: SampleConfig, strength: float) -> SampleConfig:
    """The plausibility constraint comes in with the strength, as the anchor's pull fades: at strength s only
    tokens with alpha x s of a branch's top probability can be drawn, the input's too. So a light stylize keeps
    the input (the constraint all but off), and strength 1 is generation, constraint and all. The alternatives,
    measured in the shapes world (README, stylize at lB 5): the full alpha at every strength rules out, at any
    strength above 0, every input token the style finds implausible (candy's style score: 0.04 at strength 0,
    0.35 at 0.2); exempting the input's tokens left partial edits that scored below the input (-0.03 at 0.2).
    With alpha x s: 0.23."""
    return dataclasses.replace(config, plausibility=config.plausibility * strength)


def check_strength(strength: float) -> None:
    if not 0 <= strength <= 1:
        raise StyleDropError(f"--strength: out of range ({strength!r}), must be in [0, 1]")


def check_method(method: str) -> None:
    if method not in STYLIZE_METHODS:
        raise StyleDropError(f"--method: unknown ({method!r}), must be one of {', '.join(STYLIZE_METHODS)}")


def stylize_pixels(
    base: AmusedBase,
    adapter: str,
    pixels: torch.Tensor,
    prompts: list[str],
    strength: float,
    seeds: list[int],
    config: SampleConfig,
    progress: bool = False,
    method: str = DEFAULT_STYLIZE_METHOD,
) -> torch.Tensor:
    """Re-draw each image (B, 3, H, W) with StyleDrop guidance at `strength` -> same shape (stylize_tokens)."""
    tokens = base.encode_images(pixels)
    return stylize_tokens(base, adapter, tokens, prompts, strength, seeds, config, progress, method=method)


def stylize_tokens(
    base: AmusedBase,
    adapter: str,
    tokens: torch.Tensor,
    prompts: list[str],
    strength: float,
    seeds: list[int],
    config: SampleConfig,
    progress: bool = False,
    contents: list[str] | None = None,
    method: str = DEFAULT_STYLIZE_METHOD,
) -> torch.Tensor:
    """Re-draw VQ tokens (B, h, w) with StyleDrop guidance -> (B, 3, H, W). Strength 0 returns the VQ
    reconstruction, 1 is plain generation from the same seed.

    "anchor" draws every token, each position's input token gaining ANCHOR_AT_0 x (1 - strength) in logit
    (guidance.Anchor): the parts the style disagrees with most change first, backgrounds before fills.
    "remask" (MaskGIT editing) re-masks a random `strength` fraction of the tokens, from their own generator so
    that the decoding draws are those of generation, and decodes them in proportionally fewer steps; the kept
    tokens are context the redrawn ones follow, so the style shows only near strength 1."""
    check_strength(strength)
    check_method(method)
    if strength == 0:
        return base.decode_tokens(tokens)
    component, rows = [Component(1.0, adapter, "text")], one_prompt(prompts, contents)
    if method == "anchor":
        anchor = Anchor(tokens.flatten(1), ANCHOR_AT_0 * (1 - strength))
        return sample_mix(base, component, rows, seeds, anchored_config(config, strength), progress, anchor=anchor)
    mask = edit_mask(len(seeds), tokens[0].numel(), strength, [torch.Generator().manual_seed(s) for s in seeds])
    start = torch.where(mask.view_as(tokens).to(tokens.device), base.mask_id, tokens)
    edit = dataclasses.replace(config, steps=max(1, math.ceil(config.steps * strength)))
    return sample_mix(base, component, rows, seeds, edit, progress, start)


def stylize(
    adapter_dir: str | Path,
    image: str | Path,
    content: str,
    out_dir: str | Path,
    strength: float = 0.6,
    n: int = 4,
    seed: int = 0,
    config: SampleConfig = SampleConfig(),
    base: str | None = None,
    device: str | None = None,
    progress: bool = True,
    method: str = DEFAULT_STYLIZE_METHOD,
) -> list[Path]:
    """`styledrop stylize`: n stylized versions of an image (stylize_tokens); writes PNGs, grid.png (the input's
    reconstruction first) and images.json. Returns the PNG paths."""
    (content,) = check_prompts([content], "content prompt")
    check_n_and_seed(n, seed)
    check_strength(strength)  # before loading anything
    check_method(method)
    source, out_dir = load_image(image), Path(out_dir)
    mixer = Mixer.load(Recipe(styles=((str(adapter_dir), 1.0),)), base, device)
    model, card = mixer.base, mixer.cards["style0"]
    tokens = model.encode_images(center_square(source, model.resolution)[None])  # (1, h, w), encoded once
    prompt = full_prompt(content, card.style)
    seeds = [seed + j for j in range(n)]
    stylized = stylize_tokens(
        model, "style0", tokens.repeat(n, 1, 1), [prompt] * n, strength, seeds, config, progress, [content] * n, method
    )
    outputs = [to_pil(p) for p in stylized]
    reconstruction = to_pil(model.decode_tokens(tokens)[0])
    paths, records = [], []
    for j, (image_seed, picture) in enumerate(zip(seeds, outputs, strict=True)):
        paths.append(out_dir / f"{slug(content)}-{j:02d}.png")
        save_png(picture, paths[-1])
        records.append({"file": paths[-1].name, "seed": image_seed})
    save_png(grid([reconstruction, *outputs], columns=n + 1), out_dir / "grid.png")
    write_json(
        out_dir / "images.json",
        {
            "styledrop_version": __version__,
            "adapters": mixer.describe(),
            "input": str(Path(image).resolve()),
            "prompt": prompt,
            "strength": strength,
            "method": method,
            "base": dataclasses.asdict(model.identity),
            "sampling": dataclasses.asdict(config),
            "images": records,
        },
    )
    return paths
