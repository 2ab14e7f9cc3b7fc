"""An aMUSEd-format base model: VQ tokenizer, CLIP text tower, tokenizer, and our U-ViT.

The folder layout is that of the hub repos `amused/amused-256` and `amused/amused-512`:
`transformer/`, `vqvae/`, `text_encoder/`, `tokenizer/`, each with its config and safetensors weights.
This is the only module that imports diffusers/transformers model classes.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from ..adapters.config import AdapterCard, AdapterConfig, BaseIdentity
from ..adapters.inject import inject, layer_count_and_width
from ..adapters.io import load_adapter
from ..adapters.layer import Adapter, AdapterSet
from ..errors import StyleDropError
from ..fileio import read_json
from .uvit import UViT, UViTConfig

COMPONENTS = ("transformer", "vqvae", "text_encoder", "tokenizer")
TRANSFORMER_WEIGHTS = "diffusion_pytorch_model.safetensors"
AESTHETIC_SCORE = 6.0  # the micro-conditioning value aMUSEd samples with
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class Conditioning:
    """Per-row conditioning of the transformer."""

    hidden: torch.Tensor  # (B, T, E) penultimate CLIP text states
    pooled: torch.Tensor  # (B, P) pooled, projected CLIP text embedding
    micro: torch.Tensor  # (B, 5) [orig_w, orig_h, crop_top, crop_left, aesthetic]

    def __len__(self) -> int:
        return self.hidden.shape[0]

    def index(self, rows: torch.Tensor | slice) -> Conditioning:
        return Conditioning(self.hidden[rows], self.pooled[rows], self.micro[rows])

    def where(self, keep: torch.Tensor, other: Conditioning) -> Conditioning:
        """Row-wise choice: rows where keep (B,) is True come from self, the others from `other`."""
        return Conditioning(
            torch.where(keep[:, None, None], self.hidden, other.hidden),
            torch.where(keep[:, None], self.pooled, other.pooled),
            self.micro,
        )

    @staticmethod
    def cat(parts: list[Conditioning]) -> Conditioning:
        return Conditioning(*(torch.cat([getattr(p, f) for p in parts]) for f in ("hidden", "pooled", "micro")))


def config_fingerprint(config: UViTConfig) -> str:
    """Short hash of the transformer's architecture: adapters trained on one base refuse any other."""
    canonical = json.dumps(config.to_dict(), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class AmusedBase:
    """A frozen aMUSEd-format model with an AdapterSet hooked into its transformer."""

    def __init__(self, transformer: UViT, vqvae, text_encoder, tokenizer, source: str):
        self.transformer, self.vqvae, self.text_encoder, self.tokenizer = transformer, vqvae, text_encoder, tokenizer
        self.source = source
        for module in (transformer, vqvae, text_encoder):
            module.requires_grad_(False).eval()
        self.adapters = AdapterSet()
        inject(transformer, self.adapters)

    # -- identity and geometry ---------------------------------------------------------------------------
    @property
    def config(self) -> UViTConfig:
        return self.transformer.config

    @property
    def identity(self) -> BaseIdentity:
        return BaseIdentity(source=self.source, fingerprint=config_fingerprint(self.config))

    @property
    def device(self) -> torch.device:
        return self.transformer.embed.embeddings.weight.device

    @property
    def vq_scale(self) -> int:
        return 2 ** (len(self.vqvae.config.block_out_channels) - 1)

    @property
    def resolution(self) -> int:
        return self.config.token_grid * self.vq_scale

    @property
    def mask_id(self) -> int:
        return self.config.mask_token_id

    @property
    def num_layers_and_width(self) -> tuple[int, int]:
        return layer_count_and_width(self.transformer)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.transformer.parameters())

    # -- adapters ------------------------------------------------------------------------------------------
    def new_adapter(self, name: str, config: AdapterConfig, generator: torch.Generator | None = None) -> Adapter:
        """Create a fresh (identity) adapter sized for this base and add it under `name`."""
        adapter = Adapter(config, *self.num_layers_and_width, generator=generator).to(self.device)
        self.adapters.add(name, adapter)
        return adapter

    def load_adapter(self, folder, name: str | None = None) -> AdapterCard:
        """Load an adapter folder under `name` (default: the folder's name); refuses another base's adapter."""
        adapter, card = load_adapter(folder, *self.num_layers_and_width, self.identity)
        self.adapters.add(name or Path(folder).name, adapter.to(self.device))
        return card

    # -- conditioning --------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """prompts -> (hidden (B, T, E), pooled (B, P)), as aMUSEd conditions on them."""
        max_len = self.tokenizer.model_max_length
        ids = self.tokenizer(prompts, padding="max_length", truncation=True, max_length=max_len, return_tensors="pt")
        for prompt in prompts:
            if len(self.tokenizer(prompt, verbose=False).input_ids) > max_len:  # we warn, not transformers
                warnings.warn(
                    f"prompt longer than the text encoder's {max_len} tokens, truncated: {prompt[:60]!r}...",
                    stacklevel=2,
                )
        out = self.text_encoder(ids.input_ids.to(self.device), output_hidden_states=True)
        return out.hidden_states[-2], out.text_embeds

    def micro_conds(self, batch: int, orig_size: tuple[int, int] | None = None, crop: tuple[int, int] = (0, 0)):
        """(B, 5) micro-conditioning: original (width, height), crop (top, left), aesthetic score."""
        w, h = orig_size or (self.resolution, self.resolution)
        row = torch.tensor([w, h, crop[0], crop[1], AESTHETIC_SCORE], dtype=torch.float32, device=self.device)
        return row.expand(batch, -1).clone()

    def condition(self, prompts: list[str], micro: torch.Tensor | None = None) -> Conditioning:
        hidden, pooled = self.encode_text(prompts)
        return Conditioning(hidden, pooled, self.micro_conds(len(prompts)) if micro is None else micro)

    # -- image tokens ----------------------------------------------------------------------------------------
    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) images in [0, 1] -> (B, H/f, W/f) VQ token ids."""
        return vq_encode(self.vqvae, pixels)

    @torch.no_grad()
    def decode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, h, w) token ids -> (B, 3, h*f, w*f) images in [0, 1]."""
        b, h, w = tokens.shape
        shape = (b, h, w, self.vqvae.config.latent_channels)
        return self.vqvae.decode(tokens.reshape(-1), force_not_quantize=True, shape=shape).sample.clamp(0, 1).float()

    # -- the transformer ---------------------------------------------------------------------------------------
    def logits(self, tokens: torch.Tensor, cond: Conditioning, route=None, memo: dict | None = None) -> torch.Tensor:
        """(B, h, w) tokens -> (B, h*w, codebook) logits.

        route: None for the base alone, an adapter name for every row, or a name (or None) per row.
        memo: shared by calls with the same conditioning (the steps of one decoding), which then compute what
        depends on the text only once (uvit's docstring).
        """
        dtype = self.transformer.encoder_proj.weight.dtype
        with self.adapters.route(route):
            out = self.transformer(
                tokens, cond.hidden.to(dtype), cond.pooled.to(dtype), cond.micro.to(dtype), memo=memo
            )
        return out.flatten(2).transpose(1, 2)


@torch.no_grad()
def vq_encode(vqvae, pixels: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) images in [0, 1] -> (B, H/f, W/f) token ids of a diffusers VQModel, on its device."""
    pixels = pixels.to(vqvae.device, vqvae.dtype)
    latents = vqvae.encode(pixels).latents
    indices = vqvae.quantize(latents)[2][2]
    return indices.reshape(pixels.shape[0], latents.shape[2], latents.shape[3])


# -- loading ------------------------------------------------------------------------------------------------------
TOY_BASE = Path(__file__).resolve().parent.parent / "toyworld" / "assets" / "base"
TOY_SOURCE = "styledrop:toy"  # how adapter cards record the built-in base


def resolve_base(name_or_path: str | None) -> tuple[Path, str]:
    """A local folder or a hub id (None, or the TOY_SOURCE an adapter card records: the built-in toy base)
    -> (folder in the aMUSEd layout, source to record)."""
    if name_or_path in (None, TOY_SOURCE):
        if not (TOY_BASE / "transformer").is_dir():
            raise StyleDropError(
                "no --base given, and the built-in toy base is not built yet (styledrop build-toy-base)"
            )
        return TOY_BASE, TOY_SOURCE
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        folder, source = path, str(path.resolve())
    elif HUB_ID.match(name_or_path) and not path.exists():
        folder, source = _download(name_or_path), name_or_path
    else:
        raise StyleDropError(f"--base {name_or_path!r}: not a model folder and not a hub id (owner/name)")
    missing = [c for c in COMPONENTS if not (folder / c).is_dir()]
    if missing:
        raise StyleDropError(
            f"--base {name_or_path!r}: not an aMUSEd-format model, missing {', '.join(m + '/' for m in missing)}"
        )
    return folder, source


def _download(repo_id: str) -> Path:
    """Fetch (or find in the cache, honouring HF_HUB_OFFLINE) the files a base needs; never pickles."""
    from huggingface_hub import snapshot_download

    patterns = [f"{c}/*.json" for c in COMPONENTS] + [
        "transformer/*.safetensors",
        "vqvae/*.safetensors",
        "text_encoder/*.safetensors",
        "tokenizer/*",
        "model_index.json",
    ]
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except Exception as e:  # the hub client raises many types (offline, not found, network): one message
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StyleDropError(f"--base {repo_id!r}: cannot load from the hub or its cache ({reason})") from None


def quiet_hub_libraries() -> None:
    """Silence the per-file progress bars of diffusers/transformers: our commands show their own progress."""
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()


def load_transformer(folder: Path) -> UViT:
    config_path, weights_path = folder / "config.json", folder / TRANSFORMER_WEIGHTS
    if not weights_path.is_file():
        raise StyleDropError(f"{weights_path}: missing (only safetensors weights are loaded, never pickles)")
    raw = read_json(config_path)
    try:
        config = UViTConfig.from_dict(raw)
        state = load_file(weights_path)
    except (OSError, ValueError, TypeError) as e:
        raise StyleDropError(f"{folder}: unreadable transformer config or weights ({e})") from None
    model = UViT(config)
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise StyleDropError(
            f"{weights_path}: does not match its config "
            f"(missing {result.missing_keys[:3]}, unexpected {result.unexpected_keys[:3]})"
        )
    return model


def load_base(
    name_or_path: str | None = None, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> AmusedBase:
    """Load an aMUSEd-format base from a folder or hub id (None: the built-in toy base), frozen, with an empty
    AdapterSet attached."""
    from diffusers import VQModel
    from transformers import CLIPTextModelWithProjection, CLIPTokenizer

    quiet_hub_libraries()

    folder, source = resolve_base(name_or_path)
    transformer = load_transformer(folder / "transformer")
    try:
        vqvae = VQModel.from_pretrained(folder / "vqvae", use_safetensors=True)
        text_encoder = CLIPTextModelWithProjection.from_pretrained(folder / "text_encoder", use_safetensors=True)
        tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer")
    except (OSError, ValueError) as e:
        reason = str(e).strip().splitlines()[0]
        raise StyleDropError(
            f"--base {name_or_path!r}: cannot load its VQ model, text encoder or tokenizer ({reason})"
        ) from None
    transformer.to(device, dtype)
    text_encoder.to(device, dtype)
    vqvae.to(device)  # the VQ model stays fp32: its decoder is sensitive and cheap next to the transformer
    return AmusedBase(transformer, vqvae, text_encoder, tokenizer, source)
