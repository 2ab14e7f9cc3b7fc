"""The library functions behind the CLI commands: train an adapter from files, generate images from one."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import __version__
from .adapters.config import AdapterConfig
from .adapters.io import read_card
from .errors import StyleDropError, check_ranges
from .fileio import write_json
from .guidance import guided_logits, styledrop_guidance, text_guidance
from .images import grid, load_image, save_png, to_pil
from .models.amused import AmusedBase, load_base
from .sampler import decode
from .train import TrainConfig, train_adapter


@dataclass(frozen=True)
class SampleConfig:
    """Sampling settings; paper defaults: 36 decoding steps, temperature 4.5, lB = 5, lA in 0-2 for round 1."""

    steps: int = 36
    temperature: float = 4.5
    style_scale: float = 1.0  # lA: style strength
    guidance: float = 5.0  # lB: text guidance
    negative: str = ""
    batch_size: int = 8

    def __post_init__(self):
        check_ranges(
            self,
            {
                "steps": 1 <= self.steps <= 1000,
                "temperature": 0 <= self.temperature <= 100,
                "style_scale": 0 <= self.style_scale <= 50,
                "guidance": 0 <= self.guidance <= 50,
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
    model = load_base(base, device or default_device())
    prompts = [full_prompt(c, style) for c in contents]
    return train_adapter(model, loaded, prompts, out_dir, style.strip(), adapter_config, config, resume, progress)


# -- generate ------------------------------------------------------------------------------------------------------
def slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit] or "image"


@torch.no_grad()
def sample_batch(base: AmusedBase, terms, prompts: list[str], seeds: list[int], config: SampleConfig, progress: bool):
    """Decode one batch: (B, 3, H, W) images in [0, 1] for B (full prompt, seed) pairs."""
    side = base.config.token_grid
    conds = {"text": base.condition(prompts), "negative": base.condition([config.negative] * len(prompts))}
    generators = [torch.Generator(base.device).manual_seed(s) for s in seeds]
    tokens = torch.full((len(prompts), side * side), base.mask_id, dtype=torch.long, device=base.device)

    def logits_fn(flat: torch.Tensor) -> torch.Tensor:
        return guided_logits(base.logits, terms, conds, flat.view(-1, side, side))

    tokens = decode(logits_fn, tokens, base.mask_id, config.steps, config.temperature, generators, progress)
    return base.decode_tokens(tokens.view(-1, side, side))


def sample_images(
    base: AmusedBase,
    adapter: str | None,
    prompts: list[str],
    seeds: list[int],
    config: SampleConfig,
    progress: bool = False,
) -> torch.Tensor:
    """One image per (full prompt, seed) -> (B, 3, H, W) in [0, 1], with StyleDrop guidance around `adapter`
    (plain text guidance when adapter is None). All guidance branches run in one batched pass per step."""
    if adapter is None:
        terms = text_guidance(config.guidance)
    else:
        terms = styledrop_guidance(adapter, config.style_scale, config.guidance)
    batches = range(0, len(prompts), config.batch_size)
    chunks = [
        sample_batch(
            base, terms, prompts[i : i + config.batch_size], seeds[i : i + config.batch_size], config, progress
        )
        for i in tqdm(batches, desc="generating", disable=not progress or len(batches) < 2)
    ]
    return torch.cat(chunks)


def generate(
    adapter_dir: str | Path,
    contents: list[str],
    out_dir: str | Path,
    n: int = 4,
    seed: int = 0,
    config: SampleConfig = SampleConfig(),
    base: str | None = None,
    device: str | None = None,
    progress: bool = True,
) -> list[Path]:
    """`styledrop generate`: n images per content prompt in the adapter's style; writes PNGs, grid.png and
    images.json (everything needed to reproduce each image). Returns the PNG paths."""
    contents = check_prompts(contents)
    if not 1 <= n <= 1000:
        raise StyleDropError(f"--n: out of range ({n})")
    if not 0 <= seed < 2**63:
        raise StyleDropError(f"--seed: out of range ({seed})")
    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    card = read_card(adapter_dir)
    model = load_base(base or card.base.source, device or default_device())
    model.load_adapter(adapter_dir, "style")

    jobs = [(c, j) for c in contents for j in range(n)]
    prompts = [full_prompt(c, card.style) for c, _ in jobs]
    seeds = [seed + i for i in range(len(jobs))]
    images = [to_pil(p) for p in sample_images(model, "style", prompts, seeds, config, progress)]
    paths, records = [], []
    for (content, j), prompt, image_seed, image in zip(jobs, prompts, seeds, images, strict=True):
        path = out_dir / f"{contents.index(content):03d}-{slug(content)}-{j:02d}.png"
        save_png(image, path)
        paths.append(path)
        records.append({"file": path.name, "content": content, "prompt": prompt, "seed": image_seed})
    save_png(grid(images, columns=n), out_dir / "grid.png")
    write_json(
        out_dir / "images.json",
        {
            "styledrop_version": __version__,
            "adapter": {"path": str(adapter_dir.resolve()), "weights_sha256": card.weights_sha256, "style": card.style},
            "base": dataclasses.asdict(model.identity),
            "sampling": dataclasses.asdict(config),
            "reproduce": "styledrop generate ADAPTER CONTENT --n 1 --seed SEED with the sampling settings above",
            "images": records,
        },
    )
    return paths
