"""Reading user images safely, converting between PIL and tensors, writing PNGs and grids atomically."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import StyleDropError
from .fileio import write_with

MIN_SIDE = 8


def load_image(path: str | Path) -> Image.Image:
    """Open any image Pillow reads as RGB: EXIF rotation honoured, transparency composited on white,
    first frame of an animation. Raises StyleDropError naming the file for anything unusable."""
    path = Path(path)
    if not path.is_file():
        raise StyleDropError(f"{path}: no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.seek(0)
                im.load()
                image = _to_rgb(ImageOps.exif_transpose(im))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise StyleDropError(f"{path}: image too large to decode safely ({e})") from None
    except UnidentifiedImageError:
        raise StyleDropError(f"{path}: not an image (or a format Pillow cannot read)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise StyleDropError(f"{path}: corrupt or truncated image ({e})") from None
    if min(image.size) < MIN_SIDE:
        raise StyleDropError(f"{path}: image is {image.width}x{image.height}, need at least {MIN_SIDE} pixels per side")
    return image


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "RGB" and "transparency" in im.info):
        im = im.convert("RGBA")
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, im).convert("RGB")
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(im, dtype=np.float64)
        im = Image.fromarray(np.clip(array / 257.0, 0, 255).astype(np.uint8))
    return im.convert("RGB")


def to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> (3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


def array_to_tensor(images: np.ndarray) -> torch.Tensor:
    """(n, H, W, 3) uint8 -> (n, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0


def to_pil(pixels: torch.Tensor) -> Image.Image:
    """(3, H, W) float in [0, 1] -> RGB PIL image."""
    array = (pixels.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
    return Image.fromarray(array)


def resize_shorter_side(image: Image.Image, size: int) -> Image.Image:
    w, h = image.size
    scale = size / min(w, h)
    return image.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.BICUBIC)


def center_square(image: Image.Image, size: int) -> torch.Tensor:
    """Resize the shorter side to `size` and crop the centre: (3, size, size) in [0, 1]."""
    resized = resize_shorter_side(image, size)
    left, top = (resized.width - size) // 2, (resized.height - size) // 2
    return to_tensor(resized.crop((left, top, left + size, top + size)))


def save_png(image: Image.Image, path: str | Path) -> None:
    write_with(path, lambda p: image.save(p, format="PNG"))


def grid(images: list[Image.Image], columns: int | None = None, pad: int = 2) -> Image.Image:
    """Tile equal-sized images into one picture, row-major, `columns` wide (default: near square)."""
    columns = columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    w, h = images[0].size
    sheet = Image.new("RGB", (columns * (w + pad) + pad, rows * (h + pad) + pad), (255, 255, 255))
    for i, im in enumerate(images):
        r, c = divmod(i, columns)
        sheet.paste(im, (pad + c * (w + pad), pad + r * (h + pad)))
    return sheet


def labelled_grid(images: list[Image.Image], labels: list[str], min_cell: int = 96, pad: int = 2) -> Image.Image:
    """A grid with one column per label and the label above each column; small images are enlarged (nearest
    neighbour, so pixels stay pixels) to `min_cell` so that the labels fit."""
    from PIL import ImageDraw

    columns = len(labels)
    scale = max(1, math.ceil(min_cell / images[0].width))
    cells = [im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST) for im in images]
    body = grid(cells, columns=columns, pad=pad)
    header = 14
    sheet = Image.new("RGB", (body.width, body.height + header), (255, 255, 255))
    sheet.paste(body, (0, header))
    draw = ImageDraw.Draw(sheet)
    w = cells[0].width
    for c, label in enumerate(labels):
        draw.text((pad + c * (w + pad) + 2, 2), label, fill=(0, 0, 0))
    return sheet
