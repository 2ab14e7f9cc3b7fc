import pytest
import torch
from conftest import randomize_
from diffusers import UVit2DModel, VQModel
from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer

from styledrop.errors import StyleDropError
from styledrop.models.amused import config_fingerprint, load_base
from styledrop.models.tiny import write_tokenizer


@pytest.fixture(scope="module")
def diffusers_saved(tmp_path_factory):
    """A tiny aMUSEd folder written by diffusers'/transformers' own save_pretrained."""
    root = tmp_path_factory.mktemp("diffusers-saved")
    write_tokenizer(root / "raw-tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(root / "raw-tokenizer")
    tokenizer.save_pretrained(root / "tokenizer")
    text = CLIPTextModelWithProjection(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=24,
            intermediate_size=48,
            num_hidden_layers=2,
            num_attention_heads=2,
            projection_dim=16,
            max_position_embeddings=77,
            bos_token_id=len(tokenizer) - 2,
            eos_token_id=len(tokenizer) - 1,
            pad_token_id=len(tokenizer) - 1,
        )
    )
    text.save_pretrained(root / "text_encoder")
    vq = VQModel(
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        vq_embed_dim=4,
        num_vq_embeddings=32,
        norm_num_groups=4,
        lookup_from_codebook=True,
    )
    vq.save_pretrained(root / "vqvae")
    transformer = UVit2DModel(
        hidden_size=32,
        cond_embed_dim=16,
        micro_cond_encode_dim=4,
        micro_cond_embed_dim=20,
        encoder_hidden_size=24,
        vocab_size=33,
        codebook_size=32,
        in_channels=12,
        block_out_channels=16,
        num_res_blocks=1,
        downsample=True,
        upsample=True,
        block_num_heads=2,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=48,
        sample_size=8,
    ).eval()
    randomize_(transformer)
    transformer.save_pretrained(root / "transformer")
    return root, transformer, vq


def test_loads_a_folder_saved_by_diffusers(diffusers_saved):
    root, reference, reference_vq = diffusers_saved
    base = load_base(str(root))
    assert base.resolution == 16 and base.mask_id == 32
    cond = base.condition(["a red square in striped style", ""])
    tokens = torch.randint(0, 33, (2, 8, 8), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = reference(tokens, cond.hidden, cond.pooled, cond.micro)
    got = base.logits(tokens, cond)
    assert (got - expected.flatten(2).transpose(1, 2)).abs().max().item() <= 1e-5
    codes = torch.randint(0, 32, (2, 8, 8), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        pixels = reference_vq.decode(codes.flatten(), force_not_quantize=True, shape=(2, 8, 8, 4)).sample.clamp(0, 1)
    torch.testing.assert_close(base.decode_tokens(codes), pixels)


def test_encode_decode_shapes(tiny_base):
    pixels = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    tokens = tiny_base.encode_images(pixels)
    assert tokens.shape == (2, 8, 8) and tokens.max() < tiny_base.config.codebook_size
    assert tiny_base.decode_tokens(tokens).shape == (2, 3, 32, 32)


def test_text_conditioning_is_the_penultimate_layer_and_projection(tiny_base):
    hidden, pooled = tiny_base.encode_text(["a house"])
    ids = tiny_base.tokenizer(["a house"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    out = tiny_base.text_encoder(ids, output_hidden_states=True)
    torch.testing.assert_close(hidden, out.hidden_states[-2])
    torch.testing.assert_close(pooled, out.text_embeds)


def test_fingerprint_depends_on_architecture(tiny_base_dir, other_base_dir):
    a, b = load_base(str(tiny_base_dir)), load_base(str(other_base_dir))
    assert a.identity.fingerprint == config_fingerprint(a.config) != b.identity.fingerprint


@pytest.mark.parametrize(
    "name, message",
    [
        ("/nonexistent/folder", "not a model folder and not a hub id"),
        ("no-such-owner/no-such-model", "cannot load from the hub or its cache"),
    ],
)
def test_unknown_base_is_one_clear_error(name, message, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(StyleDropError, match=message):
        load_base(name)


def test_folder_without_the_amused_layout_is_refused(tmp_path):
    (tmp_path / "transformer").mkdir()
    with pytest.raises(StyleDropError, match="missing vqvae/, text_encoder/, tokenizer/"):
        load_base(str(tmp_path))


def test_pickle_only_transformer_is_refused(tiny_base_dir, tmp_path):
    import shutil

    copy = tmp_path / "base"
    shutil.copytree(tiny_base_dir, copy)
    weights = copy / "transformer" / "diffusion_pytorch_model.safetensors"
    weights.rename(weights.with_suffix(".bin"))
    with pytest.raises(StyleDropError, match="only safetensors"):
        load_base(str(copy))


def test_word_tokenizer_makes_each_word_one_token(tmp_path):
    words = ("a", "in", "style", "green", "red", "striped", "star", "style", "checkered", "hatched")
    write_tokenizer(tmp_path, words, max_length=16)
    tokenizer = CLIPTokenizer.from_pretrained(tmp_path)
    for word in words:
        assert len(tokenizer(word).input_ids) == 3, word  # start, the word, end
    assert len(tokenizer("a green star in striped style").input_ids) == 8


def test_the_recorded_toy_source_resolves_like_no_base(monkeypatch, tmp_path):
    import styledrop.models.amused as amused

    monkeypatch.setattr(amused, "TOY_BASE", tmp_path / "not-built")
    for name in (None, amused.TOY_SOURCE):
        with pytest.raises(StyleDropError, match="toy base is not built yet"):
            amused.resolve_base(name)
    (tmp_path / "not-built" / "transformer").mkdir(parents=True)
    assert amused.resolve_base(amused.TOY_SOURCE) == (tmp_path / "not-built", amused.TOY_SOURCE)
