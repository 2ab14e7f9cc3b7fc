import numpy as np
import pytest

from styledrop.toyworld.render import COLOUR_NAMES, FAMILIES, SHAPES, Content, Scene, Style, render, shape_mask
from styledrop.toyworld.world import (
    EVAL_STYLES,
    HELD_OUT,
    in_held_out_region,
    random_textures,
    sample_scenes,
    sample_style,
)


def test_world_size_meets_the_brief():
    assert len(SHAPES) >= 8 and len(COLOUR_NAMES) >= 8 and len(EVAL_STYLES) >= 6
    assert render(Scene(Content("star", "red"))).shape == (32, 32, 3)


def test_rendering_is_deterministic_and_seeded():
    scene = Scene(Content("heart", "blue"), Style("grainy", grain=0.3, seed=4))
    assert np.array_equal(render(scene), render(scene))
    assert not np.array_equal(render(scene), render(Scene(scene.content, scene.style.replace(seed=5))))


def test_every_shape_has_its_own_silhouette():
    masks = {s: shape_mask(Content(s, "red")) > 0.5 for s in SHAPES}
    for a in SHAPES:
        for b in SHAPES:
            if a < b:
                assert (masks[a] != masks[b]).sum() >= 20, (a, b)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_changes_the_look(family):
    content = Content("square", "green")
    flat = render(Scene(content, Style("flat")))
    styled = render(
        Scene(
            content,
            sample_style(np.random.default_rng(0), family=family).replace(
                background="plain", hue_shift=0, brightness=1, outline="none"
            ),
        )
    )
    assert family == "flat" or np.abs(flat.astype(int) - styled.astype(int)).mean() > 3


def test_training_scenes_avoid_held_out_regions_and_eval_styles_lie_inside_them():
    assert not any(in_held_out_region(s.style) for s in sample_scenes(500, seed=0))
    assert all(in_held_out_region(s.style) for s in sample_scenes(100, seed=1, held_out=True))
    assert all(in_held_out_region(s) for s in EVAL_STYLES.values())
    assert {s.family for s in EVAL_STYLES.values()} == set(HELD_OUT)


def test_prompts_name_content_and_family():
    scene = Scene(Content("ring", "pink"), Style("dotted"))
    assert scene.prompt() == "a pink ring in dotted style" and scene.prompt(with_style=False) == "a pink ring"


def test_random_textures_are_varied():
    textures = random_textures(50, seed=0)
    assert textures.shape == (50, 32, 32, 3) and len({t.tobytes() for t in textures}) == 50


def test_many_scenes_render_in_worker_processes_as_in_one(monkeypatch):
    import styledrop.toyworld.world as world

    workers = []

    class Counted(world.ProcessPoolExecutor):
        def __init__(self, count, **kwargs):
            workers.append(count)
            super().__init__(count, **kwargs)

    scenes = sample_scenes(10, seed=5)
    monkeypatch.setattr(world, "RENDER_CHUNK", 3)  # 4 chunks, on as many workers as there are cores
    monkeypatch.setattr(world.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(world, "ProcessPoolExecutor", Counted)
    assert np.array_equal(world.render_all(scenes), np.stack([render(s) for s in scenes]))
    assert workers == [2]
