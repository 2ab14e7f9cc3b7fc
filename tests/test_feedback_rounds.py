"""A feedback round: pool, scores, selection, new adapter; resumable, re-runnable, and honest about picks."""

import json

import pytest
import torch

from styledrop.errors import StyleDropError
from styledrop.feedback import rounds
from styledrop.feedback.picks import read_picks, set_pick
from styledrop.feedback.rounds import SelectConfig, read_prompt_file, refine, select, train_from_round
from styledrop.pipeline import SampleConfig
from styledrop.toyworld.build import ASSETS
from styledrop.train import TrainConfig

CONTENTS = ["a red star", "a blue circle"]
SAMPLE = SampleConfig(steps=2, batch_size=2)
TRAIN = TrainConfig(steps=2, batch_size=2, crops_per_image=1, checkpoint_every=1)
SCORER = str(ASSETS / "clip")


def run(source, out, feedback="clip", **kw):
    return refine(
        source, out, CONTENTS, 3, 0, SAMPLE, SelectConfig(feedback, seed=1), SCORER, config=TRAIN, progress=False,
        log=lambda _: None, **kw,
    )  # fmt: skip


def test_refine_keeps_every_stage_on_disk(round1, tmp_path):
    out = tmp_path / "r2"
    result = run(round1, out)
    assert result.pool == 6 and result.generated == 6 and result.selected == 2
    assert sorted(p.name for p in (out / "pool").glob("*.png")) == [f"00{p}-0{k}.png" for p in "01" for k in "012"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["style"] == "in test style" and manifest["pool"]["contents"] == CONTENTS
    scores = json.loads((out / "scores.json").read_text())["images"]
    assert [s["prompt"] for s in scores] == ["a red star in test style"] * 3 + ["a blue circle in test style"] * 3
    chosen = json.loads((out / "selection.json").read_text())
    assert chosen["how"]["feedback"] == "clip" and len(chosen["images"]) == 2
    assert (out / "adapter" / "adapter.safetensors").is_file()
    assert (out / "adapter" / "reference" / "00.png").is_file()  # the round-1 reference, carried forward
    card = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert card["adapter"]["rank"] == 32 and card["adapter"]["shared"] is False


def test_interrupted_pool_resumes_to_the_same_images(round1, tmp_path, monkeypatch):
    run(round1, tmp_path / "whole")
    real_save, saved = rounds.save_png, []

    def crash_after_three(image, path):
        if len(saved) == 3:
            raise KeyboardInterrupt
        saved.append(path)
        real_save(image, path)

    monkeypatch.setattr(rounds, "save_png", crash_after_three)
    with pytest.raises(KeyboardInterrupt):
        run(round1, tmp_path / "cut")
    monkeypatch.setattr(rounds, "save_png", real_save)
    result = run(round1, tmp_path / "cut")
    assert result.generated == 4  # the batch cut in half is made again, whole; the first batch is kept
    for png in (tmp_path / "whole" / "pool").glob("*.png"):
        assert (tmp_path / "cut" / "pool" / png.name).read_bytes() == png.read_bytes()


def test_a_finished_round_reruns_with_another_selection(round1, tmp_path):
    out = tmp_path / "r2"
    run(round1, out, "clip")
    first = (out / "adapter" / "adapter.safetensors").read_bytes()
    again = run(round1, out, "clip")
    assert again.generated == 0 and (out / "adapter" / "adapter.safetensors").read_bytes() == first
    run(round1, out, "random")
    assert json.loads((out / "selection.json").read_text())["how"]["feedback"] == "random"


def test_other_pool_settings_in_the_same_folder_are_refused(round1, tmp_path):
    run(round1, tmp_path / "r2")
    with pytest.raises(StyleDropError, match="other pool"):
        refine(round1, tmp_path / "r2", ["a green heart"], 3, 0, SAMPLE, scorer=SCORER, progress=False)


def test_human_feedback_waits_for_picks_then_trains_on_them(round1, tmp_path):
    out = tmp_path / "r2"
    waiting = run(
        round1,
        out,
        "human",
    )
    assert waiting.waiting_for_picks and waiting.adapter is None
    set_pick(out, "000-02.png", True)
    set_pick(out, "001-00.png", True)
    result = train_from_round(out, SelectConfig("human"), config=TRAIN, progress=False)
    assert result.selected == 2
    trained = json.loads((out / "selection.json").read_text())["images"]
    assert [t["file"] for t in trained] == ["000-02.png", "001-00.png"]


def test_picks_from_two_tabs_both_survive(tmp_path):
    set_pick(tmp_path, "a.png", True)  # tab 1
    set_pick(tmp_path, "b.png", True)  # tab 2, which never saw tab 1's pick
    set_pick(tmp_path, "a.png", False)
    set_pick(tmp_path, "c.png", True)
    assert read_picks(tmp_path) == ["b.png", "c.png"]


def records():
    return [
        {"file": f"{p}{k}", "prompt": p, "text": t, "style": s, "leak": None}
        for p, rows in {"x": [(0.1, 0.9), (0.3, 0.2), (0.2, 0.8)], "y": [(0.5, 0.5), (0.4, 0.6)]}.items()
        for k, (t, s) in enumerate(rows)
    ]


def test_clip_selection_keeps_the_best_text_score_per_prompt():
    assert [r["file"] for r in select(records(), SelectConfig("clip"), [])] == ["x1", "y0"]
    assert [r["file"] for r in select(records(), SelectConfig("clip", keep=2), [])] == ["x1", "x2", "y0", "y1"]
    filtered = select(records(), SelectConfig("clip", min_style=0.55), [])
    assert [r["file"] for r in filtered] == ["x2", "y1"]


def test_random_selection_is_seeded_and_per_prompt():
    a = select(records(), SelectConfig("random", seed=3), [])
    assert a == select(records(), SelectConfig("random", seed=3), [])
    assert sorted(r["prompt"] for r in a) == ["x", "y"]
    draws = {tuple(r["file"] for r in select(records(), SelectConfig("random", seed=s), [])) for s in range(20)}
    assert len(draws) > 1


def test_human_selection_is_the_picks():
    assert [r["file"] for r in select(records(), SelectConfig("human"), ["y1", "x0"])] == ["x0", "y1"]


@pytest.mark.parametrize("text,error", [("", "no prompts"), ("# only a comment\n\n", "no prompts")])
def test_prompt_files_without_prompts_are_refused(tmp_path, text, error):
    path = tmp_path / "prompts.txt"
    path.write_text(text)
    with pytest.raises(StyleDropError, match=error):
        read_prompt_file(path)


def test_prompt_file_skips_blanks_and_comments(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("a cat\n\n# animals\n  a dog  \n")
    assert read_prompt_file(path) == ["a cat", "a dog"]


def test_toy_scorer_measures_leakage_from_the_reference_image():
    from styledrop.toyworld.metrics import Ruler, render_pixels
    from styledrop.toyworld.render import Content, Scene
    from styledrop.toyworld.world import EVAL_STYLES

    scorer = Ruler.load(ASSETS).scorer()
    style = EVAL_STYLES["candy"]
    reference = render_pixels([Scene(Content("circle", "red"), style)])
    outputs = render_pixels([Scene(Content("circle", "red"), style), Scene(Content("star", "blue"), style)])
    flags = scorer.leakage(outputs, ["a blue star", "a blue star", "a cat"][:2], reference)
    assert flags == [True, False]
    assert scorer.leakage(outputs[:1], ["a cat"], reference) == [None]
    assert torch.isfinite(scorer.text_scores(outputs, ["a blue star"] * 2)).all()
