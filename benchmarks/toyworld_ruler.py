"""The toy world's measuring instruments, validated on true renders and VQ reconstructions (the numbers behind
tests/test_toyworld_metrics.py): oracle content accuracy and family accuracy, the toy CLIP's reading of the
family (its text tower is the base's text encoder), and the style score's AUC for same-style/different-content
against different-style/same-content pairs. Appends to benchmarks/results/toyworld_ruler.jsonl.

    .venv/bin/python benchmarks/toyworld_ruler.py [--world coarse]

`--world` draws the training-region set from one of toyworld_world_finetune's worlds: can the oracle read them?
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import append_result  # noqa: E402
from toyworld_world_finetune import WORLDS  # noqa: E402

from styledrop.toyworld.build import ASSETS, reconstruct  # noqa: E402
from styledrop.toyworld.metrics import Ruler, rate_by_family, render_pixels, style_separation  # noqa: E402
from styledrop.toyworld.render import COLOUR_NAMES, FAMILIES, SHAPES, Content, Scene  # noqa: E402
from styledrop.toyworld.world import EVAL_STYLES, sample_content, sample_style  # noqa: E402


def main() -> None:
    import argparse

    from diffusers import VQModel

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=Path, default=ASSETS, help="another build's assets folder, to compare")
    parser.add_argument("--label", default="shipped", help="what the results are recorded as")
    parser.add_argument(
        "--world", choices=list(WORLDS), default="regular", help="draw the training-region set from another world"
    )
    args = parser.parse_args()

    ruler = Ruler.load(args.assets)
    vq = VQModel.from_pretrained(args.assets / "base" / "vqvae", use_safetensors=True).eval()
    rng = np.random.default_rng(7)
    held_out = [Scene(Content(s, c), style) for style in EVAL_STYLES.values() for s in SHAPES for c in COLOUR_NAMES]
    held_out += [Scene(sample_content(rng), sample_style(rng, held_out=True)) for _ in range(400)]
    training = [Scene(sample_content(rng), WORLDS[args.world](rng, f)) for f in FAMILIES for _ in range(60)]
    rows = {}
    for name, scenes in (("held_out", held_out), ("training", training)):
        true = render_pixels(scenes)
        recon = reconstruct(vq, true)
        contents, families = [s.content for s in scenes], [s.style.family for s in scenes]
        true_hits, recon_hits = ruler.family_hits(true, families), ruler.family_hits(recon, families)
        rows[name] = {
            "images": len(scenes),
            "content_true": ruler.content_accuracy(true, contents),
            "content_recon": ruler.content_accuracy(recon, contents),
            "family_true": true_hits.float().mean().item(),
            "family_recon": recon_hits.float().mean().item(),
            "family_true_by_family": rate_by_family(true_hits, families),
            # the ceiling of the base's family bar, family by family: what the oracle reads on the VQ's own tokens
            "family_recon_by_family": rate_by_family(recon_hits, families),
            # whether the text encoder, the toy CLIP's text tower, tells the families apart
            "clip_family_true_by_family": rate_by_family(ruler.clip_family_hits(true, contents, families), families),
        }
    styles = list(EVAL_STYLES.values()) + [sample_style(rng, held_out=True) for _ in range(10)]
    rows["style_auc_held_out"] = style_separation(ruler, styles, [sample_content(rng) for _ in range(8)])
    print(rows)
    record = {"assets": args.label, "world": args.world, **rows}
    append_result(Path(__file__).parent / "results" / "toyworld_ruler.jsonl", record)


if __name__ == "__main__":
    main()
