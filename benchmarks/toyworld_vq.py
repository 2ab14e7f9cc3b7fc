"""Reconstruction quality of the shipped toy VQ model on the held-out styles (issue "Shapes world": report
reconstruction PSNR on held-out styles). Every content of each named style, plus random held-out looks.
Appends to benchmarks/results/toyworld_vq.jsonl.

    .venv/bin/python benchmarks/toyworld_vq.py
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from common import append_result  # noqa: E402

from styledrop.toyworld.build import ASSETS, reconstruct  # noqa: E402
from styledrop.toyworld.metrics import render_pixels  # noqa: E402
from styledrop.toyworld.render import COLOUR_NAMES, SHAPES, Content, Scene  # noqa: E402
from styledrop.toyworld.world import EVAL_STYLES, sample_content, sample_style  # noqa: E402


def psnr(a, b) -> float:
    return 10 * math.log10(1 / F.mse_loss(a, b).item())


def main() -> None:
    import argparse

    from diffusers import VQModel

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=Path, default=ASSETS, help="another build's assets folder, to compare")
    parser.add_argument("--label", default="shipped", help="what the results are recorded as")
    args = parser.parse_args()

    vq = VQModel.from_pretrained(args.assets / "base" / "vqvae", use_safetensors=True).eval()
    side = 2 ** (len(vq.config.block_out_channels) - 1)
    rows = {}
    for name, style in EVAL_STYLES.items():
        pixels = render_pixels([Scene(Content(s, c), style) for s in SHAPES for c in COLOUR_NAMES])
        rows[name] = psnr(reconstruct(vq, pixels), pixels)
    rng = np.random.default_rng(0)
    pixels = render_pixels([Scene(sample_content(rng), sample_style(rng, held_out=True)) for _ in range(512)])
    rows["random held-out looks"] = psnr(reconstruct(vq, pixels), pixels)
    for name, value in rows.items():
        print(f"{name:<24}{value:6.2f} dB")
    append_result(
        Path(__file__).parent / "results" / "toyworld_vq.jsonl",
        {
            "assets": args.label,
            "psnr_db": rows,
            "vq": f"{vq.config.num_vq_embeddings} codes, {side}x{side}-pixel tokens",
        },
    )


if __name__ == "__main__":
    main()
