"""Loading a CLIP model (transformers `CLIPModel`) for scoring, from a local folder or a hub id, safetensors only.

Preprocessing is read from the folder's `preprocessor_config.json` (size, crop, mean, std) and applied in
torch, so scoring never needs torchvision or PIL round trips.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import StyleDropError
from ..fileio import read_json
from .amused import HUB_ID

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
DEFAULT_CLIP = "openai/clip-vit-large-patch14"


@dataclass(frozen=True)
class Preprocess:
    """Resize the shorter side to `size`, centre-crop to `crop`, normalise."""

    size: int
    crop: int
    mean: tuple[float, ...] = OPENAI_MEAN
    std: tuple[float, ...] = OPENAI_STD

    @classmethod
    def from_folder(cls, folder: Path, image_size: int) -> Preprocess:
        path = folder / "preprocessor_config.json"
        if not path.is_file():
            return cls(image_size, image_size)
        d = read_json(path)
        size, crop = d.get("size", image_size), d.get("crop_size", image_size)
        size = size.get("shortest_edge", size.get("height")) if isinstance(size, dict) else size
        crop = crop.get("height") if isinstance(crop, dict) else crop
        return cls(int(size), int(crop), tuple(d.get("image_mean", OPENAI_MEAN)), tuple(d.get("image_std", OPENAI_STD)))

    def config(self) -> dict:
        """As `preprocessor_config.json` (the fields transformers' CLIPImageProcessor reads)."""
        return {
            "image_processor_type": "CLIPImageProcessor",
            "size": {"shortest_edge": self.size},
            "crop_size": {"height": self.crop, "width": self.crop},
            "image_mean": list(self.mean),
            "image_std": list(self.std),
        }

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, 3, crop, crop) normalised."""
        h, w = pixels.shape[-2:]
        if min(h, w) != self.size:
            scale = self.size / min(h, w)
            new = (max(self.size, round(h * scale)), max(self.size, round(w * scale)))
            pixels = F.interpolate(pixels, size=new, mode="bicubic", antialias=True, align_corners=False)
        top, left = (pixels.shape[-2] - self.crop) // 2, (pixels.shape[-1] - self.crop) // 2
        pixels = pixels[..., top : top + self.crop, left : left + self.crop].clamp(0, 1)
        mean = torch.tensor(self.mean, device=pixels.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=pixels.device).view(1, 3, 1, 1)
        return (pixels - mean) / std


def clip_folder(source: str | Path) -> Path:
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if not HUB_ID.match(str(source)):
        raise StyleDropError(f"--scorer {str(source)!r}: not a CLIP folder and not a hub id (owner/name)")
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "*.txt"]
    try:
        return Path(snapshot_download(str(source), allow_patterns=patterns))
    except Exception as e:  # offline, not found, network: one message
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StyleDropError(f"--scorer {str(source)!r}: cannot load from the hub or its cache ({reason})") from None


def load_clip(source: str | Path, device: str | torch.device = "cpu"):
    """-> (CLIPModel in eval mode, tokenizer, Preprocess)."""
    from transformers import CLIPModel, CLIPTokenizer

    folder = clip_folder(source)
    if not any(folder.glob("*.safetensors")):
        raise StyleDropError(f"--scorer {str(source)!r}: no safetensors weights (pickles are never loaded)")
    try:
        model = CLIPModel.from_pretrained(folder, use_safetensors=True).to(device).eval().requires_grad_(False)
        tokenizer = CLIPTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as e:
        raise StyleDropError(f"--scorer {str(source)!r}: not a CLIP model ({e})") from None
    return model, tokenizer, Preprocess.from_folder(folder, model.config.vision_config.image_size)
