"""Training a StyleDrop adapter on a frozen base: masked-token cross-entropy, cosine mask schedule.

The VQ tokens of the training images (with their augmentations) and the text embeddings of their prompts
never change, so they are computed once, before the first step.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from .adapters.config import AdapterCard, AdapterConfig
from .adapters.io import CONFIG_NAME, REFERENCE_DIR, WEIGHTS_NAME, save_adapter, save_references
from .adapters.layer import Adapter
from .checkpoint import is_complete, load_state, read_meta, save_state
from .draws import rand, randint
from .errors import StyleDropError, check_ranges
from .fileio import remove_temporaries
from .images import resize_shorter_side, to_tensor
from .masking import apply_mask, random_mask
from .models.amused import AmusedBase, Conditioning
from .parallel import Processes

ADAPTER_NAME = "train"
CHECKPOINTS = "checkpoints"


@dataclass(frozen=True)
class TrainConfig:
    """Training settings. steps and lr: the centre of the shapes-world sweep (benchmarks/toyworld_sweep.py)."""

    steps: int = 300
    lr: float = 1e-3
    batch_size: int = 8
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    cond_dropout: float = 0.1  # probability of replacing a sample's prompt by the empty prompt
    seed: int = 0
    checkpoint_every: int = 100
    gradient_checkpointing: bool = False
    crops_per_image: int = 8  # the augmentation bank: random crops of each image, each also flipped
    # The shorter side is resized to crop_scale x resolution before cropping; 1.0: no rescale, and for a square
    # reference no shift, only flips. Measured on the one-cycle toy base (README, defaults by measurement), 1.15
    # (a 1.15x rescale and shifts of up to 5 pixels) lost style and content against 1.0 over six held-out styles.
    crop_scale: float = 1.0
    flip: bool = True

    def __post_init__(self):
        check_ranges(
            self,
            {
                "steps": 1 <= self.steps <= 1_000_000,
                "lr": 0 < self.lr <= 1.0,
                "batch_size": 1 <= self.batch_size <= 4096,
                "weight_decay": 0 <= self.weight_decay <= 1,
                "grad_clip": self.grad_clip > 0,
                "cond_dropout": 0 <= self.cond_dropout < 1,
                "seed": 0 <= self.seed < 2**63,
                "checkpoint_every": self.checkpoint_every >= 1,
                "crops_per_image": self.crops_per_image >= 1,
                "crop_scale": 1.0 <= self.crop_scale <= 4.0,
            },
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def resumable_from(self, other: dict) -> bool:
        """A run may resume another whose settings differ at most in length and checkpoint spacing."""
        ignore = {"steps", "checkpoint_every"}
        return {k: v for k, v in self.to_dict().items() if k not in ignore} == {
            k: v for k, v in other.items() if k not in ignore
        }


@dataclass
class TrainingSet:
    """Every augmented variant of every training image, encoded once. M variants."""

    tokens: torch.Tensor  # (M, h, w) VQ token ids
    micro: torch.Tensor  # (M, 5) micro-conditioning of each variant's crop
    prompt_index: torch.Tensor  # (M,) which prompt each variant belongs to
    text: Conditioning  # one row per prompt (micro unused)
    empty: Conditioning  # the empty prompt, for conditioning dropout

    def __len__(self) -> int:
        return self.tokens.shape[0]


def crop_variants(image: Image.Image, resolution: int, config: TrainConfig, generator: torch.Generator):
    """Yield (pixels (3, res, res), micro (orig_w, orig_h, top, left)) for each augmentation of one image.

    The first crop is centred; the others are random. With flip on, each crop also comes mirrored.
    """
    resized = resize_shorter_side(image, round(resolution * config.crop_scale))
    w, h = resized.size
    for i in range(config.crops_per_image):
        if i == 0:
            top, left = (h - resolution) // 2, (w - resolution) // 2
        else:
            top = int(torch.randint(h - resolution + 1, (), generator=generator))
            left = int(torch.randint(w - resolution + 1, (), generator=generator))
        pixels = to_tensor(resized.crop((left, top, left + resolution, top + resolution)))
        yield pixels, (w, h, top, left)
        if config.flip:
            yield pixels.flip(-1), (w, h, top, left)


def build_training_set(
    base: AmusedBase, images: list[Image.Image], prompts: list[str], config: TrainConfig, generator: torch.Generator
) -> TrainingSet:
    pixels, micro, owner = [], [], []
    for index, image in enumerate(images):
        for p, (w, h, top, left) in crop_variants(image, base.resolution, config, generator):
            pixels.append(p)
            micro.append(base.micro_conds(1, (w, h), (top, left))[0])
            owner.append(index)
    tokens = torch.cat([base.encode_images(torch.stack(pixels[i : i + 16])) for i in range(0, len(pixels), 16)])
    return TrainingSet(
        tokens=tokens,
        micro=torch.stack(micro),
        prompt_index=torch.tensor(owner, device=base.device),
        text=base.condition(prompts),
        empty=base.condition([""]),
    )


def drop_conditioning(
    cond: Conditioning, empty: Conditioning, p: float, generator: torch.Generator
) -> tuple[Conditioning, torch.Tensor]:
    """Replace each row's text by the empty prompt with probability p; returns (conditioning, dropped (B,))."""
    dropped = rand((len(cond),), generator, cond.hidden.device) < p
    empty = Conditioning(empty.hidden.expand_as(cond.hidden), empty.pooled.expand_as(cond.pooled), cond.micro)
    return cond.where(~dropped, empty), dropped


def masked_token_loss(
    base: AmusedBase, tokens: torch.Tensor, cond: Conditioning, route, generator, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean cross-entropy on the masked positions of tokens (B, h, w), masked by the cosine schedule; weights
    (B, h, w), if given, weigh each position in that mean."""
    mask = random_mask(tokens.flatten(1), generator)
    if weights is None:
        return summed_masked_loss(base, tokens, mask, cond, route) / mask.sum()
    weights = weights.flatten(1)
    return summed_masked_loss(base, tokens, mask, cond, route, weights) / (weights * mask).sum()


def summed_masked_loss(
    base: AmusedBase,
    tokens: torch.Tensor,
    mask: torch.Tensor,
    cond: Conditioning,
    route,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy summed over the positions where mask (B, N) is set, of tokens (B, h, w), each position's
    term times its entry of weights (B, N) if given."""
    flat = tokens.flatten(1)
    logits = base.logits(apply_mask(flat, mask, base.mask_id).view_as(tokens), cond, route)
    # index_select, not boolean indexing: its backward is a plain index_add, where logits[mask]'s is an
    # accumulating index_put that took 14% of a toy-base step.
    rows = mask.flatten().nonzero().squeeze(1)
    picked, targets = logits.flatten(0, 1).index_select(0, rows), flat.flatten().index_select(0, rows)
    if weights is None:
        return F.cross_entropy(picked.float(), targets, reduction="sum")
    return (F.cross_entropy(picked.float(), targets, reduction="none") * weights.flatten().index_select(0, rows)).sum()


def sample_batch(data: TrainingSet, batch_size: int, dropout: float, generator: torch.Generator):
    """A random batch of augmented variants with their (possibly dropped) conditioning."""
    idx = randint(len(data), (batch_size,), generator, data.tokens.device)
    text = data.text.index(data.prompt_index[idx])
    cond = Conditioning(text.hidden, text.pooled, data.micro[idx])
    cond, _ = drop_conditioning(cond, data.empty, dropout, generator)
    return data.tokens[idx], cond


def train_step(
    base: AmusedBase,
    data: TrainingSet,
    adapter: Adapter,
    optimizer,
    config: TrainConfig,
    generator,
    procs: Processes = Processes(),
) -> torch.Tensor:
    """One optimisation step of `adapter` (routed in the caller) on a random batch; returns the batch's loss.
    Every process draws the whole batch and its masks, computes its share of the rows, and the gradients are
    summed: one step of the same batch, however many processes. A non-finite loss leaves the adapter as it was."""
    tokens, cond = sample_batch(data, config.batch_size, config.cond_dropout, generator)
    mask = random_mask(tokens.flatten(1), generator)
    rows = procs.rows(len(tokens))
    loss = summed_masked_loss(base, tokens[rows], mask[rows], cond.index(rows), ADAPTER_NAME) / mask.sum()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    params = list(adapter.parameters())
    total = loss.detach().clone()
    procs.sum_([total, *(p.grad for p in params)])
    if torch.isfinite(total):
        torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()
    return total


def prepare_training(base: AmusedBase, images, prompts, adapter_config: AdapterConfig, config: TrainConfig, generator):
    """A fresh adapter under ADAPTER_NAME, the encoded training set, the optimiser; gradient checkpointing set.
    Returns (adapter, data, optimizer)."""
    if ADAPTER_NAME in base.adapters:
        base.adapters.remove(ADAPTER_NAME)
    adapter = base.new_adapter(ADAPTER_NAME, adapter_config, generator)
    data = build_training_set(base, images, prompts, config, generator)
    optimizer = torch.optim.AdamW(adapter.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    base.transformer.set_gradient_checkpointing(config.gradient_checkpointing)
    return adapter, data, optimizer


# -- checkpoints ----------------------------------------------------------------------------------------------------
def save_checkpoint(folder: Path, step: int, adapter: Adapter, optimizer, generator, config: TrainConfig) -> None:
    path = folder / CHECKPOINTS / f"step-{step:07d}"
    save_state(path, {"adapter": adapter}, optimizer, generator, {"step": step, "train": config.to_dict()})
    for old in (folder / CHECKPOINTS).glob("step-*"):
        if old != path:
            shutil.rmtree(old, ignore_errors=True)


def latest_checkpoint(folder: Path) -> Path | None:
    return max((p for p in (folder / CHECKPOINTS).glob("step-*") if is_complete(p)), default=None)


def load_checkpoint(path: Path, adapter: Adapter, optimizer, generator, config: TrainConfig) -> int:
    if not config.resumable_from(read_meta(path)["train"]):
        raise StyleDropError(f"{path}: checkpoint was made with other training settings; resume with the same ones")
    return int(load_state(path, {"adapter": adapter}, optimizer, generator)["step"])


# -- the loop ----------------------------------------------------------------------------------------------------
def train_adapter(
    base: AmusedBase,
    images: list[Image.Image],
    prompts: list[str],
    out_dir: str | Path,
    style: str,
    adapter_config: AdapterConfig = AdapterConfig(),
    config: TrainConfig = TrainConfig(),
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = tqdm.write,
    on_step: Callable[[int, float], None] | None = None,
    references: list[Image.Image] | None = None,
    kind: str = "style",
    procs: Processes = Processes(),
) -> Path:
    """Train an adapter on (image, prompt) pairs and save it to out_dir; returns out_dir.

    prompts are full training prompts (content + style descriptor), one per image. With resume=True the
    latest checkpoint in out_dir/checkpoints is continued, to the same result as an uninterrupted run.
    `references` (default: the training images) are the style's reference images, saved with the adapter.
    `kind` is "style" (StyleDrop) or "subject" (DreamBooth-style, no style descriptor). `procs`: the processes
    that share each batch (parallel.processes()); the first one writes.
    """
    if len(images) != len(prompts) or not images:
        raise StyleDropError(f"need one prompt per image: got {len(images)} images and {len(prompts)} prompts")
    if config.batch_size < procs.world:
        raise StyleDropError(f"--batch-size {config.batch_size}: smaller than the {procs.world} processes sharing it")
    out_dir = Path(out_dir)
    if procs.main:
        remove_temporaries(out_dir, (WEIGHTS_NAME, CONFIG_NAME, REFERENCE_DIR))  # left by a run killed while saving
    procs.barrier()
    log = log if procs.main else (lambda message: None)
    generator = torch.Generator().manual_seed(config.seed)
    adapter, data, optimizer = prepare_training(base, images, prompts, adapter_config, config, generator)

    start = 0
    checkpoint = latest_checkpoint(out_dir) if resume else None
    if checkpoint is not None:
        start = load_checkpoint(checkpoint, adapter, optimizer, generator, config)
        log(f"resuming from {checkpoint} (step {start})")
    trainable = sum(p.numel() for p in adapter.parameters())
    log(
        f"trainable parameters: {trainable:,} ({100 * trainable / base.parameter_count():.3f}% of the base transformer)"
    )
    distinct = len(torch.unique(data.tokens.flatten(1), dim=0))  # a square image uncropped is one crop, twice
    log(f"training set: {len(images)} image(s), {len(data)} augmented variants ({distinct} distinct)")

    bar = tqdm(
        range(start, config.steps),
        initial=start,
        total=config.steps,
        desc="training",
        disable=not progress or not procs.main,
    )
    last_good = checkpoint
    with base.adapters.route(ADAPTER_NAME):  # backward too: checkpointed layers re-run their hooks there
        for step in bar:
            loss = train_step(base, data, adapter, optimizer, config, generator, procs)
            if not torch.isfinite(loss):
                where = f"last good checkpoint: {last_good}" if last_good else "no checkpoint was written yet"
                raise StyleDropError(f"training diverged at step {step + 1}: loss is {loss.item()} ({where})")
            bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
            done = step + 1
            if done % config.checkpoint_every == 0 and done < config.steps:
                if procs.main:
                    save_checkpoint(out_dir, done, adapter, optimizer, generator, config)
                procs.barrier()
                last_good = latest_checkpoint(out_dir)
            if on_step is not None:
                on_step(done, loss.item())
    base.transformer.set_gradient_checkpointing(False)
    card = AdapterCard(
        config=adapter_config,
        base=base.identity,
        style=style,
        kind=kind,
        prompts=list(prompts),
        training=config.to_dict(),
    )
    if procs.main:
        save_references(out_dir, images if references is None else references)
        save_adapter(out_dir, adapter, card)
        shutil.rmtree(out_dir / CHECKPOINTS, ignore_errors=True)
    procs.barrier()
    return out_dir
