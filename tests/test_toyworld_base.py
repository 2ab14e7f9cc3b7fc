"""The shipped toy base against its bar: the asked shape and colour on plain prompts, the named family honoured."""

import functools
from collections import Counter

import pytest

from styledrop.models.amused import load_base
from styledrop.pipeline import SampleConfig
from styledrop.toyworld.build import ASSETS
from styledrop.toyworld.evaluate import base_quality
from styledrop.toyworld.metrics import Ruler
from styledrop.toyworld.render import FAMILIES


@functools.cache
def quality():
    return base_quality(load_base(None), Ruler.load(ASSETS), per_content=1, sample=SampleConfig(steps=12))


def test_shipped_base_draws_the_asked_shape_and_colour():
    assert quality().plain["content"] >= 0.9, quality().plain


# Strict: once a rebuilt base honours the families, this xfail turns into a failure, and the mark must go.
@pytest.mark.xfail(strict=True, reason="issue 3: the shipped U-ViT honours the family in 43% of samples")
def test_shipped_base_honours_the_named_family():
    assert quality().family["family"] >= 0.9, quality().family


def test_every_family_is_asked_about_equally_often():
    counts = Counter(quality().families)
    assert len(quality().families) == len(quality().images["family"])
    assert set(counts) == set(FAMILIES) and max(counts.values()) - min(counts.values()) <= 1, counts
