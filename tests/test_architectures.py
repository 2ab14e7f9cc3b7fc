"""The full-size aMUSEd architectures the speed benchmark builds are diffusers' own, parameter for parameter."""

import pytest
import torch
from diffusers import UVit2DModel

from styledrop.models.architectures import ARCHITECTURES
from styledrop.models.uvit import UViT


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_architecture_matches_diffusers_uvit(name):
    config = ARCHITECTURES[name]
    with torch.device("meta"):  # shapes only: no 600M random weights
        ours = UViT(config)
        theirs = UVit2DModel(**config.to_dict())
    shapes = {k: v.shape for k, v in ours.state_dict().items()}
    assert shapes == {k: v.shape for k, v in theirs.state_dict().items()}
    assert 600e6 < sum(s.numel() for s in shapes.values()) < 610e6  # aMUSEd's transformers: about 603M
