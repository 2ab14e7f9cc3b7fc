"""The shipped toy base meets its bar: the asked shape and colour on plain prompts, the named family honoured."""

import pytest

from styledrop.models.amused import TOY_BASE, load_base
from styledrop.pipeline import SampleConfig
from styledrop.toyworld.build import ASSETS
from styledrop.toyworld.evaluate import base_quality
from styledrop.toyworld.metrics import Ruler


@pytest.mark.skipif(not (TOY_BASE / "transformer").is_dir(), reason="issue 3: the toy base's U-ViT is still training")
def test_shipped_base_draws_what_it_is_asked():
    quality = base_quality(load_base(None), Ruler.load(ASSETS), per_content=1, sample=SampleConfig(steps=12))
    assert quality.plain["content"] >= 0.9, quality.plain
    assert quality.family["family"] >= 0.9, quality.family
