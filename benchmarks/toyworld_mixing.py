"""My object in my style, style blending, and stylizing an image, measured in the shapes world.

- subject: a two-tone square no prompt can name (toyworld/subject.py), learned by a subject adapter from 4
  views; drawn in each held-out style by the style adapter alone, the subject adapter alone, and both mixed
  (paper equations 5-6, subject weight g). Subject fidelity and style score, raw and as fractions of the
  ceiling (true renders of the subject in the style).
- blend: two style adapters mixed with weight w for the first, 1 - w for the second: style score toward each.
- stylize: true renders of other contents in the plain flat look, stylized at strengths 0..1 by each method
  (pipeline.stylize_tokens): content accuracy (the input's shape and colour kept) and style score toward the
  reference.

Blends and stylize use the same seeds at every weight or strength, so each step's change is also measured image by
image: a "reversal" is a step that goes the wrong way by more than twice the standard error of those paired
differences, which the noise of this many images does not explain ("monotone" is the strict test of the means).

Each part runs once per text guidance lB (default: the paper's 5, and 1, which the defaults sweep found far
better on the previous toy base; on the shipped one 5 does better). Appends to
benchmarks/results/toyworld_{subject,blend,stylize}.jsonl and writes labelled grids to
benchmarks/results/toyworld_mixing/. Trained adapters are kept in --work and retrained when their recorded
settings differ from today's.

    .venv/bin/python benchmarks/toyworld_mixing.py [--parts subject blend stylize] [--styles candy ...]
        [--guidance 5 1] [--plausibility A]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from itertools import pairwise
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import append_result, plausibility_tag, token_temperature_tag  # noqa: E402

from styledrop.adapters.config import LARGE_ADAPTER, AdapterConfig  # noqa: E402
from styledrop.adapters.io import read_card  # noqa: E402
from styledrop.guidance import Component  # noqa: E402
from styledrop.images import labelled_grid, save_png, to_pil  # noqa: E402
from styledrop.models.amused import load_base  # noqa: E402
from styledrop.pipeline import (  # noqa: E402
    DEFAULT_STYLIZE_METHOD,
    STYLIZE_METHODS,
    SampleConfig,
    full_prompt,
    sample_mix,
    stylize_pixels,
)
from styledrop.toyworld import subject as sub  # noqa: E402
from styledrop.toyworld.build import ASSETS  # noqa: E402
from styledrop.toyworld.evaluate import eval_contents, reference_scene, train_round1  # noqa: E402
from styledrop.toyworld.metrics import Ruler, render_pixels  # noqa: E402
from styledrop.toyworld.render import Scene, Style, render  # noqa: E402
from styledrop.toyworld.world import EVAL_STYLES  # noqa: E402
from styledrop.train import TrainConfig, train_adapter  # noqa: E402

RESULTS = Path(__file__).parent / "results"
GRIDS = RESULTS / "toyworld_mixing"
DEFAULT_PER_CONTENT = 6  # images per content in blends and stylize
BLEND_PAIRS = (("candy", "polka"), ("blueprint", "etching"), ("dusk", "sandstorm"))


def rising(values: list[float]) -> bool:
    """Monotonically non-decreasing."""
    return all(x <= y for x, y in pairwise(values))


def reversals(points: list[torch.Tensor]) -> list[int]:
    """Steps i -> i + 1 at which per-image values (B,), drawn with the same seeds at every point, fall by more than
    twice the standard error of their paired difference: the drops that this many images' noise does not
    explain."""
    drops = []
    for i, (x, y) in enumerate(pairwise(points)):
        d = (y - x).double()
        if d.mean() < -2 * d.std() / len(d) ** 0.5:
            drops.append(i)
    return drops


def tag(sample: SampleConfig) -> str:
    """Grid-name suffix: lB, the token temperature where it is not the default, and the plausibility where it is
    on."""
    return (
        f"lB{sample.guidance:g}{token_temperature_tag(sample.token_temperature)}{plausibility_tag(sample.plausibility)}"
    )


def count_tag(per_content: int) -> str:
    """Grid-name suffix for a --per-content other than the default, whose first image per content differs."""
    return "" if per_content == DEFAULT_PER_CONTENT else f"_n{per_content}"


def cached(folder: Path, config: TrainConfig, shape: AdapterConfig) -> bool:
    """Whether folder holds an adapter of this shape trained with these settings. One trained otherwise (under
    an older default, say) is removed, so that it is trained again rather than measured as if it were new."""
    if not (folder / "adapter_config.json").is_file():
        return False
    card = read_card(folder)
    if card.config == shape and card.training == config.to_dict():
        return True
    shutil.rmtree(folder)
    return False


def style_adapter(base, name: str, work: Path, config: TrainConfig) -> str:
    """Round 1 on the style's bundled reference, trained once and kept in work/; loaded under `name`."""
    folder = work / name
    if not cached(folder, config, AdapterConfig()):
        train_round1(base, name, AdapterConfig(), config, folder)
    if name not in base.adapters:
        base.load_adapter(folder, name)
    return name


def subject_adapter(base, work: Path, config: TrainConfig, shape: AdapterConfig) -> str:
    from PIL import Image

    folder = work / "subject"
    if not cached(folder, config, shape):
        images = [Image.fromarray(render(s)) for s in sub.subject_scenes(4)]
        train_adapter(base, images, [sub.PROMPT] * 4, folder, "", shape, config, progress=False, kind="subject")
    if "subject" not in base.adapters:
        base.load_adapter(folder, "subject")
    return "subject"


def mixed(base, style: str | None, g: float, descriptor: str, n: int, sample: SampleConfig):
    """The subject in a style: (1 - g) StyleDrop(style, full prompt) + g StyleDrop(subject, c_t)."""
    components = [Component(1 - g, style, "full"), Component(g, "subject", "content")]
    prompts = {"full": [full_prompt(sub.PROMPT, descriptor)] * n, "content": [sub.PROMPT] * n}
    return sample_mix(base, [c for c in components if c.weight > 0], prompts, list(range(n)), sample)


def run_subject(base, ruler, styles, work, config, sample, n, weights, shape: AdapterConfig) -> None:
    subject_adapter(base, work, config, shape)
    for name in styles:
        style = style_adapter(base, name, work, config)
        scene = reference_scene(name)
        reference = render_pixels([scene])[0]
        descriptor = scene.style.prompt_suffix()
        truth = sub.subject_truth(scene.style, n)
        arms = {
            "base": sample_mix(
                base,
                [Component(1.0, None, "full")],
                {"full": [full_prompt(sub.PROMPT, descriptor)] * n},
                list(range(n)),
                sample,
            ),
            "style alone": mixed(base, style, 0.0, descriptor, n, sample),
            "subject alone": mixed(base, None, 1.0, descriptor, n, sample),
        } | {f"mixed g={g:g}": mixed(base, style, g, descriptor, n, sample) for g in weights}
        ceiling = {
            "subject_fidelity": sub.subject_fidelity(ruler, truth),
            "style_score": ruler.style_score(truth, reference),
        }
        rows = {}
        for arm, pixels in arms.items():
            row = {
                "subject_fidelity": sub.subject_fidelity(ruler, pixels),
                "style_score": ruler.style_score(pixels, reference),
            }
            rows[arm] = row | {f"{k}_fraction": row[k] / ceiling[k] for k in row if ceiling[k]}
        cells = [to_pil(p) for i in range(min(n, 4)) for p in [truth[i], *(a[i] for a in arms.values())]]
        save_png(labelled_grid(cells, ["truth", *arms]), GRIDS / f"subject_{name}_{tag(sample)}.png")
        append_result(
            RESULTS / "toyworld_subject.jsonl",
            {
                "style": name,
                "guidance": sample.guidance,
                "token_temperature": sample.token_temperature,
                "plausibility": sample.plausibility,
                "arms": rows,
                "ceiling": ceiling,
                "n": n,
                "subject_adapter": shape.to_dict(),
            },
        )
        print(f"subject in {name}, lB {sample.guidance:g}: ceiling {ceiling}")
        for arm, row in rows.items():
            print(f"  {arm:<14}" + "  ".join(f"{k} {v:.3f}" for k, v in row.items()))


def run_blend(base, ruler, pairs, work, config, sample, per_content, weights) -> None:
    for a, b in pairs:
        for name in (a, b):
            style_adapter(base, name, work, config)
        contents = eval_contents(reference_scene(a).content)
        asked = [c for c in contents for _ in range(per_content)]
        seeds = list(range(len(asked)))
        refs = {name: render_pixels([reference_scene(name)])[0] for name in (a, b)}
        descriptors = {name: reference_scene(name).style.prompt_suffix() for name in (a, b)}
        prompts = {name: [full_prompt(c.prompt(), descriptors[name]) for c in asked] for name in (a, b)}
        rows, columns, toward_a, toward_b = [], [], [], []
        for w in weights:
            components = [c for c in (Component(w, a, a), Component(1 - w, b, b)) if c.weight > 0]
            pixels = sample_mix(base, components, {c.prompt: prompts[c.prompt] for c in components}, seeds, sample)
            toward_a.append(ruler.style_similarities(pixels, refs[a]))
            toward_b.append(ruler.style_similarities(pixels, refs[b]))
            rows.append(
                {
                    "weight_a": w,
                    f"style_toward_{a}": toward_a[-1].mean().item(),
                    f"style_toward_{b}": toward_b[-1].mean().item(),
                    "content_accuracy": ruler.content_accuracy(pixels, asked),
                }
            )
            columns.append(pixels)
        away_from_b = [-x for x in toward_b]  # rises with w like toward_a
        monotone = rising([x.mean().item() for x in toward_a]) and rising([x.mean().item() for x in away_from_b])
        drops = {a: reversals(toward_a), b: reversals(away_from_b)}
        cells = [to_pil(col[i]) for i in range(0, len(asked), per_content) for col in columns]
        save_png(
            labelled_grid(cells, [f"{a} {w:g}" for w in weights]),
            GRIDS / f"blend_{a}_{b}_{tag(sample)}{count_tag(per_content)}.png",
        )
        append_result(
            RESULTS / "toyworld_blend.jsonl",
            {
                "a": a,
                "b": b,
                "guidance": sample.guidance,
                "token_temperature": sample.token_temperature,
                "plausibility": sample.plausibility,
                "images": len(asked),
                "rows": rows,
                "monotone": monotone,
                "reversals": drops,  # step indices: toward a falling, toward b rising, beyond the noise
            },
        )
        print(f"blend {a} (w) + {b} (1 - w), lB {sample.guidance:g}: monotone {monotone}, reversals {drops}")
        for r in rows:
            print("  " + "  ".join(f"{k} {v:.3f}" for k, v in r.items()))


def run_stylize(base, ruler, styles, work, config, sample, per_content, strengths, method: str) -> None:
    for name in styles:
        style = style_adapter(base, name, work, config)
        scene = reference_scene(name)
        reference = render_pixels([scene])[0]
        contents = eval_contents(scene.content)
        inputs = render_pixels([Scene(c, Style()) for c in contents for _ in range(per_content)])
        asked = [c for c in contents for _ in range(per_content)]
        prompts = [full_prompt(c.prompt(), scene.style.prompt_suffix()) for c in asked]
        seeds = list(range(len(asked)))
        rows, columns, kept, styled = [], [], [], []
        for s in strengths:
            pixels = stylize_pixels(base, style, inputs, prompts, s, seeds, sample, method=method)
            kept.append(ruler.content_hits(pixels, asked)["content"].float())
            styled.append(ruler.style_similarities(pixels, reference))
            rows.append(
                {"strength": s, "content_accuracy": kept[-1].mean().item(), "style_score": styled[-1].mean().item()}
            )
            columns.append(pixels)
        truth = render_pixels([Scene(c, scene.style) for c in contents])
        ceiling = {
            "content_accuracy": ruler.content_accuracy(truth, contents),
            "style_score": ruler.style_score(truth, reference),
        }
        for r in rows:
            r["style_fraction"] = r["style_score"] / ceiling["style_score"]
        content = [r["content_accuracy"] for r in rows]
        style_scores = [r["style_score"] for r in rows]
        monotone = {
            "content_non_increasing": rising(content[::-1]),
            "style_non_decreasing": rising(style_scores),
        }
        drops = {"content_rising": reversals([-x for x in kept]), "style_falling": reversals(styled)}
        cells = [to_pil(col[i]) for i in range(0, len(asked), per_content) for col in [inputs, *columns]]
        save_png(
            labelled_grid(cells, ["input", *[f"s={s:g}" for s in strengths]]),
            GRIDS / f"stylize_{name}_{tag(sample)}{'' if method == DEFAULT_STYLIZE_METHOD else '_' + method}"
            f"{count_tag(per_content)}.png",
        )
        record = {"style": name, "method": method, "guidance": sample.guidance}
        record |= {
            "token_temperature": sample.token_temperature,
            "plausibility": sample.plausibility,
            "images": len(asked),
        }
        record |= {"rows": rows, "ceiling": ceiling, "monotone": monotone, "reversals": drops}
        append_result(RESULTS / "toyworld_stylize.jsonl", record)
        print(f"stylize into {name} by {method}, lB {sample.guidance:g}: {monotone}, reversals {drops}")
        for r in rows:
            print("  " + "  ".join(f"{k} {v:.3f}" for k, v in r.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="*", default=["subject", "blend", "stylize"])
    parser.add_argument("--styles", nargs="*", default=list(EVAL_STYLES))
    parser.add_argument("--n", type=int, default=16, help="subject images per arm")
    parser.add_argument(
        "--per-content", type=int, default=DEFAULT_PER_CONTENT, help="blend/stylize images per content (7 contents)"
    )
    parser.add_argument("--stylize-methods", nargs="*", default=list(STYLIZE_METHODS))
    parser.add_argument("--subject-weights", type=float, nargs="*", default=[0.3, 0.4, 0.5, 0.6, 0.7])
    parser.add_argument("--blend-weights", type=float, nargs="*", default=[0.0, 0.25, 0.5, 0.75, 1.0])
    parser.add_argument("--strengths", type=float, nargs="*", default=[0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    parser.add_argument("--decode-steps", type=int, default=12)
    parser.add_argument("--token-temperature", type=float, default=SampleConfig.token_temperature)
    parser.add_argument("--plausibility", type=float, default=SampleConfig.plausibility)
    parser.add_argument("--guidance", type=float, nargs="*", default=[5.0, 1.0], help="lB values, each a full run")
    parser.add_argument("--work", default="benchmark-work/mixing", help="trained adapters (not committed)")
    parser.add_argument("--subject-rank", type=int, default=LARGE_ADAPTER.rank)
    parser.add_argument("--subject-shared", action="store_true", help="the round-1 form (default: per layer)")
    args = parser.parse_args()

    base, ruler = load_base(None, "cpu"), Ruler.load(ASSETS)
    config, work = TrainConfig(checkpoint_every=10**6), Path(args.work)
    for lb in args.guidance:
        sample = SampleConfig(
            steps=args.decode_steps,
            token_temperature=args.token_temperature,
            guidance=lb,
            plausibility=args.plausibility,
        )
        if "subject" in args.parts:
            shape = AdapterConfig(rank=args.subject_rank, shared=args.subject_shared)
            run_subject(base, ruler, args.styles, work, config, sample, args.n, args.subject_weights, shape)
        if "blend" in args.parts:
            pairs = [p for p in BLEND_PAIRS if set(p) <= set(args.styles)]
            run_blend(base, ruler, pairs, work, config, sample, args.per_content, args.blend_weights)
        if "stylize" in args.parts:
            for method in args.stylize_methods:
                run_stylize(base, ruler, args.styles, work, config, sample, args.per_content, args.strengths, method)


if __name__ == "__main__":
    main()
