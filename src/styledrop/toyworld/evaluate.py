"""Measuring StyleDrop against ground truth in the shapes world.

For a held-out style, the reference is one true render (a fixed content in that style). Outputs for other
contents are scored on content accuracy, text score, style score (oracle and CLIP) and leakage. The ceiling is
the same metrics on true renders of the target style for the same contents.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image

from ..adapters.config import AdapterConfig
from ..pipeline import SampleConfig, full_prompt, sample_images
from ..train import TrainConfig, train_adapter
from .metrics import Ruler, rate_by_family, render_pixels
from .render import COLOUR_NAMES, FAMILIES, SHAPES, Content, Scene, family_descriptor, render
from .world import EVAL_STYLES

# The one bundled reference content per held-out style.
REFERENCE_CONTENT = {
    "candy": Content("circle", "red"),
    "blueprint": Content("square", "orange"),
    "polka": Content("heart", "blue"),
    "dusk": Content("star", "green"),
    "etching": Content("diamond", "purple"),
    "sandstorm": Content("cross", "cyan"),
}

METRICS = ("content_accuracy", "text_score", "style_score", "clip_style_score", "leakage")


def reference_scene(style_name: str) -> Scene:
    return Scene(REFERENCE_CONTENT[style_name], EVAL_STYLES[style_name])


def reference_image(style_name: str) -> Image.Image:
    return Image.fromarray(render(reference_scene(style_name)))


def train_round1(base, style_name: str, adapter: AdapterConfig, config: TrainConfig, out_dir=None, progress=False):
    """StyleDrop round 1 on the bundled reference of a held-out style. The adapter stays in `base` under
    train.ADAPTER_NAME; it is also saved to out_dir when one is given. Returns out_dir."""
    import tempfile

    scene = reference_scene(style_name)
    args = ([reference_image(style_name)], [scene.prompt()])
    if out_dir is not None:
        return train_adapter(base, *args, out_dir, scene.style.prompt_suffix(), adapter, config, progress=progress)
    with tempfile.TemporaryDirectory() as tmp:
        train_adapter(
            base, *args, tmp, scene.style.prompt_suffix(), adapter, config, progress=progress, log=lambda _: None
        )
    return None


def eval_contents(reference: Content) -> list[Content]:
    """Seven contents that differ from the reference in both shape and colour, covering the other shapes."""
    shapes = [s for s in SHAPES if s != reference.shape]
    colours = [c for c in COLOUR_NAMES if c != reference.colour]
    return [Content(shape, colours[(i + 2) % len(colours)]) for i, shape in enumerate(shapes)]


def measure(ruler: Ruler, pixels: torch.Tensor, asked: list[Content], prompts: list[str], reference: Scene) -> dict:
    ref = render_pixels([reference])[0]
    return {
        "content_accuracy": ruler.content_accuracy(pixels, asked),
        "text_score": ruler.text_score(pixels, prompts),
        "style_score": ruler.style_score(pixels, ref),
        "clip_style_score": ruler.clip_style_score(pixels, ref),
        "leakage": ruler.leakage(pixels, asked, reference.content),
    }


@dataclass
class StyleReport:
    style: str
    base: dict  # the base with the style descriptor only
    adapter: dict | None  # StyleDrop
    ceiling: dict  # true renders of the target style
    images: dict  # name -> (n, 3, H, W) pixels, for grids

    def fraction_of_ceiling(self, which: str) -> dict:
        row = getattr(self, which)
        return {k: row[k] / self.ceiling[k] for k in ("content_accuracy", "style_score") if self.ceiling[k]}


def evaluate_style(
    base,
    ruler: Ruler,
    style_name: str,
    adapter: str | None,
    sample: SampleConfig = SampleConfig(),
    per_prompt: int = 4,
    seed: int = 0,
) -> StyleReport:
    reference = reference_scene(style_name)
    descriptor = reference.style.prompt_suffix()
    contents = eval_contents(reference.content)
    asked = [c for c in contents for _ in range(per_prompt)]
    prompts = [full_prompt(c.prompt(), descriptor) for c in asked]
    seeds = list(range(seed, seed + len(asked)))
    truth = render_pixels([Scene(c, reference.style) for c in contents])
    without_style = [c.prompt() for c in asked]
    images = {"truth": truth, "base": sample_images(base, None, prompts, seeds, sample, contents=without_style)}
    report = {"base": measure(ruler, images["base"], asked, prompts, reference)}
    if adapter is not None:
        images["adapter"] = sample_images(base, adapter, prompts, seeds, sample, contents=without_style)
        report["adapter"] = measure(ruler, images["adapter"], asked, prompts, reference)
    ceiling = measure(ruler, truth, contents, [full_prompt(c.prompt(), descriptor) for c in contents], reference)
    return StyleReport(style_name, report["base"], report.get("adapter"), ceiling, images)


@dataclass
class BaseQuality:
    """The shipping bar for the toy base: content on plain prompts, and the named family honoured."""

    plain: dict  # shape, colour and content (both) accuracy on "a red star" prompts
    family: dict  # family accuracy, and content accuracy, on "a red star in striped style" prompts
    images: dict  # "plain", "family" -> pixels, for grids
    families: list[str]  # the family each of images["family"] was asked for

    def passes(self, bar: float = 0.9) -> bool:
        return self.plain["content"] >= bar and self.family["family"] >= bar


def base_quality(base, ruler: Ruler, per_content: int = 2, sample: SampleConfig = SampleConfig(), seed: int = 0):
    """Every shape x colour, `per_content` samples each, once plainly and once with a family named (families
    cycle over the contents so that each one is asked about equally often)."""
    contents = [Content(s, c) for s in SHAPES for c in COLOUR_NAMES for _ in range(per_content)]
    families = [FAMILIES[i % len(FAMILIES)] for i in range(len(contents))]
    seeds = list(range(seed, seed + len(contents)))
    asked = [c.prompt() for c in contents]
    plain = sample_images(base, None, asked, seeds, sample, contents=asked)  # no descriptor: lD changes nothing
    styled_prompts = [full_prompt(c, family_descriptor(f)) for c, f in zip(asked, families, strict=True)]
    styled = sample_images(base, None, styled_prompts, seeds, sample, contents=asked)
    hits = ruler.content_hits(plain, contents)
    family_hits = ruler.family_hits(styled, families)
    return BaseQuality(
        plain={k: hits[k].float().mean().item() for k in ("shape", "colour", "content")},
        family={
            "family": family_hits.float().mean().item(),
            "content": ruler.content_accuracy(styled, contents),
            "per_family": rate_by_family(family_hits, families),
        },
        images={"plain": plain, "family": styled},
        families=families,
    )


def side_by_side(report: StyleReport, per_prompt: int, shown: int = 2, rows: tuple[str, ...] = ("base", "adapter")):
    """One row per content: the true render, then `shown` samples of each of `rows` (a grid image)."""
    from ..images import grid, to_pil

    cells = []
    for i, truth in enumerate(report.images["truth"]):
        cells.append(to_pil(truth))
        for name in rows:
            cells += [to_pil(p) for p in report.images[name][per_prompt * i : per_prompt * i + shown]]
    return grid(cells, columns=1 + shown * len(rows))


def format_table(reports: list[StyleReport]) -> str:
    """A plain-text table: one block per style, one row per metric."""
    lines = []
    for r in reports:
        lines.append(f"{r.style}:")
        lines.append(f"  {'metric':<18}{'base+descriptor':>16}{'styledrop':>12}{'ceiling':>10}{'styledrop/ceil':>16}")
        # Fractions only where the ceiling is a scale: the CLIP image-image score of true renders is near 0.
        fractions = r.fraction_of_ceiling("adapter") if r.adapter else {}
        for m in METRICS:
            adapter = f"{r.adapter[m]:.3f}" if r.adapter else "-"
            frac = f"{fractions[m]:.2f}" if m in fractions else "-"
            lines.append(f"  {m:<18}{r.base[m]:>16.3f}{adapter:>12}{r.ceiling[m]:>10.3f}{frac:>16}")
    return "\n".join(lines)


def evaluate_adapter(
    adapter_dir, style_name: str, sample: SampleConfig, per_prompt: int, seed: int, as_json: bool = False
) -> str:
    """`styledrop evaluate`: the table (or JSON) for one adapter on the built-in toy base."""
    import json

    from ..errors import StyleDropError
    from ..models.amused import load_base
    from .build import ASSETS

    if style_name not in EVAL_STYLES:
        raise StyleDropError(f"--style: unknown held-out style {style_name!r} (one of {', '.join(EVAL_STYLES)})")
    base = load_base(None)
    if adapter_dir is not None:
        base.load_adapter(adapter_dir, "style")
    report = evaluate_style(
        base, Ruler.load(ASSETS), style_name, "style" if adapter_dir else None, sample, per_prompt, seed
    )
    if as_json:
        rows = {"base": report.base, "styledrop": report.adapter, "ceiling": report.ceiling}
        return json.dumps(
            {
                "style": style_name,
                **rows,
                "styledrop_fraction_of_ceiling": report.fraction_of_ceiling("adapter") if report.adapter else None,
            },
            indent=2,
        )
    return format_table([report])


def oracle_picks(ruler: Ruler, round_dir, keep: int = 1) -> list[str]:
    """A stand-in for a person picking a round's images: per prompt, among the images whose shape and colour
    are right, the `keep` whose style (oracle embedding) is closest to the reference."""
    from ..adapters.io import load_references
    from ..feedback.rounds import by_prompt, load_pool, manifest_jobs, read_manifest
    from ..images import center_square

    manifest = read_manifest(round_dir)
    jobs = manifest_jobs(manifest)
    pixels = load_pool(round_dir, jobs)
    reference = center_square(load_references(manifest["source_adapter"])[0], pixels.shape[-1])
    right = ruler.content_hits(pixels, [Content.parse(j.content) for j in jobs])["content"]
    style = ruler.style_embeddings(pixels) @ ruler.style_embeddings(reference[None])[0]
    records = [
        {"file": j.file, "prompt": j.prompt, "right": r, "style": s}
        for j, r, s in zip(jobs, right.tolist(), style.tolist(), strict=True)
    ]
    picks = []
    for group in by_prompt(records).values():
        good = sorted((r for r in group if r["right"]), key=lambda r: -r["style"])
        picks += [r["file"] for r in good[:keep]]
    return picks
