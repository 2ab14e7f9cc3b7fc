"""Scorers rate generated images. The paper's two: the text score (image-text cosine) and the style score
(image-image cosine to the reference), both from a CLIP model. A scorer is anything with these methods."""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F

from ..models.clip import DEFAULT_CLIP, load_clip


class Scorer(Protocol):
    def text_scores(self, pixels: torch.Tensor, prompts: list[str]) -> torch.Tensor: ...

    def style_scores(self, pixels: torch.Tensor, reference: torch.Tensor) -> torch.Tensor: ...


def projected(features) -> torch.Tensor:
    """CLIP's projected embeddings: transformers 4 returns the tensor, transformers 5 an output object."""
    return features if isinstance(features, torch.Tensor) else features.pooler_output


class CLIPScorer:
    def __init__(self, model, tokenizer, preprocess, batch_size: int = 64):
        self.model, self.tokenizer, self.preprocess, self.batch_size = model, tokenizer, preprocess, batch_size

    @classmethod
    def load(cls, source: str = DEFAULT_CLIP, device: str = "cpu") -> CLIPScorer:
        return cls(*load_clip(source, device))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """(n, 3, H, W) in [0, 1] -> (n, d) unit vectors."""
        chunks = []
        for i in range(0, len(pixels), self.batch_size):
            batch = self.preprocess(pixels[i : i + self.batch_size].to(self.device))
            chunks.append(projected(self.model.get_image_features(pixel_values=batch)))
        return F.normalize(torch.cat(chunks).float(), dim=-1).cpu()

    @torch.no_grad()
    def text_features(self, prompts: list[str]) -> torch.Tensor:
        ids = self.tokenizer(prompts, padding="max_length", truncation=True, return_tensors="pt").input_ids
        features = projected(self.model.get_text_features(input_ids=ids.to(self.device)))
        return F.normalize(features.float(), dim=-1).cpu()

    def text_scores(self, pixels: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        """(n,) cosine of each image with its prompt."""
        return self.feature_text_scores(self.image_features(pixels), prompts)

    def feature_text_scores(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        """(n,) cosine of each image, given as its (n, d) image_features, with its prompt: for scoring one set of
        images against several sets of prompts without encoding the images again."""
        return (images * self.text_features(prompts)).sum(-1)

    def style_scores(self, pixels: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """(n,) cosine of each image with the mean embedding of the reference image(s)."""
        ref = self.image_features(reference[None] if reference.ndim == 3 else reference).mean(0)
        return self.image_features(pixels) @ F.normalize(ref, dim=0)


# -- what a round uses by default, per base -----------------------------------------------------------------------
# Varied content prompts for a real base's pool (the paper: about 30 prompts x 64 samples).
DEFAULT_CONTENTS = (
    "a house", "a cat", "a dog", "a bicycle", "a mountain landscape", "a cup of coffee", "a tree", "an owl",
    "a sailing boat", "a city street", "a bowl of fruit", "a lighthouse", "a robot", "a flower in a vase",
    "a portrait of a woman", "an old man reading", "a car", "a castle", "a teapot", "a rabbit", "a guitar",
    "a bridge over a river", "a hot air balloon", "a fox in the snow", "a pair of shoes", "a clock",
    "a butterfly", "a train", "a cactus", "a chair",
)  # fmt: skip


def default_contents(base_source: str) -> tuple[str, ...]:
    from ..models.amused import TOY_SOURCE

    if base_source == TOY_SOURCE:
        from ..toyworld.world import pool_contents

        return tuple(c.prompt() for c in pool_contents())
    return DEFAULT_CONTENTS


def default_scorer_source(base_source: str) -> str:
    from ..models.amused import TOY_SOURCE

    return TOY_SCORER if base_source == TOY_SOURCE else DEFAULT_CLIP


TOY_SCORER = "styledrop:toy"  # the toy CLIP, with the oracle measuring leakage


def load_scorer(source: str, device: str | torch.device = "cpu") -> Scorer:
    if source == TOY_SCORER:
        from ..toyworld.build import ASSETS
        from ..toyworld.metrics import Ruler

        return Ruler.load(ASSETS).scorer()
    return CLIPScorer.load(source, device)
