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

from ..images import array_to_tensor
from .build import clip_pixels
from .oracle import Oracle, load_oracle
from .render import COLOUR_NAMES, SHAPES, Content, Scene, Style
from .world import render_all


def render_pixels(scenes: list[Scene]) -> torch.Tensor:
    """(n, 3, 32, 32) float in [0, 1]."""
    return array_to_tensor(render_all(scenes))


@dataclass
class Ruler:
    oracle: Oracle
    clip: object  # transformers CLIPModel
    tokenizer: object

    @classmethod
    def load(cls, assets: Path) -> Ruler:
        from transformers import CLIPModel, CLIPTokenizer

        clip = CLIPModel.from_pretrained(assets / "clip", use_safetensors=True).eval()
        return cls(load_oracle(assets / "oracle"), clip, CLIPTokenizer.from_pretrained(assets / "clip"))

    # -- content -----------------------------------------------------------------------------------------------
    def content_hits(self, pixels: torch.Tensor, contents: list[Content]) -> dict[str, torch.Tensor]:
        pred = self.oracle.predict(pixels)
        shape = pred["shape"] == torch.tensor([SHAPES.index(c.shape) for c in contents])
        colour = pred["colour"] == torch.tensor([COLOUR_NAMES.index(c.colour) for c in contents])
        return {"shape": shape, "colour": colour, "content": shape & colour, "pred": pred}

    def content_accuracy(self, pixels: torch.Tensor, contents: list[Content]) -> float:
        return self.content_hits(pixels, contents)["content"].float().mean().item()

    def leakage(self, pixels: torch.Tensor, asked: list[Content], reference: Content) -> float:
        """Fraction of outputs showing the reference's shape (when another was asked) or colour (likewise),
        among outputs where at least one of the two differs from the reference."""
        pred = self.oracle.predict(pixels)
        leaks, counted = 0, 0
        for s, c, want in zip(pred["shape"].tolist(), pred["colour"].tolist(), asked, strict=True):
            shape_leak = want.shape != reference.shape and SHAPES[s] == reference.shape
            colour_leak = want.colour != reference.colour and COLOUR_NAMES[c] == reference.colour
            if want.shape != reference.shape or want.colour != reference.colour:
                counted += 1
                leaks += shape_leak or colour_leak
        return leaks / max(1, counted)

    # -- style -------------------------------------------------------------------------------------------------
    def style_embeddings(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.oracle.predict(pixels)["style"]

    def style_score(self, pixels: torch.Tensor, reference: torch.Tensor) -> float:
        """Mean cosine between each image's style embedding and the reference image's."""
        ref = self.style_embeddings(reference[None] if reference.ndim == 3 else reference).mean(0)
        return (self.style_embeddings(pixels) @ F.normalize(ref, dim=0)).mean().item()

    # -- CLIP scores -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return F.normalize(projected(self.clip.get_image_features(pixel_values=clip_pixels(pixels))), dim=-1)

    @torch.no_grad()
    def text_features(self, prompts: list[str]) -> torch.Tensor:
        ids = self.tokenizer(prompts, padding="max_length", truncation=True, return_tensors="pt").input_ids
        return F.normalize(projected(self.clip.get_text_features(input_ids=ids)), dim=-1)

    def text_score(self, pixels: torch.Tensor, prompts: list[str]) -> float:
        return (self.image_features(pixels) * self.text_features(prompts)).sum(-1).mean().item()

    def clip_style_score(self, pixels: torch.Tensor, reference: torch.Tensor) -> float:
        ref = self.image_features(reference[None] if reference.ndim == 3 else reference).mean(0)
        return (self.image_features(pixels) @ F.normalize(ref, dim=0)).mean().item()


def projected(features) -> torch.Tensor:
    """CLIP's projected embeddings: transformers 4 returns the tensor, transformers 5 an output object."""
    return features if isinstance(features, torch.Tensor) else features.pooler_output


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
