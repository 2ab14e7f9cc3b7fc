"""A tiny random aMUSEd-format base, built here in seconds, for tests. Its images are noise; it exercises
every code path of a real base."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..fileio import write_json, write_with
from .uvit import UViT, UViTConfig

TINY_UVIT = UViTConfig(
    hidden_size=32,
    cond_embed_dim=32,
    micro_cond_encode_dim=8,
    micro_cond_embed_dim=40,
    encoder_hidden_size=32,
    vocab_size=65,
    codebook_size=64,
    in_channels=16,
    block_out_channels=32,
    num_res_blocks=1,
    block_num_heads=2,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    sample_size=8,
)


def bytes_to_unicode() -> dict[int, str]:
    """The byte -> printable-character map of byte-level BPE (GPT-2/CLIP), so every byte is a token."""
    printable = [("!", "~"), ("¡", "¬"), ("®", "ÿ")]
    keep = [b for first, last in printable for b in range(ord(first), ord(last) + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


def bpe(word: str, merges: list[tuple[str, str]]) -> list[str]:
    """The pieces CLIP's BPE makes of one word with these merges (lowest rank first)."""
    rank = {pair: i for i, pair in enumerate(merges)}
    pieces = list(word[:-1]) + [word[-1] + "</w>"]
    while len(pieces) > 1:
        pairs = [(rank.get((a, b), len(rank)), i) for i, (a, b) in enumerate(itertools.pairwise(pieces))]
        best, i = min(pairs)
        if best == len(rank):
            break
        pieces[i : i + 2] = [pieces[i] + pieces[i + 1]]
    return pieces


def write_tokenizer(folder: Path, words: tuple[str, ...] = (), max_length: int = 77) -> None:
    """A CLIP BPE tokenizer, valid and offline: every byte is a token, and each of `words` gets merges that
    join it into a single token (so a small closed vocabulary gives short prompts)."""
    alphabet = list(bytes_to_unicode().values())
    vocab = alphabet + [c + "</w>" for c in alphabet]
    merges: list[tuple[str, str]] = []
    # Merges apply by rank across all words, so one word's merge can cut another's chain: add merges for
    # whatever pieces are left until every word is one token (the added merges rank last, after the rest).
    for _ in range(8):
        pending = [pieces for w in words if len(pieces := bpe(w, merges)) > 1]
        if not pending:
            break
        for pieces in pending:
            merged = pieces[0]
            for piece in pieces[1:]:
                if (merged, piece) not in merges:
                    merges.append((merged, piece))
                    vocab.append(merged + piece)
                merged += piece
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    vocab = list(dict.fromkeys(vocab))
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "vocab.json", {tok: i for i, tok in enumerate(vocab)})
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges]
    write_with(folder / "merges.txt", lambda p: p.write_text("\n".join(lines) + "\n"))
    write_json(
        folder / "tokenizer_config.json",
        {
            "tokenizer_class": "CLIPTokenizer",
            "model_max_length": max_length,
            "bos_token": "<|startoftext|>",
            "eos_token": "<|endoftext|>",
            "unk_token": "<|endoftext|>",
            "pad_token": "<|endoftext|>",
            "do_lower_case": True,
        },
    )


def save_transformer(model: UViT, folder: Path) -> None:
    """Write our U-ViT in diffusers' UVit2DModel format (config.json + safetensors)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {"_class_name": "UVit2DModel", **model.config.to_dict()}
    write_json(folder / "config.json", config)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    write_with(folder / "diffusion_pytorch_model.safetensors", lambda p: save_file(state, str(p)))


def write_model_index(folder: Path) -> None:
    """The top-level file of an aMUSEd pipeline folder."""
    write_json(
        folder / "model_index.json", {"_class_name": "AmusedPipeline", "transformer": ["diffusers", "UVit2DModel"]}
    )


def build_tiny_base(folder: str | Path, seed: int = 0, uvit: UViTConfig = TINY_UVIT) -> Path:
    """Create a random aMUSEd-format base in `folder` (a 32x32-pixel, 8x8-token model) and return the folder."""
    from diffusers import VQModel
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    from .amused import quiet_hub_libraries

    quiet_hub_libraries()
    folder = Path(folder)
    torch.manual_seed(seed)
    write_tokenizer(folder / "tokenizer")
    vocab_size = len(json.loads((folder / "tokenizer" / "vocab.json").read_text()))
    text_config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=uvit.encoder_hidden_size,
        intermediate_size=2 * uvit.encoder_hidden_size,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=77,
        projection_dim=uvit.cond_embed_dim,
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
    )
    CLIPTextModelWithProjection(text_config).save_pretrained(folder / "text_encoder", safe_serialization=True)
    vq = VQModel(
        block_out_channels=(16, 32, 32),  # three blocks: 4x downsampling, 8x8 tokens <-> 32x32 pixels
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        layers_per_block=1,
        latent_channels=8,
        vq_embed_dim=8,
        num_vq_embeddings=uvit.codebook_size,
        norm_num_groups=8,
        sample_size=uvit.sample_size * 4,
        lookup_from_codebook=True,
        force_upcast=True,
    )
    _stretch_codebook(vq)
    vq.save_pretrained(folder / "vqvae", safe_serialization=True)
    save_transformer(UViT(uvit), folder / "transformer")
    write_model_index(folder)
    return folder


def _stretch_codebook(vq) -> None:
    # A random codebook is tiny next to random encoder outputs; widen it so random images use many codes.
    with torch.no_grad():
        vq.quantize.embedding.weight.normal_(0, 1)
