import dataclasses

import pytest

from styledrop.toyworld import subject as sub
from styledrop.toyworld.build import ASSETS
from styledrop.toyworld.metrics import Ruler, render_pixels
from styledrop.toyworld.render import Content, Scene, Style
from styledrop.toyworld.world import EVAL_STYLES


@pytest.fixture(scope="module")
def ruler():
    return Ruler.load(ASSETS)


@pytest.mark.parametrize("style", [Style(), *EVAL_STYLES.values()], ids=["flat", *EVAL_STYLES])
def test_subject_fidelity_reads_the_two_tone_subject_in_every_style(ruler, style):
    assert sub.subject_fidelity(ruler, sub.subject_truth(style, n=8)) >= 0.875


@pytest.mark.parametrize("style", [Style(), *EVAL_STYLES.values()], ids=["flat", *EVAL_STYLES])
def test_subject_fidelity_rejects_one_colour_squares_and_the_wrong_shape(ruler, style):
    impostors = [
        Content("square", "yellow"),
        Content("square", "blue"),
        Content("square", "blue", lower="yellow"),
        dataclasses.replace(sub.SUBJECT, shape="circle"),
    ]
    assert sub.subject_fidelity(ruler, render_pixels([Scene(c, style) for c in impostors])) == 0.0
