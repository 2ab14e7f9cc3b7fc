import json

import pytest
import torch
from conftest import striped_circle
from PIL import Image

from styledrop.errors import StyleDropError
from styledrop.guidance import Component
from styledrop.images import center_square
from styledrop.pipeline import (
    Recipe,
    SampleConfig,
    Sweep,
    generate,
    sample_images,
    sample_mix,
    stylize,
    stylize_pixels,
)


@pytest.mark.parametrize("method", ["anchor", "remask"])
def test_stylize_at_strength_0_is_the_reconstruction_and_at_1_is_generation(tiny_base, round1, method):
    tiny_base.load_adapter(round1, "style")
    pixels = center_square(striped_circle(48), tiny_base.resolution)[None]
    config, prompt = SampleConfig(steps=4), ["a cat in test style"]

    def stylized(strength: float) -> torch.Tensor:
        return stylize_pixels(tiny_base, "style", pixels, prompt, strength, [3], config, method=method)

    kept = stylized(0.0)
    assert torch.equal(kept, tiny_base.decode_tokens(tiny_base.encode_images(pixels)))
    assert torch.equal(stylized(1.0), sample_images(tiny_base, "style", prompt, [3], config))
    between = stylized(0.9)  # the tiny model's logits are flat: only a weak anchor lets it change anything
    assert not torch.equal(between, kept) and not torch.equal(between, stylized(1.0))
    assert torch.equal(between, stylized(0.9))


def test_with_plausibility_a_light_stylize_still_keeps_the_input(tiny_base, round1):
    # Stylize stays continuous down to strength 0 (the reconstruction): the constraint comes in with the strength,
    # so at 0.01 even alpha 0.999 rules out only tokens under 1% of the top, and the input survives (with the
    # full alpha its tokens that the styled model finds implausible would go).
    tiny_base.load_adapter(round1, "style")
    pixels = center_square(striped_circle(48), tiny_base.resolution)[None]
    config, prompt = SampleConfig(steps=4, plausibility=0.999), ["a cat in test style"]
    light = stylize_pixels(tiny_base, "style", pixels, prompt, 0.01, [3], config)
    assert torch.equal(light, tiny_base.decode_tokens(tiny_base.encode_images(pixels)))


def test_descriptor_guidance_needs_the_content_prompts_and_changes_the_image(tiny_base, round1):
    tiny_base.load_adapter(round1, "style")
    prompt, contents = ["a cat in test style"], ["a cat"]
    off, on = SampleConfig(steps=4), SampleConfig(steps=4, descriptor_guidance=5.0)
    with pytest.raises(ValueError, match="descriptor guidance needs the prompts without the style descriptor"):
        sample_images(tiny_base, "style", prompt, [3], on)
    plain = sample_images(tiny_base, "style", prompt, [3], off, contents=contents)
    assert torch.equal(plain, sample_images(tiny_base, "style", prompt, [3], off))  # lD 0: contents unused
    assert not torch.equal(sample_images(tiny_base, "style", prompt, [3], on, contents=contents), plain)


def test_plausibility_changes_a_guided_image_only_where_it_rules_tokens_out(tiny_base, round1):
    tiny_base.load_adapter(round1, "style")
    prompt = ["a cat in test style"]

    def sample(alpha: float) -> torch.Tensor:
        return sample_images(tiny_base, "style", prompt, [3], SampleConfig(steps=4, plausibility=alpha))

    off = sample(0.0)
    assert torch.equal(off, sample(1e-30))  # the tiny model's logits span far less than ln(1e30): nothing ruled out
    assert not torch.equal(off, sample(0.5))


def test_sampling_names_the_guidance_keys_it_has_no_prompts_for(tiny_base):
    components = [Component(1.0, None, "text"), Component(1.0, None, "other")]
    with pytest.raises(ValueError, match=r"no prompts for the guidance terms' keys \['other'\]"):
        sample_mix(tiny_base, components, {"text": ["a cat"]}, [3], SampleConfig(steps=2))


def test_stylize_writes_the_reconstruction_and_versions(round1, reference_png, tmp_path):
    paths = stylize(round1, reference_png, "a circle", tmp_path / "out", 0.5, n=2, config=SampleConfig(steps=2))
    assert [p.name for p in paths] == ["a-circle-00.png", "a-circle-01.png"]
    record = json.loads((tmp_path / "out" / "images.json").read_text())
    assert record["prompt"] == "a circle in test style" and record["strength"] == 0.5
    assert Image.open(tmp_path / "out" / "grid.png").width > 3 * 32
    assert record["method"] == "anchor"
    with pytest.raises(StyleDropError, match="--strength: out of range"):
        stylize(round1, reference_png, "a circle", tmp_path / "bad", 1.5)
    with pytest.raises(StyleDropError, match="--method: unknown"):
        stylize(round1, reference_png, "a circle", tmp_path / "bad", 0.5, method="sdedit")
    assert not (tmp_path / "bad").exists()


def test_sweep_parses_ranges_and_lists_and_rejects_the_rest():
    assert Sweep.parse("style-scale=0:3:7").values == (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0)
    assert Sweep.parse("blend=0,0.5,1") == Sweep("blend", (0.0, 0.5, 1.0))
    for bad in ("colour=0:1:3", "guidance=", "guidance=a:b:c", "guidance=0:1:0"):
        with pytest.raises(StyleDropError, match="--sweep"):
            Sweep.parse(bad)


def test_recipe_weights_share_one_minus_g_among_styles_in_their_proportions():
    assert Recipe(styles=(("a", 0.7), ("b", 0.3))).weights() == ([0.7, 0.3], 0.0)
    styles, g = Recipe(styles=(("a", 3.0), ("b", 1.0)), subject="c", subject_weight=0.6).weights()
    assert styles == pytest.approx([0.3, 0.1]) and g == 0.6
    assert Recipe(subject="c").weights() == ([], 1.0)
    with pytest.raises(StyleDropError, match="blend weights"):
        Recipe(styles=(("a", 0.0),))
    with pytest.raises(StyleDropError, match="--subject-weight"):
        Recipe(subject="c", subject_weight=1.5)


def test_a_blend_sweep_renders_each_image_once_per_weight_with_the_same_seed(round1, tmp_path):
    recipe = Recipe(styles=((str(round1), 1.0), (str(round1), 1.0)))
    out = tmp_path / "sweep"
    paths = generate(
        recipe, ["a cat"], out, n=2, seed=5, config=SampleConfig(steps=2), sweep=Sweep.parse("blend=0:1:3")
    )
    records = json.loads((out / "images.json").read_text())["images"]
    assert len(paths) == 6 and [r["blend"] for r in records] == [0.0, 0.0, 0.5, 0.5, 1.0, 1.0]
    assert [r["seed"] for r in records] == [5, 6] * 3
    # The same adapter on both sides: all of the first or all of the second is the same picture.
    pictures = [Image.open(p).tobytes() for p in paths]
    assert pictures[0] == pictures[4]
    grid = Image.open(out / "grid.png")
    assert grid.width >= 3 * 96 and grid.height >= 2 * 96


def test_a_repeated_prompt_gets_its_own_files(round1, tmp_path):
    paths = generate(
        Recipe(styles=((str(round1), 1.0),)), ["a cat", "a cat"], tmp_path, n=1, config=SampleConfig(steps=2)
    )
    assert [p.name for p in paths] == ["000-a-cat-00.png", "001-a-cat-00.png"] and all(p.is_file() for p in paths)
