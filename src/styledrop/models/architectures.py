"""The full-size aMUSEd architectures, buildable with random weights (for speed and memory benchmarks: the
cost of a step does not depend on the weights' values, and real weights cannot be downloaded everywhere).

The configs are those of the published checkpoints as diffusers' `scripts/convert_amused.py` builds them:
the 256 model works on a 16x16 token grid; the 512 model on 32x32 tokens, which its 2x2 down/up stage
turns into a 16x16 grid for the 22 transformer layers. Both use the VQ-GAN below and CLIP ViT-L/14's text
tower with its projection.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from .amused import AmusedBase, quiet_hub_libraries
from .tiny import write_tokenizer
from .uvit import UViT, UViTConfig

ARCHITECTURES = {
    "amused-256": UViTConfig(sample_size=16),
    "amused-512": UViTConfig(sample_size=32, downsample=True, upsample=True),
}
VQ_GAN = dict(
    act_fn="silu",
    block_out_channels=(128, 256, 256, 512, 768),  # five blocks: 16x downsampling
    down_block_types=("DownEncoderBlock2D",) * 5,
    up_block_types=("UpDecoderBlock2D",) * 5,
    in_channels=3,
    out_channels=3,
    latent_channels=64,
    layers_per_block=2,
    norm_num_groups=32,
    num_vq_embeddings=8192,
    mid_block_add_attention=False,
    lookup_from_codebook=True,
)
CLIP_L_TEXT = dict(
    vocab_size=49408,
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=12,
    max_position_embeddings=77,
    projection_dim=768,
)


def random_base(name: str, seed: int = 0) -> AmusedBase:
    """An aMUSEd architecture (a key of ARCHITECTURES) with random weights, in memory, frozen, fp32."""
    from diffusers import VQModel
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer

    quiet_hub_libraries()
    config = ARCHITECTURES[name]
    torch.manual_seed(seed)
    transformer = UViT(config)
    vqvae = VQModel(**VQ_GAN, sample_size=config.sample_size * 16)
    text_encoder = CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_L_TEXT))
    with tempfile.TemporaryDirectory() as folder:
        write_tokenizer(Path(folder))
        tokenizer = CLIPTokenizer.from_pretrained(folder)
    return AmusedBase(transformer, vqvae, text_encoder, tokenizer, source=f"random:{name}")
