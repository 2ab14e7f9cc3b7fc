"""The aMUSEd U-ViT, written for this project.

It reads the checkpoints of diffusers' `UVit2DModel` unchanged: same config keys, same parameter names, the
512 model's 2x2 down/up-sampling included. Unlike upstream it checkpoints gradients with explicit positional
arguments (upstream crashes there, diffusers issue 11214) and always uses PyTorch's fused attention.

Shapes: B batch, h x w token grid, N = h*w tokens, C block channels, D transformer width, T text tokens.

A `memo` dict passed to `UViT.forward` keeps everything computed from the text and pooled conditioning alone
(the projected text, the pooled condition, every cross-attention's keys and values): a sampler passes the same
dict at every decoding step of one call, whose conditioning does not change, and computes them once.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

# Ours, not upstream's: their off values.
EXTENSIONS = {"position_embedding": False, "full_resolution_blocks": 0, "rotary_positions": False}


@dataclass(frozen=True)
class UViTConfig:
    """Config keys and defaults of diffusers' `UVit2DModel` (the aMUSEd-256 transformer)."""

    hidden_size: int = 1024
    use_bias: bool = False
    hidden_dropout: float = 0.0
    cond_embed_dim: int = 768
    micro_cond_encode_dim: int = 256
    micro_cond_embed_dim: int = 1280
    encoder_hidden_size: int = 768
    vocab_size: int = 8256
    codebook_size: int = 8192
    in_channels: int = 768
    block_out_channels: int = 768
    num_res_blocks: int = 3
    downsample: bool = False
    upsample: bool = False
    block_num_heads: int = 12
    num_hidden_layers: int = 22
    num_attention_heads: int = 16
    attention_dropout: float = 0.0
    intermediate_size: int = 2816
    layer_norm_eps: float = 1e-6
    ln_elementwise_affine: bool = True
    sample_size: int = 64
    # Not in upstream (whose checkpoints lack the key, so it stays off for them): a learned embedding of each
    # token's position. Upstream's only positional signal is the zero padding of its 3x3 convs, so an all-masked
    # interior looks the same everywhere; measured in the shapes world, a small U-ViT without it drew the asked
    # shape 43% of the time after 12k steps.
    position_embedding: bool = False
    # Also not in upstream: ConvNeXt blocks at the token grid's own resolution, before the 2x2 downsampling and
    # after the upsampling, joined by a skip. Without them, a token's neighbours reach its prediction only
    # through the squeeze of four tokens into one transformer cell.
    full_resolution_blocks: int = 0
    # Also not in upstream: rotary position in the transformer's self-attention, so that how much a token attends
    # to another depends on their offset on the grid (`rotary_tables`), the same everywhere, as a periodic fill is.
    rotary_positions: bool = False

    def __post_init__(self):
        if self.hidden_size % self.num_attention_heads:
            raise ValueError("hidden_size must be divisible by num_attention_heads")
        if self.block_out_channels % self.block_num_heads:
            raise ValueError("block_out_channels must be divisible by block_num_heads")
        if self.vocab_size <= self.codebook_size:
            raise ValueError("vocab_size must exceed codebook_size (the mask token lives above the codebook)")
        if self.micro_cond_embed_dim % self.micro_cond_encode_dim:
            raise ValueError("micro_cond_embed_dim must be a multiple of micro_cond_encode_dim")
        if self.rotary_positions and (self.hidden_size // self.num_attention_heads) % 8:
            raise ValueError("rotary_positions needs a head width (hidden_size / num_attention_heads) divisible by 8")
        if self.full_resolution_blocks and not (self.downsample and self.upsample):
            raise ValueError("full_resolution_blocks needs downsample and upsample (without them every block is)")

    @classmethod
    def from_dict(cls, config: dict) -> UViTConfig:
        """Build from a diffusers `config.json`, ignoring its bookkeeping keys (`_class_name`, ...)."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in config.items() if k in known})

    def to_dict(self) -> dict:
        """The keys diffusers writes, plus our extensions only where switched on: an upstream config reads and
        writes as upstream's, and the fingerprints of adapters trained on it stay what they were."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in EXTENSIONS or v != EXTENSIONS[k]}

    @property
    def mask_token_id(self) -> int:
        return self.vocab_size - 1

    @property
    def token_grid(self) -> int:
        """Side of the token grid the transformer is trained on (the VQ latent side)."""
        return self.sample_size


class RMSNorm(nn.Module):
    """RMS norm over the last dim, statistics in fp32; optional elementwise scale (and bias)."""

    def __init__(self, dim: int, eps: float, affine: bool = True, bias: bool = False):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim)) if affine else None
        self.bias = nn.Parameter(torch.zeros(dim)) if affine and bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        variance = x.float().pow(2).mean(-1, keepdim=True)
        x = (x * torch.rsqrt(variance + self.eps)).to(x.dtype)
        if self.weight is not None:
            x = x * self.weight
        if self.bias is not None:
            x = x + self.bias
        return x


def channels_last_norm(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a last-dim norm to a (B, C, H, W) map."""
    return norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class AdaNorm(nn.Module):
    """Norm whose scale and shift come from the pooled conditioning (diffusers' AdaLayerNormContinuous)."""

    def __init__(self, dim: int, cond_dim: int, eps: float, affine: bool, bias: bool, kind: str):
        super().__init__()
        self.linear = nn.Linear(cond_dim, 2 * dim, bias=bias)
        if kind == "rms_norm":
            self.norm = RMSNorm(dim, eps, affine)
        else:
            self.norm = nn.LayerNorm(dim, eps, elementwise_affine=affine, bias=bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, shift = self.linear(F.silu(cond).to(x.dtype)).chunk(2, dim=1)
        return self.norm(x) * (1 + scale[:, None]) + shift[:, None]


class Attention(nn.Module):
    """Multi-head (cross-)attention on PyTorch's fused scaled_dot_product_attention."""

    def __init__(self, dim: int, heads: int, kv_dim: int | None = None, bias: bool = False, out_bias: bool = False):
        super().__init__()
        kv_dim = kv_dim or dim
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=bias)
        self.to_k = nn.Linear(kv_dim, dim, bias=bias)
        self.to_v = nn.Linear(kv_dim, dim, bias=bias)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim, bias=out_bias)])

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        memo: dict | None = None,
        rotary: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Self-attention (context None) or cross-attention to context, whose keys and values go in memo.
        rotary: `rotary_tables` of x's positions, for self-attention."""
        q = self._split_heads(self.to_q(x))
        if context is None:
            k, v = self.keys_values(x)
        else:
            k, v = memoised(memo, self, lambda: self.keys_values(context))
        if rotary is not None:
            q, k = rotate(q, *rotary), rotate(k, *rotary)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, N, D/heads)
        return self.to_out[0](out.transpose(1, 2).flatten(2))

    def keys_values(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._split_heads(self.to_k(context)), self._split_heads(self.to_v(context))

    def _split_heads(self, t: torch.Tensor) -> torch.Tensor:
        return t.unflatten(-1, (self.heads, -1)).transpose(1, 2)


def rotary_tables(h: int, w: int, head_dim: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin), each (h*w, head_dim // 2): the angle by which each position turns each pair of channels.

    Pair j turns with the position's projection on one of 4 directions (0, 45, 90, 135 degrees) at one of
    head_dim // 8 periods from 2 tokens to twice the grid's side, so a query-key product depends on the two
    positions' offset alone, along oblique directions too (a mixed 2D rotary embedding, not the axial one)."""
    pairs = head_dim // 2
    directions = torch.arange(4, dtype=torch.float32, device=device) * math.pi / 4
    periods = torch.logspace(1, math.log2(2 * max(h, w)), pairs // 4, base=2, device=device)
    freqs = 2 * math.pi / periods[:, None]  # (pairs // 4, 1)
    fy, fx = (freqs * torch.sin(directions)).flatten(), (freqs * torch.cos(directions)).flatten()  # (pairs,)
    y, x = torch.meshgrid(
        torch.arange(h, dtype=torch.float32, device=device),
        torch.arange(w, dtype=torch.float32, device=device),
        indexing="ij",
    )
    angles = y.flatten()[:, None] * fy + x.flatten()[:, None] * fx  # (h*w, pairs)
    return torch.cos(angles), torch.sin(angles)


def rotate(t: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Turn each (first half, second half) channel pair of t (B, heads, N, head_dim) by its position's angles."""
    a, b = t.chunk(2, dim=-1)
    cos, sin = cos.to(t.dtype), sin.to(t.dtype)
    return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)


def memoised(memo: dict | None, owner: nn.Module, make: Callable):
    """make(), computed once per memo for `owner` (a module: its result depends on the conditioning only)."""
    if memo is None:
        return make()
    if owner not in memo:
        memo[owner] = make()
    return memo[owner]


class GEGLU(nn.Module):
    def __init__(self, dim: int, inner: int, bias: bool):
        super().__init__()
        self.proj = nn.Linear(dim, 2 * inner, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, gate = self.proj(x).chunk(2, dim=-1)
        return x * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim: int, inner: int, bias: bool, dropout: float):
        super().__init__()
        # Indices match upstream (net.0 = GEGLU, net.1 = dropout, net.2 = out) so checkpoints load as they are.
        self.net = nn.Sequential(GEGLU(dim, inner, bias), nn.Dropout(dropout), nn.Linear(inner, dim, bias=bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TransformerLayer(nn.Module):
    """Self-attention, cross-attention to the text, gated MLP; each with a conditioned pre-norm.

    StyleDrop's adapters hook the outputs of `attn2` (cross-attention) and `ff` (MLP), before their residual add.
    """

    def __init__(self, cfg: UViTConfig):
        super().__init__()
        d, eps, aff, bias = cfg.hidden_size, cfg.layer_norm_eps, cfg.ln_elementwise_affine, cfg.use_bias
        self.norm1 = AdaNorm(d, d, eps, aff, bias, "rms_norm")
        self.attn1 = Attention(d, cfg.num_attention_heads, bias=bias, out_bias=bias)
        self.norm2 = AdaNorm(d, d, eps, aff, bias, "rms_norm")
        self.attn2 = Attention(d, cfg.num_attention_heads, kv_dim=d, bias=bias, out_bias=bias)
        self.norm3 = AdaNorm(d, d, eps, aff, bias, "layer_norm")
        self.ff = FeedForward(d, cfg.intermediate_size, bias, cfg.hidden_dropout)

    def forward(
        self,
        x: torch.Tensor,
        text: torch.Tensor,
        cond: torch.Tensor,
        memo: dict | None = None,
        rotary: tuple[torch.Tensor, torch.Tensor] | None = None,  # rotary_tables of x's positions
    ) -> torch.Tensor:
        x = x + self.attn1(self.norm1(x, cond), rotary=rotary)
        x = x + self.attn2(self.norm2(x, cond), text, memo)
        return x + self.ff(self.norm3(x, cond))


class ConvNextBlock(nn.Module):
    def __init__(self, channels: int, cfg: UViTConfig, expansion: int = 4):
        super().__init__()
        inner, bias = channels * expansion, cfg.use_bias
        self.depthwise = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=bias)
        self.norm = RMSNorm(channels, cfg.layer_norm_eps, cfg.ln_elementwise_affine)
        self.channelwise_linear_1 = nn.Linear(channels, inner, bias=bias)
        self.channelwise_norm = GlobalResponseNorm(inner)
        self.channelwise_linear_2 = nn.Linear(inner, channels, bias=bias)
        self.channelwise_dropout = nn.Dropout(cfg.hidden_dropout)
        self.cond_embeds_mapper = nn.Linear(cfg.hidden_size, 2 * channels, bias=bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.depthwise(x).permute(0, 2, 3, 1))
        h = self.channelwise_linear_2(self.channelwise_norm(F.gelu(self.channelwise_linear_1(h))))
        x = x + self.channelwise_dropout(h).permute(0, 3, 1, 2)
        scale, shift = self.cond_embeds_mapper(F.silu(cond)).chunk(2, dim=1)
        return x * (1 + scale[:, :, None, None]) + shift[:, :, None, None]


class GlobalResponseNorm(nn.Module):
    """ConvNeXt-V2 GRN over a channels-last (B, H, W, C) map."""

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gx = torch.linalg.vector_norm(x, dim=(1, 2), keepdim=True)
        nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
        return self.gamma * (x * nx) + self.beta + x


class ConvAttentionBlock(nn.Module):
    """Two cross-attentions to the text on the conv feature map (upstream's SkipFFTransformerBlock)."""

    def __init__(self, channels: int, cfg: UViTConfig):
        super().__init__()
        bias = cfg.use_bias
        self.kv_mapper = nn.Linear(cfg.hidden_size, channels, bias=bias) if cfg.hidden_size != channels else None
        self.norm1 = RMSNorm(channels, 1e-6)
        self.attn1 = Attention(channels, cfg.block_num_heads, kv_dim=channels, bias=bias, out_bias=bias)
        self.norm2 = RMSNorm(channels, 1e-6)
        self.attn2 = Attention(channels, cfg.block_num_heads, kv_dim=channels, bias=bias, out_bias=bias)

    def forward(self, x: torch.Tensor, text: torch.Tensor, memo: dict | None = None) -> torch.Tensor:
        if self.kv_mapper is not None:
            text = memoised(memo, self, lambda: self.kv_mapper(F.silu(text)))
        x = x + self.attn1(self.norm1(x), text, memo)
        return x + self.attn2(self.norm2(x), text, memo)


class Resample(nn.Module):
    """RMS norm then a 2x2 stride-2 conv (down) or transposed conv (up): the 512 model's extra stage."""

    def __init__(self, channels: int, cfg: UViTConfig, up: bool):
        super().__init__()
        self.norm = RMSNorm(channels, cfg.layer_norm_eps, cfg.ln_elementwise_affine)
        conv = nn.ConvTranspose2d if up else nn.Conv2d
        self.conv = conv(channels, channels, kernel_size=2, stride=2, bias=cfg.use_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(channels_last_norm(self.norm, x))


class UViTBlock(nn.Module):
    def __init__(self, cfg: UViTConfig, downsample: bool, upsample: bool):
        super().__init__()
        c = cfg.block_out_channels
        self.downsample = Resample(c, cfg, up=False) if downsample else None
        self.res_blocks = nn.ModuleList(ConvNextBlock(c, cfg) for _ in range(cfg.num_res_blocks))
        self.attention_blocks = nn.ModuleList(ConvAttentionBlock(c, cfg) for _ in range(cfg.num_res_blocks))
        self.upsample = Resample(c, cfg, up=True) if upsample else None

    def forward(self, x: torch.Tensor, text: torch.Tensor, cond: torch.Tensor, memo: dict | None = None):
        if self.downsample is not None:
            x = self.downsample(x)
        for res_block, attention_block in zip(self.res_blocks, self.attention_blocks, strict=True):
            x = res_block(x, cond)
            b, c, h, w = x.shape
            x = attention_block(x.flatten(2).transpose(1, 2), text, memo)
            x = x.transpose(1, 2).reshape(b, c, h, w)
        if self.upsample is not None:
            x = self.upsample(x)
        return x


class ConvEmbed(nn.Module):
    def __init__(self, cfg: UViTConfig):
        super().__init__()
        self.embeddings = nn.Embedding(cfg.vocab_size, cfg.in_channels)
        self.layer_norm = RMSNorm(cfg.in_channels, cfg.layer_norm_eps, cfg.ln_elementwise_affine)
        self.conv = nn.Conv2d(cfg.in_channels, cfg.block_out_channels, 1, bias=cfg.use_bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.conv(self.layer_norm(self.embeddings(tokens)).permute(0, 3, 1, 2))


class CondEmbed(nn.Module):
    def __init__(self, in_dim: int, dim: int, bias: bool):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, dim, bias=bias)
        self.linear_2 = nn.Linear(dim, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))


class ConvMlmLayer(nn.Module):
    def __init__(self, cfg: UViTConfig):
        super().__init__()
        self.conv1 = nn.Conv2d(cfg.block_out_channels, cfg.in_channels, 1, bias=cfg.use_bias)
        self.layer_norm = RMSNorm(cfg.in_channels, cfg.layer_norm_eps, cfg.ln_elementwise_affine)
        self.conv2 = nn.Conv2d(cfg.in_channels, cfg.codebook_size, 1, bias=cfg.use_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(channels_last_norm(self.layer_norm, self.conv1(x)))


def sinusoidal_embedding(values: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """(M,) scalars -> (M, dim) [cos | sin] features, as aMUSEd embeds its micro-conditioning."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=values.device) / half)
    angles = values.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


class UViT(nn.Module):
    """Predicts codebook logits for every image token from masked tokens, text and micro-conditioning."""

    def __init__(self, config: UViTConfig):
        super().__init__()
        cfg = self.config = config
        bias = cfg.use_bias
        self.encoder_proj = nn.Linear(cfg.encoder_hidden_size, cfg.hidden_size, bias=bias)
        self.encoder_proj_layer_norm = RMSNorm(cfg.hidden_size, cfg.layer_norm_eps, cfg.ln_elementwise_affine)
        self.embed = ConvEmbed(cfg)
        if cfg.position_embedding:
            grid = (1, cfg.block_out_channels, cfg.sample_size, cfg.sample_size)
            self.position_embedding = nn.Parameter(torch.randn(grid) * 0.02)
        self.cond_embed = CondEmbed(cfg.micro_cond_embed_dim + cfg.cond_embed_dim, cfg.hidden_size, bias)
        if cfg.full_resolution_blocks:
            c, n = cfg.block_out_channels, cfg.full_resolution_blocks
            self.full_resolution_down = nn.ModuleList(ConvNextBlock(c, cfg) for _ in range(n))
            self.full_resolution_up = nn.ModuleList(ConvNextBlock(c, cfg) for _ in range(n))
        self.down_block = UViTBlock(cfg, downsample=cfg.downsample, upsample=False)
        self.project_to_hidden_norm = RMSNorm(cfg.block_out_channels, cfg.layer_norm_eps, cfg.ln_elementwise_affine)
        self.project_to_hidden = nn.Linear(cfg.block_out_channels, cfg.hidden_size, bias=bias)
        self.transformer_layers = nn.ModuleList(TransformerLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.project_from_hidden_norm = RMSNorm(cfg.hidden_size, cfg.layer_norm_eps, cfg.ln_elementwise_affine)
        self.project_from_hidden = nn.Linear(cfg.hidden_size, cfg.block_out_channels, bias=bias)
        self.up_block = UViTBlock(cfg, downsample=False, upsample=cfg.upsample)
        self.mlm_layer = ConvMlmLayer(cfg)
        self.gradient_checkpointing = False

    def forward(
        self,
        input_ids: torch.Tensor,  # (B, h, w) token ids, masked positions = mask_token_id
        encoder_hidden_states: torch.Tensor,  # (B, T, encoder_hidden_size) penultimate text states
        pooled_text_emb: torch.Tensor,  # (B, cond_embed_dim) pooled, projected text embedding
        micro_conds: torch.Tensor,  # (B, 5) [orig_w, orig_h, crop_top, crop_left, aesthetic]
        memo: dict | None = None,  # see the module's docstring
    ) -> torch.Tensor:
        """Returns logits (B, codebook_size, h, w), the layout of upstream's UVit2DModel."""
        text = memoised(
            memo, self.encoder_proj, lambda: self.encoder_proj_layer_norm(self.encoder_proj(encoder_hidden_states))
        )
        cond = memoised(memo, self.cond_embed, lambda: self._pooled_condition(pooled_text_emb, micro_conds))
        cond = cond.to(text.dtype)

        x = self.embed(input_ids)
        if self.config.position_embedding:
            x = x + self.position_embedding.to(x.dtype)
        full_resolution = self.config.full_resolution_blocks > 0
        if full_resolution:
            for block in self.full_resolution_down:
                x = block(x, cond)
            skip = x
        x = self.down_block(x, text, cond, memo)
        b, c, h, w = x.shape
        x = self.project_to_hidden(self.project_to_hidden_norm(x.permute(0, 2, 3, 1).reshape(b, h * w, c)))
        rotary = None
        if self.config.rotary_positions:
            head_dim = self.config.hidden_size // self.config.num_attention_heads
            rotary = memoised(memo, self.transformer_layers, lambda: rotary_tables(h, w, head_dim, x.device))
        for layer in self.transformer_layers:
            if self.gradient_checkpointing and torch.is_grad_enabled():
                x = checkpoint(layer, x, text, cond, None, rotary, use_reentrant=False)
            else:
                x = layer(x, text, cond, memo, rotary)
        x = self.project_from_hidden(self.project_from_hidden_norm(x))
        x = self.up_block(x.reshape(b, h, w, c).permute(0, 3, 1, 2), text, cond, memo)
        if full_resolution:
            x = x + skip
            for block in self.full_resolution_up:
                x = block(x, cond)
        return self.mlm_layer(x)

    def _pooled_condition(self, pooled_text_emb: torch.Tensor, micro_conds: torch.Tensor) -> torch.Tensor:
        micro = sinusoidal_embedding(micro_conds.flatten(), self.config.micro_cond_encode_dim)
        micro = micro.reshape(micro_conds.shape[0], -1)
        weight_dtype = self.cond_embed.linear_1.weight.dtype
        return self.cond_embed(torch.cat([pooled_text_emb, micro], dim=1).to(weight_dtype))

    def set_gradient_checkpointing(self, enabled: bool = True) -> None:
        self.gradient_checkpointing = enabled
