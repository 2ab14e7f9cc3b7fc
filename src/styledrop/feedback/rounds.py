"""A feedback round on disk (StyleDrop, section 3.3), resumable stage by stage:

    ROUND_DIR/manifest.json     what the round is: source adapter, base, style, pool settings, scorer
    ROUND_DIR/pool/PPP-KK.png   the pool, one file per (prompt P, sample K); files already there are kept
    ROUND_DIR/scores.json       per image: content, prompt, seed, text score, style score, leakage if measurable
    ROUND_DIR/picks.json        a person's picks (written by the review page)
    ROUND_DIR/selection.json    the images the new adapter trains on, and how they were chosen
    ROUND_DIR/adapter/          the new adapter (its training checkpoints live there until it is done)

Pool generation splits whole batches across processes (accelerate), so N processes write exactly the images
one process would.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..adapters.config import LARGE_ADAPTER, AdapterConfig
from ..adapters.io import CONFIG_NAME, load_references, read_card
from ..errors import StyleDropError, check_ranges
from ..fileio import read_json, remove_temporaries, write_json
from ..images import center_square, load_image, save_png, to_pil, to_tensor
from ..models.amused import AmusedBase
from ..parallel import Processes, processes
from ..pipeline import SampleConfig, full_prompt, sample_images
from ..train import CHECKPOINTS, TrainConfig, train_adapter
from .picks import read_picks
from .scoring import default_contents, default_scorer_source, load_scorer

FORMAT_VERSION = 1
FEEDBACK = ("clip", "human", "random")
ROUND2_ADAPTER = LARGE_ADAPTER
STYLE = "style"  # the name the source adapter is loaded under
SCORE_CHUNK = 64


@dataclass(frozen=True)
class PoolConfig:
    """What to generate: every content prompt (with the adapter's style descriptor) `per_prompt` times."""

    contents: tuple[str, ...]
    per_prompt: int = 8
    seed: int = 0
    sample: SampleConfig = SampleConfig()

    def __post_init__(self):
        object.__setattr__(self, "contents", tuple(self.contents))
        if not self.contents or any(not c.strip() for c in self.contents):
            raise StyleDropError("--prompts: need at least one non-empty content prompt")
        check_ranges(self, {"per_prompt": 1 <= self.per_prompt <= 10_000, "seed": 0 <= self.seed < 2**62})

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "contents": list(self.contents)}


@dataclass(frozen=True)
class SelectConfig:
    """How to choose the training images: the best `keep` per prompt by text score (clip), `keep` per prompt
    at random (random, the control), or a person's picks (human). `min_style` drops images whose style score
    is below it before clip selection (not in the paper: style similarity also rewards copying)."""

    feedback: str = "clip"
    keep: int = 1
    min_style: float | None = None
    seed: int = 0

    def __post_init__(self):
        if self.feedback not in FEEDBACK:
            raise StyleDropError(f"--feedback: one of {', '.join(FEEDBACK)}, got {self.feedback!r}")
        check_ranges(self, {"keep": 1 <= self.keep <= 10_000, "seed": 0 <= self.seed < 2**62})


@dataclass(frozen=True)
class Job:
    file: str
    content: str
    prompt: str
    seed: int


@dataclass
class RoundResult:
    round_dir: Path
    generated: int = 0  # pool images made by this call (the rest were already on disk)
    pool: int = 0
    selected: int = 0
    adapter: Path | None = None
    waiting_for_picks: bool = False
    summary: dict = field(default_factory=dict)


# -- the round's manifest ---------------------------------------------------------------------------------------
def pool_dir(round_dir: Path) -> Path:
    return Path(round_dir) / "pool"


def open_round(round_dir: Path, source: Path, card, pool: PoolConfig, scorer_name: str) -> dict:
    """Create the round's manifest, or check that the one there describes the same round (resume)."""
    manifest = {
        "format_version": FORMAT_VERSION,
        "source_adapter": str(source.resolve()),
        "source_sha256": card.weights_sha256,
        "base": card.base.source,
        "style": card.style,
        "pool": pool.to_dict(),
        "scorer": scorer_name,
    }
    path = round_dir / "manifest.json"
    if path.is_file():
        old = read_json(path)
        changed = [k for k in manifest if old.get(k) != manifest[k]]
        if changed:
            raise StyleDropError(
                f"{round_dir}: holds a round with other {', '.join(changed)}; resume it with the same "
                "arguments, or choose another --out"
            )
        return old
    write_json(path, manifest)
    return manifest


def read_manifest(round_dir: str | Path) -> dict:
    path = Path(round_dir) / "manifest.json"
    if not path.is_file():
        raise StyleDropError(f"{round_dir}: not a round folder (no manifest.json; make one with styledrop refine)")
    return read_json(path)


def pool_jobs(pool: PoolConfig, style: str) -> list[Job]:
    jobs = []
    for p, content in enumerate(pool.contents):
        for k in range(pool.per_prompt):
            index = p * pool.per_prompt + k
            jobs.append(Job(f"{p:03d}-{k:02d}.png", content, full_prompt(content, style), pool.seed + index))
    return jobs


def manifest_jobs(manifest: dict) -> list[Job]:
    pool = manifest["pool"]
    return pool_jobs(
        PoolConfig(tuple(pool["contents"]), pool["per_prompt"], pool["seed"], SampleConfig(**pool["sample"])),
        manifest["style"],
    )


# -- stage 1: the pool ------------------------------------------------------------------------------------------
def generate_pool(
    base: AmusedBase,
    round_dir: Path,
    jobs: list[Job],
    sample: SampleConfig,
    procs: Processes = Processes(),
    progress: bool = True,
) -> int:
    """Generate this process's share of the pool (batch b goes to process b mod world), skipping batches
    whose images all exist. Returns how many images were made."""
    folder = pool_dir(round_dir)
    batches = [jobs[i : i + sample.batch_size] for i in range(0, len(jobs), sample.batch_size)]
    todo = [b for b in batches[procs.rows(len(batches))] if not all((folder / j.file).is_file() for j in b)]
    for batch in tqdm(todo, desc="pool", disable=not progress or not todo):
        prompts, contents = [j.prompt for j in batch], [j.content for j in batch]
        pixels = sample_images(base, STYLE, prompts, [j.seed for j in batch], sample, contents=contents)
        for job, image in zip(batch, pixels, strict=True):
            save_png(to_pil(image), folder / job.file)
    return sum(len(b) for b in todo)


def load_pool(round_dir: Path, jobs: list[Job]) -> torch.Tensor:
    missing = [j.file for j in jobs if not (pool_dir(round_dir) / j.file).is_file()]
    if missing:
        raise StyleDropError(f"{pool_dir(round_dir)}: {len(missing)} pool images missing (e.g. {missing[0]})")
    return torch.stack([to_tensor(load_image(pool_dir(round_dir) / j.file)) for j in jobs])


# -- stage 2: scores --------------------------------------------------------------------------------------------
def score_pool(round_dir: Path, jobs: list[Job], scorer, references: list, scorer_name: str) -> list[dict]:
    """Text and style score of every pool image (and leakage, when the scorer can measure it); cached in
    scores.json for as long as the pool and scorer are the same."""
    path = round_dir / "scores.json"
    if path.is_file():
        cached = read_json(path)
        if cached.get("scorer") == scorer_name and [r["file"] for r in cached["images"]] == [j.file for j in jobs]:
            return cached["images"]
    text, style, leak, reference = [], [], [], None
    leakage = getattr(scorer, "leakage", None)
    for i in range(0, len(jobs), SCORE_CHUNK):  # a real pool (thousands of 512px images) is never all in memory
        chunk = jobs[i : i + SCORE_CHUNK]
        pixels = load_pool(round_dir, chunk)
        if reference is None:  # cropped to the pool's side, which every chunk shares
            reference = torch.stack([center_square(im, pixels.shape[-1]) for im in references])
        text += scorer.text_scores(pixels, [j.prompt for j in chunk]).tolist()
        style += scorer.style_scores(pixels, reference).tolist()
        leak += leakage(pixels, [j.content for j in chunk], reference) if leakage else [None] * len(chunk)
    records = [
        {**dataclasses.asdict(j), "text": round(t, 5), "style": round(s, 5), "leak": k}
        for j, t, s, k in zip(jobs, text, style, leak, strict=True)
    ]
    write_json(path, {"scorer": scorer_name, "images": records})
    return records


def summarise(records: list[dict]) -> dict:
    """Mean text and style score (and leakage rate, where measured) over some scored images."""
    if not records:
        return {}
    out = {k: sum(r[k] for r in records) / len(records) for k in ("text", "style")}
    leaks = [r["leak"] for r in records if r.get("leak") is not None]
    if leaks:
        out["leakage"] = sum(leaks) / len(leaks)
    return {"images": len(records), **out}


# -- stage 3: selection -----------------------------------------------------------------------------------------
def by_prompt(records: list[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(r["prompt"], []).append(r)
    return groups


def select(records: list[dict], config: SelectConfig, picks: list[str]) -> list[dict]:
    if config.feedback == "human":
        chosen = set(picks)
        return [r for r in records if r["file"] in chosen]
    if config.feedback == "random":
        generator = torch.Generator().manual_seed(config.seed)
        chosen = []
        for group in by_prompt(records).values():
            order = torch.randperm(len(group), generator=generator).tolist()
            chosen += [group[i] for i in sorted(order[: config.keep])]
        return chosen
    chosen = []
    for group in by_prompt(records).values():
        if config.min_style is not None:
            group = [r for r in group if r["style"] >= config.min_style]
        chosen += sorted(group, key=lambda r: -r["text"])[: config.keep]
    return chosen


# -- stage 4: the new adapter -----------------------------------------------------------------------------------
def train_round(
    base: AmusedBase,
    round_dir: Path,
    selection: list[dict],
    how: dict,
    style: str,
    references: list,
    adapter_config: AdapterConfig = ROUND2_ADAPTER,
    config: TrainConfig = TrainConfig(),
    progress: bool = True,
    on_step: Callable[[int, float], None] | None = None,
) -> Path:
    """Train the round's adapter on the selected images; an unchanged selection resumes (or keeps) the
    adapter already there, a changed one starts it afresh."""
    if not selection:
        raise StyleDropError(f"{round_dir}: the selection is empty, nothing to train on")
    out = round_dir / "adapter"
    record = {"how": how, "images": [{"file": r["file"], "prompt": r["prompt"]} for r in selection]}
    path = round_dir / "selection.json"
    same = path.is_file() and read_json(path) == record
    if same and (out / CONFIG_NAME).is_file():  # done: its card is written last, its checkpoints removed after
        shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)  # ... unless that run was killed in between
        return out
    if not same:
        shutil.rmtree(out, ignore_errors=True)
        write_json(path, record)
    images = [load_image(pool_dir(round_dir) / r["file"]) for r in selection]
    prompts = [r["prompt"] for r in selection]
    return train_adapter(
        base,
        images,
        prompts,
        out,
        style,
        adapter_config,
        config,
        resume=True,
        progress=progress,
        on_step=on_step,
        references=references,
    )


# -- the whole round --------------------------------------------------------------------------------------------
def read_prompt_file(path: str | Path) -> list[str]:
    """Content prompts, one per line (UTF-8, with or without a byte-order mark); blank lines and lines starting
    with # are skipped."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as e:
        raise StyleDropError(
            f"--prompts {path}: not UTF-8 text ({e.reason}: byte {e.object[e.start]:#04x}); save it as UTF-8"
        ) from None
    except OSError as e:
        raise StyleDropError(f"--prompts {path}: unreadable ({e})") from None
    prompts = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not prompts:
        raise StyleDropError(f"--prompts {path}: no prompts in it")
    return prompts


def refine(
    source: str | Path,
    round_dir: str | Path,
    contents: list[str] | None = None,
    per_prompt: int = 8,
    pool_seed: int = 0,
    sample: SampleConfig = SampleConfig(),
    selection: SelectConfig = SelectConfig(),
    scorer: str | None = None,
    adapter_config: AdapterConfig = ROUND2_ADAPTER,
    config: TrainConfig = TrainConfig(),
    device: str | None = None,
    progress: bool = True,
    log: Callable[[str], None] = tqdm.write,
) -> RoundResult:
    """`styledrop refine`: pool -> scores -> selection -> a new adapter, each stage reused when on disk."""
    from ..models.amused import load_base
    from ..pipeline import default_device

    source, round_dir = Path(source), Path(round_dir)
    card = read_card(source)
    pool = PoolConfig(tuple(contents or default_contents(card.base.source)), per_prompt, pool_seed, sample)
    scorer = scorer or default_scorer_source(card.base.source)
    procs = processes()
    if procs.main:
        open_round(round_dir, source, card, pool, scorer)
        remove_temporaries(pool_dir(round_dir))  # of images whose write a kill cut short
        remove_temporaries(round_dir, ("manifest.json", "scores.json", "selection.json"))
    procs.barrier()
    base = load_base(card.base.source, device or procs.device or default_device())
    base.load_adapter(source, STYLE)
    jobs = pool_jobs(pool, card.style)
    generated = generate_pool(base, round_dir, jobs, pool.sample, procs, progress)
    procs.barrier()
    if not procs.main:
        return RoundResult(round_dir, generated, len(jobs))
    score_pool(round_dir, jobs, load_scorer(scorer, base.device), load_references(source), scorer)
    result = train_from_round(round_dir, selection, adapter_config, config, base, progress, log=log)
    result.generated = generated
    return result


def train_from_round(
    round_dir: str | Path,
    selection: SelectConfig,
    adapter_config: AdapterConfig = ROUND2_ADAPTER,
    config: TrainConfig = TrainConfig(),
    base: AmusedBase | None = None,
    progress: bool = True,
    on_step: Callable[[int, float], None] | None = None,
    log: Callable[[str], None] = tqdm.write,
) -> RoundResult:
    """Select from a scored pool and train the round's adapter (the review page's "train" button too)."""
    from ..models.amused import load_base

    round_dir = Path(round_dir)
    manifest = read_manifest(round_dir)
    scores = round_dir / "scores.json"
    if not scores.is_file():
        raise StyleDropError(f"{round_dir}: the pool is not scored yet (run styledrop refine)")
    records = read_json(scores)["images"]
    chosen = select(records, selection, read_picks(round_dir))
    result = RoundResult(round_dir, pool=len(records), selected=len(chosen))
    result.summary = {"pool": summarise(records), "selected": summarise(chosen)}
    if selection.feedback == "human" and not chosen:
        result.waiting_for_picks = True
        log(f"pool ready: pick images with `styledrop review {round_dir}`, then run this command again")
        return result
    base = base or load_base(manifest["base"])
    references = load_references(manifest["source_adapter"])
    how = dataclasses.asdict(selection)
    result.adapter = train_round(
        base, round_dir, chosen, how, manifest["style"], references, adapter_config, config, progress, on_step
    )
    return result
