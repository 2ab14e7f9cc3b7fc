import json

import pytest
import torch

from styledrop.adapters import AdapterCard, AdapterConfig, save_adapter
from styledrop.adapters.layer import Adapter
from styledrop.errors import StyleDropError
from styledrop.models.amused import load_base


def logits_of(base, route, seed=0, batch=3):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, base.mask_id + 1, (batch, 8, 8), generator=g)
    cond = base.condition(["a square in striped style", "a star", ""][:batch])
    with torch.no_grad():
        return base.logits(tokens, cond, route)


def perturb_(adapter, seed=0):
    """A trained-looking adapter: random non-zero weights everywhere (up included)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in adapter.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)


@pytest.mark.parametrize("shared", [True, False])
def test_fresh_adapter_leaves_logits_unchanged(tiny_base, shared):
    tiny_base.new_adapter("style", AdapterConfig(rank=4, shared=shared), torch.Generator().manual_seed(0))
    assert torch.equal(logits_of(tiny_base, "style"), logits_of(tiny_base, None))


def test_trained_adapter_changes_logits(tiny_base):
    perturb_(tiny_base.new_adapter("style", AdapterConfig()))
    assert not torch.allclose(logits_of(tiny_base, "style"), logits_of(tiny_base, None))


@pytest.mark.parametrize("shared", [True, False])
def test_save_then_load_gives_identical_logits(tiny_base, tiny_base_dir, tmp_path, shared):
    adapter = tiny_base.new_adapter("style", AdapterConfig(rank=3, shared=shared))
    perturb_(adapter)
    save_adapter(tmp_path / "a", adapter, AdapterCard(adapter.config, tiny_base.identity, style="in striped style"))
    before = logits_of(tiny_base, "style")
    fresh = load_base(str(tiny_base_dir))
    card = fresh.load_adapter(tmp_path / "a", "style")
    assert card.style == "in striped style" and card.config == AdapterConfig(rank=3, shared=shared)
    assert torch.equal(logits_of(fresh, "style"), before)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["adapter.safetensors", "adapter_config.json"]


def test_parameter_counts_match_the_paper_on_amused_sizes():
    # aMUSEd: 22 layers of width 1024. Paper round 1: H=4 shared (~0.06M); round 2: H=32 per layer (~2.9M).
    shared = sum(p.numel() for p in Adapter(AdapterConfig(rank=4, shared=True), 22, 1024).parameters())
    per_layer = sum(p.numel() for p in Adapter(AdapterConfig(rank=32, shared=False), 22, 1024).parameters())
    assert shared == 2 * (4 * 1024 * 2 + 22 * (4 + 1024))
    assert per_layer == 2 * 22 * (32 * 1024 * 2 + 32 + 1024)
    assert 0.05e6 < shared < 0.07e6 and 2.8e6 < per_layer < 3.0e6


def test_per_sample_routing_equals_separate_passes(tiny_base):
    perturb_(tiny_base.new_adapter("a", AdapterConfig(rank=2)), seed=1)
    perturb_(tiny_base.new_adapter("b", AdapterConfig(rank=5, shared=False)), seed=2)
    mixed = logits_of(tiny_base, ["a", None, "b"])
    for row, route in enumerate(["a", None, "b"]):
        torch.testing.assert_close(mixed[row], logits_of(tiny_base, route)[row], rtol=1e-5, atol=1e-5)


def test_unknown_adapter_name_in_route(tiny_base):
    with pytest.raises(KeyError, match="no adapter named 'nope'"):
        logits_of(tiny_base, ["nope", None, None])


@pytest.fixture
def saved_adapter(tiny_base, tmp_path):
    adapter = tiny_base.new_adapter("style", AdapterConfig(rank=2))
    perturb_(adapter)
    return save_adapter(tmp_path / "adapter", adapter, AdapterCard(adapter.config, tiny_base.identity, style="s"))


def test_adapter_from_another_base_is_refused_naming_both(saved_adapter, tiny_base_dir, other_base_dir):
    other = load_base(str(other_base_dir))
    with pytest.raises(StyleDropError, match="trained on base .*tiny-base.* not on .*other-base"):
        other.load_adapter(saved_adapter)


def test_tampered_or_truncated_weights_are_refused(saved_adapter, tiny_base):
    weights = saved_adapter / "adapter.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(StyleDropError, match="checksum does not match"):
        tiny_base.load_adapter(saved_adapter)


def test_pickle_renamed_to_safetensors_is_refused_without_unpickling(saved_adapter, tiny_base):
    import pickle

    weights = saved_adapter / "adapter.safetensors"
    weights.write_bytes(pickle.dumps({"x": 1}))
    card = json.loads((saved_adapter / "adapter_config.json").read_text())
    card["weights_sha256"] = ""  # even without the checksum, the safetensors reader must refuse it
    (saved_adapter / "adapter_config.json").write_text(json.dumps(card))
    with pytest.raises(StyleDropError, match="not a valid safetensors file"):
        tiny_base.load_adapter(saved_adapter)


def test_missing_keys_are_refused(saved_adapter, tiny_base):
    from safetensors.torch import load_file, save_file

    weights = saved_adapter / "adapter.safetensors"
    state = load_file(weights)
    state.pop(sorted(state)[0])
    save_file(state, weights)
    card = json.loads((saved_adapter / "adapter_config.json").read_text())
    card["weights_sha256"] = ""
    (saved_adapter / "adapter_config.json").write_text(json.dumps(card))
    with pytest.raises(StyleDropError, match="missing"):
        tiny_base.load_adapter(saved_adapter)


@pytest.mark.parametrize("text, message", [("{not json", "not valid JSON"), ('{"format_version": 1}', "malformed")])
def test_malformed_config_is_refused(saved_adapter, tiny_base, text, message):
    (saved_adapter / "adapter_config.json").write_text(text)
    with pytest.raises(StyleDropError, match=message):
        tiny_base.load_adapter(saved_adapter)


def test_config_validation():
    with pytest.raises(StyleDropError, match="--rank"):
        AdapterConfig(rank=0)
    with pytest.raises(StyleDropError, match="placements"):
        AdapterConfig(placements=("self_attn",))
    assert AdapterConfig.from_dict(AdapterConfig(rank=7).to_dict()) == AdapterConfig(rank=7)
