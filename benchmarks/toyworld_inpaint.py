"""Why the toy base does not draw its named families: can its U-ViT fill masked tokens of TRUE renders?

Renders of every family (training regions, prompts with the family named) are tokenised; a fraction of the
tokens is masked and filled in one pass by the U-ViT's most likely token. Reported per family: token accuracy
on the masked positions, and whether the oracle still reads the family from the decoded image (the VQ
reconstruction itself is read right about 96% of the time). If the family is lost even when most tokens are
given, the problem is the U-ViT's learning, not the sampler. And "isolated": every third token of every third
row masked, so that each masked token has its 4 neighbours given; accuracy on all of them, and on those equal to
all 4 neighbours (a U-ViT that reads its context gets these right), with their share: how much of the token
grid is predictable from neighbours at all; the token grid's statistics (toyworld_uvit_ab.token_stats); and
"family word": the cross-entropy of the true tokens with every token masked, under the prompt naming the right
family, a wrong one, and none: how much the U-ViT's prediction depends on the family word at all.
Appends to benchmarks/results/toyworld_inpaint.jsonl.

    .venv/bin/python benchmarks/toyworld_inpaint.py [--per-family 16]
        [--base FOLDER | --checkpoint toyworld-build [--vq-local-steps N]]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import append_result  # noqa: E402
from toyworld_base import add_base_arguments, checkpoint_record, load_measured_base  # noqa: E402
from toyworld_uvit_ab import token_stats  # noqa: E402

from styledrop.toyworld.build import ASSETS  # noqa: E402
from styledrop.toyworld.metrics import Ruler, render_pixels  # noqa: E402
from styledrop.toyworld.render import FAMILIES, Scene  # noqa: E402
from styledrop.toyworld.world import sample_content, sample_style  # noqa: E402

RESULTS = Path(__file__).parent / "results"


@torch.no_grad()
def fill(
    base, tokens: torch.Tensor, cond, ratio: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask `ratio` of the tokens at random, fill them with the argmax in one pass: (filled, mask)."""
    mask = torch.rand(tokens.shape, generator=generator) < ratio
    logits = base.logits(torch.where(mask, base.mask_id, tokens), cond)
    predicted = logits.argmax(-1).view_as(tokens)
    return torch.where(mask, predicted, tokens), mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_base_arguments(parser)
    parser.add_argument("--per-family", type=int, default=16)
    parser.add_argument("--ratios", type=float, nargs="*", default=[0.25, 0.5, 0.75, 0.9])
    args = parser.parse_args()

    (base, meta), ruler = load_measured_base(args), Ruler.load(ASSETS)
    rng = np.random.default_rng(123)
    scenes = [Scene(sample_content(rng), sample_style(rng, f)) for f in FAMILIES for _ in range(args.per_family)]
    families = [s.style.family for s in scenes]
    pixels = render_pixels(scenes)
    tokens = base.encode_images(pixels)
    cond = base.condition([s.prompt(True) for s in scenes])
    rows = {"reconstruction": {"family_read": ruler.family_accuracy(base.decode_tokens(tokens), families)}}
    generator = torch.Generator().manual_seed(0)
    for ratio in args.ratios:
        filled, mask = fill(base, tokens, cond, ratio, generator)
        read = ruler.family_hits(base.decode_tokens(filled), families)
        right = (filled == tokens) | ~mask
        per = {}
        for f in FAMILIES:
            rows_f = torch.tensor([g == f for g in families])
            token_acc = (right[rows_f] & mask[rows_f]).sum() / mask[rows_f].sum()
            per[f] = {"token_accuracy": token_acc.item(), "family_read": read[rows_f].float().mean().item()}
        rows[f"masked {ratio:g}"] = per
        print(
            f"masked {ratio:g}: "
            + "  ".join(f"{f} tok {v['token_accuracy']:.2f} fam {v['family_read']:.2f}" for f, v in per.items())
        )
    rows["isolated"] = isolated_fill(base, tokens, cond)
    rows["tokens"] = token_stats(base, pixels, families, ruler)
    rows["family_word"] = family_word(base, tokens, scenes)
    print("isolated:", rows["isolated"], "tokens:", rows["tokens"], "family word:", rows["family_word"])
    append_result(RESULTS / "toyworld_inpaint.jsonl", {**checkpoint_record(meta), "rows": rows, "settings": vars(args)})


@torch.no_grad()
def isolated_fill(base, tokens: torch.Tensor, cond) -> dict:
    """Mask a lattice of tokens whose 4 neighbours stay given; accuracy of the argmax on all of them and on
    those equal to all 4 neighbours."""
    mask = torch.zeros_like(tokens, dtype=torch.bool)
    mask[:, 1:-1:3, 1:-1:3] = True
    predicted = base.logits(torch.where(mask, base.mask_id, tokens), cond).argmax(-1).view_as(tokens)
    inner = tokens[:, 1:-1, 1:-1]
    neighbours = (tokens[:, :-2, 1:-1], tokens[:, 2:, 1:-1], tokens[:, 1:-1, :-2], tokens[:, 1:-1, 2:])
    uniform = torch.zeros_like(mask)
    uniform[:, 1:-1, 1:-1] = torch.stack([inner == n for n in neighbours]).all(0)
    right = predicted == tokens
    easy = mask & uniform
    return {
        "accuracy": right[mask].float().mean().item(),
        "share_equal_to_neighbours": (easy.sum() / mask.sum()).item(),
        "accuracy_equal_to_neighbours": right[easy].float().mean().item() if easy.any() else None,
    }


@torch.no_grad()
def family_word(base, tokens: torch.Tensor, scenes: list[Scene]) -> dict:
    """Mean cross-entropy (nats) of the true tokens of all-masked grids, per family and overall, when the prompt
    names the scene's family ("right"), the family three places on in FAMILIES ("wrong"), or none ("plain")."""
    masked = torch.full_like(tokens, base.mask_id)

    def nll(prompts: list[str]) -> torch.Tensor:  # (n,) per scene
        logits = base.logits(masked, base.condition(prompts)).float()
        return torch.nn.functional.cross_entropy(logits.transpose(1, 2), tokens.flatten(1), reduction="none").mean(1)

    def wrong(family: str) -> str:
        return FAMILIES[(FAMILIES.index(family) + 3) % len(FAMILIES)]

    families = [s.style.family for s in scenes]
    prompts = {
        "right": [s.prompt(True) for s in scenes],
        "wrong": [
            Scene(s.content, s.style.replace(family=wrong(f))).prompt() for s, f in zip(scenes, families, strict=True)
        ],
        "plain": [s.prompt(False) for s in scenes],
    }
    losses = {name: nll(p) for name, p in prompts.items()}
    out = {name: round(loss.mean().item(), 3) for name, loss in losses.items()}
    for f in FAMILIES:
        rows = torch.tensor([g == f for g in families])
        out[f] = {name: round(loss[rows].mean().item(), 3) for name, loss in losses.items()}
    return out


if __name__ == "__main__":
    main()
