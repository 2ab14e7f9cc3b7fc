import pytest
import torch
from safetensors.torch import load_file

import styledrop.train as train_module
from styledrop.adapters import AdapterConfig
from styledrop.errors import StyleDropError
from styledrop.models.amused import Conditioning
from styledrop.train import (
    TrainConfig,
    build_training_set,
    drop_conditioning,
    masked_token_loss,
    sample_batch,
    train_adapter,
)

PROMPT = "a circle in striped style"
FAST = dict(batch_size=4, lr=1e-3, crops_per_image=2)


def centre_crop(base, image):
    """(tokens (1, h, w) of the image's centre crop, its conditioning on PROMPT)."""
    data = build_training_set(base, [image], [PROMPT], TrainConfig(crops_per_image=1, flip=False), torch.Generator())
    return data.tokens, Conditioning(data.text.hidden, data.text.pooled, data.micro)


def eval_loss(base, image, route, repeats=16):
    """Mean masked-token loss on the image's centre crop over a fixed set of random masks."""
    tokens, cond = centre_crop(base, image)
    g = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        return sum(masked_token_loss(base, tokens, cond, route, g).item() for _ in range(repeats)) / repeats


def test_weights_weigh_each_masked_position_in_the_loss(tiny_base, reference_image):
    tokens, cond = centre_crop(tiny_base, reference_image)

    def loss(weights):
        with torch.no_grad():
            return masked_token_loss(tiny_base, tokens, cond, None, torch.Generator().manual_seed(5), weights)

    left = torch.zeros_like(tokens, dtype=torch.float)
    left[..., : tokens.shape[-1] // 2] = 1
    torch.testing.assert_close(loss(torch.full_like(left, 3.0)), loss(None))
    # Weighing the left half 1 and the right 0, or the right 1 and the left 0, splits the unweighted mean into the
    # means over each half, which the halves' masked counts recombine into it.
    mask = train_module.random_mask(tokens.flatten(1), torch.Generator().manual_seed(5)).view_as(left)
    on_left, on_right = (mask * left).sum(), (mask * (1 - left)).sum()
    assert on_left > 0 and on_right > 0
    mixed = (loss(left) * on_left + loss(1 - left) * on_right) / (on_left + on_right)
    torch.testing.assert_close(mixed, loss(None))
    assert not torch.isclose(loss(left), loss(1 - left))


def test_fifty_steps_lower_the_masked_token_loss_on_the_image(tiny_base, reference_image, tmp_path):
    before = eval_loss(tiny_base, reference_image, None)
    train_adapter(
        tiny_base,
        [reference_image],
        [PROMPT],
        tmp_path / "a",
        "in striped style",
        config=TrainConfig(steps=50, **FAST),
        progress=False,
    )
    after = eval_loss(tiny_base, reference_image, "train")
    assert after < before - 0.1, (before, after)


def test_resume_equals_uninterrupted(tiny_base, reference_image, tmp_path):
    config = TrainConfig(steps=6, checkpoint_every=3, seed=3, **FAST)
    args = ([reference_image], [PROMPT])
    train_adapter(tiny_base, *args, tmp_path / "full", "s", config=config, progress=False)
    full = load_file(tmp_path / "full" / "adapter.safetensors")

    def crash_after_step_4(step, loss):
        if step == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_adapter(
            tiny_base, *args, tmp_path / "cut", "s", config=config, progress=False, on_step=crash_after_step_4
        )
    assert not (tmp_path / "cut" / "adapter.safetensors").exists()
    checkpoint = tmp_path / "cut" / "checkpoints" / "step-0000003"
    assert sorted(p.name for p in checkpoint.iterdir()) == ["state.json", "state.safetensors"]  # no pickle

    logs = []
    train_adapter(tiny_base, *args, tmp_path / "cut", "s", config=config, resume=True, progress=False, log=logs.append)
    assert any("resuming" in line and "step 3" in line for line in logs)
    resumed = load_file(tmp_path / "cut" / "adapter.safetensors")
    assert resumed.keys() == full.keys()
    assert all(torch.equal(resumed[k], full[k]) for k in full)
    assert not (tmp_path / "cut" / "checkpoints").exists()


def test_resume_with_other_settings_is_refused(tiny_base, reference_image, tmp_path):
    def stop(step, loss):
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_adapter(
            tiny_base,
            [reference_image],
            [PROMPT],
            tmp_path,
            "s",
            config=TrainConfig(steps=4, checkpoint_every=1, **FAST),
            progress=False,
            on_step=stop,
        )
    with pytest.raises(StyleDropError, match="other training settings"):
        train_adapter(
            tiny_base,
            [reference_image],
            [PROMPT],
            tmp_path,
            "s",
            config=TrainConfig(steps=4, checkpoint_every=1, seed=9, **FAST),
            resume=True,
            progress=False,
        )


def test_conditioning_dropout_drops_at_the_asked_rate_and_in_the_right_direction():
    rows = 20_000
    cond = Conditioning(torch.ones(rows, 3, 2), torch.ones(rows, 2), torch.zeros(rows, 5))
    empty = Conditioning(torch.zeros(1, 3, 2), torch.zeros(1, 2), torch.zeros(1, 5))
    out, dropped = drop_conditioning(cond, empty, 0.1, torch.Generator().manual_seed(0))
    rate = (out.pooled[:, 0] == 0).float().mean().item()
    assert abs(rate - 0.1) < 0.01  # 0.1 drops, not 0.9 (the inverted-mask bug keeps with probability p)
    assert torch.equal(out.pooled[:, 0] == 0, dropped)
    assert torch.equal((out.hidden == 0).all(dim=(1, 2)), dropped)


def test_every_image_is_trained_on_and_augmentations_vary(tiny_base, reference_image):
    from PIL import ImageOps

    images = [reference_image, ImageOps.invert(reference_image)]
    config = TrainConfig(crops_per_image=4, crop_scale=1.15)  # room to crop: the default 1.0 keeps a square whole
    data = build_training_set(tiny_base, images, ["a", "b"], config, torch.Generator().manual_seed(0))
    assert len(data) == 2 * 4 * 2  # images x crops x flips
    assert len({tuple(t.flatten().tolist()) for t in data.tokens}) > 4
    g = torch.Generator().manual_seed(0)
    picks = torch.cat([data.prompt_index[torch.randint(len(data), (8,), generator=g)] for _ in range(100)])
    share = picks.float().mean().item()
    assert 0.4 < share < 0.6
    tokens, cond = sample_batch(data, 64, 0.0, torch.Generator().manual_seed(1))
    assert len({tuple(t.flatten().tolist()) for t in tokens}) > 8  # different crops/flips across a batch


def test_the_log_counts_distinct_variants_of_an_uncropped_square_image(tiny_base, tmp_path):
    from PIL import Image

    side = tiny_base.resolution
    image = Image.new("RGB", (side, side), (20, 40, 200))
    image.paste((220, 30, 30), (0, 0, side // 2, side))  # left half red: its mirror image differs
    lines = []
    config = TrainConfig(steps=1, batch_size=2, crops_per_image=4)  # default crop_scale 1.0: no room to crop
    train_adapter(tiny_base, [image], [PROMPT], tmp_path / "a", "s", config=config, progress=False, log=lines.append)
    assert "1 image(s), 8 augmented variants (2 distinct)" in "\n".join(lines)


def test_non_finite_loss_stops_with_a_clear_message_and_keeps_the_checkpoint(
    tiny_base, reference_image, tmp_path, monkeypatch
):
    real = train_module.summed_masked_loss
    calls = {"n": 0}

    def loss_that_diverges(*args):
        calls["n"] += 1
        value = real(*args)
        return value * float("nan") if calls["n"] == 3 else value

    monkeypatch.setattr(train_module, "summed_masked_loss", loss_that_diverges)
    with pytest.raises(StyleDropError, match="diverged at step 3: loss is nan.*step-0000002"):
        train_adapter(
            tiny_base,
            [reference_image],
            [PROMPT],
            tmp_path,
            "s",
            config=TrainConfig(steps=5, checkpoint_every=2, **FAST),
            progress=False,
        )
    assert (tmp_path / "checkpoints" / "step-0000002" / "state.safetensors").is_file()


def test_training_reports_trainable_parameters(tiny_base, reference_image, tmp_path):
    logs = []
    train_adapter(
        tiny_base,
        [reference_image],
        [PROMPT],
        tmp_path,
        "s",
        AdapterConfig(rank=2),
        TrainConfig(steps=1, **FAST),
        progress=False,
        log=logs.append,
    )
    line = next(line for line in logs if line.startswith("trainable parameters"))
    count = sum(p.numel() for p in tiny_base.adapters["train"].parameters())
    assert f"{count:,}" in line and "% of the base transformer" in line


@pytest.mark.parametrize("field, value", [("steps", 0), ("lr", -1.0), ("cond_dropout", 1.0), ("batch_size", 0)])
def test_out_of_range_settings_are_refused(field, value):
    with pytest.raises(StyleDropError, match=f"--{field.replace('_', '-')}: out of range"):
        TrainConfig(**{field: value})


def test_gradient_checkpointing_trains_the_same_adapter(tiny_base, reference_image, tmp_path):
    for checkpointing in (False, True):
        config = TrainConfig(steps=3, gradient_checkpointing=checkpointing, **FAST)
        train_adapter(
            tiny_base, [reference_image], [PROMPT], tmp_path / str(checkpointing), "s", config=config, progress=False
        )
    a, b = (load_file(tmp_path / name / "adapter.safetensors") for name in ("False", "True"))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert any(not torch.equal(a[k], torch.zeros_like(a[k])) for k in a if "up_weight" in k)
