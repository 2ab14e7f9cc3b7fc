"""The shipped toy base against its bar: the asked shape and colour on plain prompts, the named family honoured."""

import functools
from collections import Counter

from styledrop.models.amused import load_base
from styledrop.pipeline import SampleConfig
from styledrop.toyworld.build import ASSETS
from styledrop.toyworld.evaluate import base_quality
from styledrop.toyworld.metrics import Ruler
from styledrop.toyworld.render import FAMILIES

# Descriptor guidance, as benchmarks/toyworld_base.py measures the family bar (README, the shapes world).
DESCRIPTOR = SampleConfig(steps=36, temperature=0.0, guidance=2.0, descriptor_guidance=5.0)


@functools.cache
def quality(sample: SampleConfig = SampleConfig(steps=12), per_content: int = 1):
    return base_quality(load_base(None), Ruler.load(ASSETS), per_content=per_content, sample=sample)


def test_shipped_base_draws_the_asked_shape_and_colour():
    assert quality().plain["content"] >= 0.9, quality().plain


def test_shipped_base_honours_the_named_family():
    # 128 samples read the rate to within about 3 points (a standard error): the bar itself, 90%, is measured on
    # 768 by the benchmark. This guards against a base that falls clearly below it (the one before, 64%).
    family = quality(DESCRIPTOR, per_content=2).family
    assert family["family"] >= 0.85, family


def test_every_family_is_asked_about_equally_often():
    counts = Counter(quality().families)
    assert len(quality().families) == len(quality().images["family"])
    assert set(counts) == set(FAMILIES) and max(counts.values()) - min(counts.values()) <= 1, counts
