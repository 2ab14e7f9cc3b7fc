"""Toy-world metrics, each validated against true renders by a test:

- content accuracy: shape and colour read by the oracle;
- text score: the toy CLIP's image-text cosine (the paper's text score);
- style score: cosine of the oracle's content-independent style embeddings to the reference;
  CLIP image-image cosine to the reference (the paper's style score) is reported beside it;
- leakage: how often an output shows the reference's shape or colour when the prompt asks for another.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..feedback.scoring import CLIPScorer
from ..images import array_to_tensor
from ..pipeline import full_prompt
from .oracle import Oracle, load_oracle
from .render import COLOUR_NAMES, FAMILIES, SHAPES, Content, Scene, Style, family_descriptor
from .world import render_all


def render_pixels(scenes: list[Scene]) -> torch.Tensor:
    """(n, 3, 32, 32) float in [0, 1]."""
    return array_to_tensor(render_all(scenes))


@dataclass
class Ruler:
    oracle: Oracle
    clip: CLIPScorer  # the toy CLIP

    @classmethod
    def load(cls, assets: Path) -> Ruler:
        return cls(load_oracle(assets / "oracle"), CLIPScorer.load(assets / "clip"))

    # -- content -----------------------------------------------------------------------------------------------
    def content_hits(self, pixels: torch.Tensor, contents: list[Content]) -> dict[str, torch.Tensor]:
        pred = self.oracle.predict(pixels)
        shape = pred["shape"] == torch.tensor([SHAPES.index(c.shape) for c in contents])
        colour = pred["colour"] == torch.tensor([COLOUR_NAMES.index(c.colour) for c in contents])
        return {"shape": shape, "colour": colour, "content": shape & colour, "pred": pred}

    def content_accuracy(self, pixels: torch.Tensor, contents: list[Content]) -> float:
        return self.content_hits(pixels, contents)["content"].float().mean().item()

    def family_hits(self, pixels: torch.Tensor, families: list[str]) -> torch.Tensor:
        """(B,) bool: the oracle reads each image's pattern family as the one given."""
        truth = torch.tensor([FAMILIES.index(f) for f in families])
        return self.oracle.predict(pixels)["family"] == truth

    def family_accuracy(self, pixels: torch.Tensor, families: list[str]) -> float:
        return self.family_hits(pixels, families).float().mean().item()

    def clip_family_hits(self, pixels: torch.Tensor, contents: list[Content], families: list[str]) -> torch.Tensor:
        """(B,) bool: of the prompts naming each image's content in every family ("a red star in striped style"),
        the toy CLIP scores the one with the image's own family highest. Its text tower is the base's text
        encoder: does the U-ViT's conditioning tell the families apart?"""
        images = self.clip.image_features(pixels)  # (B, E) unit vectors, encoded once for all the families
        prompts = {f: [full_prompt(c.prompt(), family_descriptor(f)) for c in contents] for f in FAMILIES}
        scores = torch.stack([self.clip.feature_text_scores(images, prompts[f]) for f in FAMILIES], dim=1)
        return scores.argmax(1) == torch.tensor([FAMILIES.index(f) for f in families])

    def leak_flags(self, pixels: torch.Tensor, asked: list[Content], reference: Content) -> list[bool | None]:
        """Per output: does it show the reference's shape (when another was asked) or colour (likewise)?
        None where the prompt asked for the reference's content itself."""
        pred = self.oracle.predict(pixels)
        flags = []
        for s, c, want in zip(pred["shape"].tolist(), pred["colour"].tolist(), asked, strict=True):
            if want.shape == reference.shape and want.colour == reference.colour:
                flags.append(None)
                continue
            shape_leak = want.shape != reference.shape and SHAPES[s] == reference.shape
            colour_leak = want.colour != reference.colour and COLOUR_NAMES[c] == reference.colour
            flags.append(shape_leak or colour_leak)
        return flags

    def leakage(self, pixels: torch.Tensor, asked: list[Content], reference: Content) -> float:
        """Fraction of outputs that leak, among those whose prompt differs from the reference's content."""
        flags = [f for f in self.leak_flags(pixels, asked, reference) if f is not None]
        return sum(flags) / max(1, len(flags))

    def read_content(self, pixels: torch.Tensor) -> list[Content]:
        pred = self.oracle.predict(pixels)
        return [
            Content(SHAPES[s], COLOUR_NAMES[c])
            for s, c in zip(pred["shape"].tolist(), pred["colour"].tolist(), strict=True)
        ]

    def scorer(self) -> ToyScorer:
        return ToyScorer(self)

    # -- style -------------------------------------------------------------------------------------------------
    def style_embeddings(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.oracle.predict(pixels)["style"]

    def style_similarities(self, pixels: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """(B,) cosine between each image's style embedding and the reference image's."""
        ref = self.style_embeddings(reference[None] if reference.ndim == 3 else reference).mean(0)
        return self.style_embeddings(pixels) @ F.normalize(ref, dim=0)

    def style_score(self, pixels: torch.Tensor, reference: torch.Tensor) -> float:
        """Mean cosine between each image's style embedding and the reference image's."""
        return self.style_similarities(pixels, reference).mean().item()

    # -- CLIP scores -------------------------------------------------------------------------------------------
    def text_score(self, pixels: torch.Tensor, prompts: list[str]) -> float:
        return self.clip.text_scores(pixels, prompts).mean().item()

    def clip_style_score(self, pixels: torch.Tensor, reference: torch.Tensor) -> float:
        return self.clip.style_scores(pixels, reference).mean().item()


@dataclass
class ToyScorer:
    """The feedback scorer for the toy base: the toy CLIP's text and style scores (as the paper's CLIP), plus
    leakage, which only the toy world can measure: the oracle reads the reference's content from its image."""

    ruler: Ruler

    def text_scores(self, pixels: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        return self.ruler.clip.text_scores(pixels, prompts)

    def style_scores(self, pixels: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return self.ruler.clip.style_scores(pixels, reference)

    def leakage(self, pixels: torch.Tensor, contents: list[str], reference: torch.Tensor) -> list[bool | None]:
        ref = self.ruler.read_content(reference[:1])[0]
        asked = [Content.parse(c) for c in contents]
        known = [i for i, a in enumerate(asked) if a is not None]
        flags = self.ruler.leak_flags(pixels[known], [asked[i] for i in known], ref) if known else []
        out: list[bool | None] = [None] * len(contents)
        for i, flag in zip(known, flags, strict=True):
            out[i] = flag
        return out


def rate_by_family(hits: torch.Tensor, families: list[str]) -> dict[str, float]:
    """{family: the fraction of hits (B,) among the images asked for it}, families in the order they first appear."""
    return {
        f: hits[[i for i, g in enumerate(families) if g == f]].float().mean().item() for f in dict.fromkeys(families)
    }


def auc(positives: torch.Tensor, negatives: torch.Tensor) -> float:
    """P(a random positive scores above a random negative), ties counting half."""
    diff = positives[:, None] - negatives[None, :]
    return ((diff > 0).float() + 0.5 * (diff == 0).float()).mean().item()


def style_separation(ruler: Ruler, styles: list[Style], contents: list[Content]) -> float:
    """AUC of style similarity: same-style/different-content pairs vs different-style/same-content pairs."""
    scenes = [Scene(c, s) for s in styles for c in contents]
    emb = ruler.style_embeddings(render_pixels(scenes)).view(len(styles), len(contents), -1)
    same_style = [emb[s, i] @ emb[s, j] for s in range(len(styles)) for i in range(len(contents)) for j in range(i)]
    same_content = [emb[a, c] @ emb[b, c] for c in range(len(contents)) for a in range(len(styles)) for b in range(a)]
    return auc(torch.stack(same_style), torch.stack(same_content))
