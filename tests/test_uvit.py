import pytest
import torch
from conftest import randomize_
from diffusers import UVit2DModel

from styledrop.models.uvit import UViT, UViTConfig, rotary_tables, rotate

SMALL = dict(
    hidden_size=32,
    cond_embed_dim=16,
    micro_cond_encode_dim=4,
    micro_cond_embed_dim=20,
    encoder_hidden_size=24,
    vocab_size=40,
    codebook_size=32,
    in_channels=12,
    block_out_channels=16,
    num_res_blocks=2,
    block_num_heads=2,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=48,
    sample_size=8,
)


def inputs(batch=3, side=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randint(0, 40, (batch, side, side), generator=g),
        torch.randn(batch, 7, 24, generator=g),
        torch.randn(batch, 16, generator=g),
        torch.tensor([[256.0, 256.0, 0.0, 0.0, 6.0], [512.0, 384.0, 12.0, 3.0, 6.0], [300.0, 300.0, 5.0, 5.0, 6.0]])[
            :batch
        ],
    )


@pytest.mark.parametrize("resample", [False, True], ids=["amused-256-layout", "amused-512-layout"])
@pytest.mark.parametrize("use_bias", [False, True])
def test_logits_equal_diffusers_uvit(resample, use_bias):
    config = dict(SMALL, downsample=resample, upsample=resample, use_bias=use_bias)
    reference = UVit2DModel(**config).eval()
    randomize_(reference)
    ours = UViT(UViTConfig.from_dict(dict(reference.config))).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    with torch.no_grad():
        expected = reference(*inputs())
        got = ours(*inputs())
    assert got.shape == expected.shape == (3, 32, 8, 8)
    assert (got - expected).abs().max().item() <= 1e-5


@pytest.mark.parametrize("rotary", [False, True])
def test_gradient_checkpointing_gives_the_same_gradients(rotary):
    model = UViT(UViTConfig.from_dict(dict(SMALL, rotary_positions=rotary)))
    randomize_(model, std=0.1)
    grads = []
    for checkpointing in (False, True):
        model.zero_grad()
        model.set_gradient_checkpointing(checkpointing)
        model(*inputs()).logsumexp(1).mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[0], grads[1])


def test_config_validation_and_bookkeeping_keys():
    config = UViTConfig.from_dict({"_class_name": "UVit2DModel", "_diffusers_version": "0.33.1", **SMALL})
    assert config.mask_token_id == 39
    with pytest.raises(ValueError, match="vocab_size"):
        UViTConfig.from_dict(dict(SMALL, vocab_size=32))


def test_position_embedding_tells_apart_positions_that_padding_cannot():
    # An all-masked grid: without position embeddings, interior positions (beyond the reach of the convs'
    # zero padding) get identical logits; with them, every position is its own.
    masked = torch.full((1, 8, 8), 39)
    _, text, pooled, micro = inputs(batch=1)
    for position_embedding, distinct in ((False, False), (True, True)):
        torch.manual_seed(0)
        model = UViT(UViTConfig.from_dict(dict(SMALL, num_res_blocks=1, position_embedding=position_embedding)))
        randomize_(model, std=0.1)
        with torch.no_grad():
            logits = model(masked, text, pooled, micro)[0]
        centre = logits[:, 3:5, 3:5].flatten(1)
        assert (centre.std(dim=1).max().item() > 1e-4) == distinct
    assert "position_embedding" in dict(model.named_parameters())
    assert not UViTConfig.from_dict(SMALL).position_embedding  # upstream configs lack the key


def test_memo_reuses_the_text_side_work_and_changes_nothing():
    model = UViT(UViTConfig.from_dict(dict(SMALL, downsample=True, upsample=True))).eval()
    randomize_(model)
    tokens, hidden, pooled, micro = inputs()
    calls = {"n": 0}
    model.transformer_layers[0].attn2.to_k.register_forward_hook(lambda *a: calls.__setitem__("n", calls["n"] + 1))
    memo: dict = {}
    with torch.no_grad():
        plain = model(tokens, hidden, pooled, micro)
        first = model(tokens, hidden, pooled, micro, memo=memo)
        other_tokens = model(tokens.flip(0), hidden, pooled, micro, memo=memo)
    assert calls["n"] == 2  # once without memo, once for both calls with it
    torch.testing.assert_close(first, plain, rtol=0, atol=0)
    with torch.no_grad():
        expected = model(tokens.flip(0), hidden, pooled, micro)
    torch.testing.assert_close(other_tokens, expected, rtol=0, atol=0)


def test_full_resolution_blocks_carry_neighbours_past_the_downsampling():
    # With the 8x8 path silenced (the upsampling's weights zeroed), the logits come from the full-resolution
    # blocks alone: a token's neighbour changes them, a token beyond the blocks' 5x5 reach does not (with their
    # global response norms, a statistic of the whole grid, switched off).
    config = UViTConfig.from_dict(dict(SMALL, downsample=True, upsample=True, full_resolution_blocks=1))
    model = UViT(config).eval()
    randomize_(model, std=0.1)
    torch.nn.init.zeros_(model.up_block.upsample.conv.weight)
    for block in (*model.full_resolution_down, *model.full_resolution_up):
        torch.nn.init.zeros_(block.channelwise_norm.gamma)
    tokens, text, pooled, micro = inputs(batch=1)
    with torch.no_grad():
        before = model(tokens, text, pooled, micro)[0, :, 4, 4]
        for position, reaches in (((4, 5), True), ((0, 0), False)):
            changed = tokens.clone()
            changed[0, position[0], position[1]] = (changed[0, position[0], position[1]] + 1) % 32
            after = model(changed, text, pooled, micro)[0, :, 4, 4]
            assert (after - before).abs().max().item() > 1e-6 if reaches else torch.equal(after, before)
    assert not UViTConfig.from_dict(SMALL).full_resolution_blocks  # upstream configs lack the key
    with pytest.raises(ValueError, match="full_resolution_blocks"):
        UViTConfig.from_dict(dict(SMALL, full_resolution_blocks=1))


def test_rotary_attention_scores_depend_on_the_offset_alone():
    # A query at p and a key at p + d score the same wherever p is, for oblique offsets too; offsets along
    # different directions score differently.
    side, head_dim = 6, 16
    cos, sin = rotary_tables(side, side, head_dim)
    q, k = torch.randn(2, 1, 1, 1, head_dim, generator=torch.Generator().manual_seed(0)).unbind(0)

    def score(p, d):
        i, j = p[0] * side + p[1], (p[0] + d[0]) * side + p[1] + d[1]
        return (rotate(q, cos[i], sin[i]) * rotate(k, cos[j], sin[j])).sum().item()

    for d in ((0, 1), (1, 1), (2, -1), (0, 0)):
        scores = [score(p, d) for p in ((0, 1), (2, 3), (3, 2))]
        assert max(scores) - min(scores) < 1e-4
    assert len({round(score((2, 2), d), 3) for d in ((0, 1), (1, 0), (1, 1), (1, -1))}) == 4


def test_rotary_positions_change_attention_not_parameters():
    plain = UViT(UViTConfig.from_dict(SMALL)).eval()
    randomize_(plain)
    rotary = UViT(UViTConfig.from_dict(dict(SMALL, rotary_positions=True))).eval()
    rotary.load_state_dict(plain.state_dict(), strict=True)
    with torch.no_grad():
        assert (rotary(*inputs()) - plain(*inputs())).abs().max().item() > 1e-4
    assert "rotary_positions" not in plain.config.to_dict()  # upstream configs lack the key
    assert UViTConfig.from_dict(rotary.config.to_dict()).rotary_positions
    with pytest.raises(ValueError, match="rotary_positions"):
        UViTConfig.from_dict(dict(SMALL, hidden_size=24, rotary_positions=True))  # head width 6
