"""The scoring CLIP: preprocessing in torch from preprocessor_config.json, loading errors in one line."""

import pytest
import torch

from styledrop.errors import StyleDropError
from styledrop.feedback.scoring import CLIPScorer
from styledrop.fileio import write_json
from styledrop.models.clip import OPENAI_MEAN, Preprocess
from styledrop.toyworld.build import ASSETS, CLIP_PREPROCESS


def test_preprocessing_round_trips_through_its_config_file(tmp_path):
    config = Preprocess(224, 224, (0.1, 0.2, 0.3), (0.4, 0.5, 0.6))
    write_json(tmp_path / "preprocessor_config.json", config.config())
    assert Preprocess.from_folder(tmp_path, image_size=99) == config
    assert Preprocess.from_folder(tmp_path / "nothing-here", image_size=64) == Preprocess(64, 64)


def test_preprocessing_resizes_the_shorter_side_crops_the_centre_and_normalises():
    pre = Preprocess(8, 8, (0.5,) * 3, (0.25,) * 3)
    wide = torch.zeros(1, 3, 16, 32)  # red left quarter, green middle half, blue right quarter
    wide[:, 0, :, :8], wide[:, 1, :, 8:24], wide[:, 2, :, 24:] = 1.0, 1.0, 1.0
    out = pre(wide) * 0.25 + 0.5
    assert out.shape == (1, 3, 8, 8)
    inner = out[..., 1:-1].mean(dim=(0, 2, 3))  # away from the filter's reach across the crop's edges
    assert inner[1] > 0.95 and inner[0] < 0.05 and inner[2] < 0.05
    same = torch.rand(2, 3, 8, 8)
    assert torch.equal(pre(same), (same - 0.5) / 0.25)  # right size already: no resampling


def test_toy_clip_ships_its_preprocessing():
    scorer = CLIPScorer.load(ASSETS / "clip")
    assert scorer.preprocess == CLIP_PREPROCESS
    assert Preprocess(224, 224).mean == OPENAI_MEAN


@pytest.mark.parametrize("source", ["not a hub id!", "/no/such/folder"])
def test_unusable_scorer_sources_are_one_line_errors(source):
    with pytest.raises(StyleDropError, match="--scorer"):
        CLIPScorer.load(source)


def test_a_folder_with_pickled_weights_only_is_refused(tmp_path):
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(StyleDropError, match="safetensors"):
        CLIPScorer.load(tmp_path)
