"""Write the bad-input corpus into tests/corpus/files/ (numpy and Pillow only, deterministic).

    python tests/corpus/make_corpus.py [FOLDER]

Every entry and its expected outcome is listed in tests/corpus/README.md; tests/test_corpus.py feeds each one
through the command line. Files are kept tiny: the whole folder is a few dozen KB.
"""

from __future__ import annotations

import io
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

FILES = Path(__file__).resolve().parent / "files"


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def noise(size: tuple[int, int], seed: int = 0) -> Image.Image:
    """RGB noise: compresses badly, so a file cut in half still has headers and half the pixel data."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def stripes(size: tuple[int, int], colours=((220, 40, 40), (250, 250, 250)), period: int = 8) -> Image.Image:
    """Diagonal stripes: a picture with structure that compresses well."""
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    on = ((x + y) // (period // 2)) % 2 == 0
    pixels = np.where(on[..., None], np.array(colours[0], np.uint8), np.array(colours[1], np.uint8))
    return Image.fromarray(pixels.astype(np.uint8))


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")


# -- images that must be refused -------------------------------------------------------------------------------
def empty() -> bytes:
    return b""


def truncated_png() -> bytes:
    data = encode(noise((64, 64)), "PNG")
    return data[: len(data) // 2]


def truncated_jpeg() -> bytes:
    data = encode(noise((64, 64), seed=1), "JPEG", quality=90)
    return data[: len(data) // 2]


def text_named_png() -> bytes:
    return b"This is a text file with a .png name, not an image.\n"


def bomb() -> bytes:
    """10000x10000 = 100M pixels, over Pillow's decompression-bomb warning limit (~89M): a few KB on disk."""
    return encode(Image.new("1", (10_000, 10_000), 0), "PNG", optimize=True)


def bomb_header_only() -> bytes:
    """A PNG header claiming 50000x50000 RGB (2.5G pixels, past Pillow's hard limit) and no real pixel data."""
    ihdr = (50_000).to_bytes(4, "big") + (50_000).to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def one_pixel() -> bytes:
    return encode(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG")


def thin_strip() -> bytes:
    """10000x4: plenty of pixels, but too thin to crop a training square from (needs 8 per side)."""
    return encode(stripes((10_000, 4)), "PNG")


def bad_crc_png() -> bytes:
    """A complete PNG whose pixel chunk has one byte flipped: its checksum no longer matches."""
    data = bytearray(encode(noise((32, 32), seed=2), "PNG"))
    idat = data.index(b"IDAT")
    data[idat + 4 + 10] ^= 0xFF
    return bytes(data)


def jpeg_markers_only() -> bytes:
    """JPEG start-of-image and end-of-image markers with nothing between them."""
    return b"\xff\xd8\xff\xd9"


# -- odd but valid images: each must train ---------------------------------------------------------------------
def wide() -> bytes:
    return encode(stripes((10_000, 50)), "PNG", optimize=True)


def rgba() -> bytes:
    """A red disc on a fully transparent background (composited on white when loaded)."""
    image = Image.new("RGBA", (48, 48), (0, 0, 0, 0))
    ImageDraw.Draw(image).ellipse([8, 8, 40, 40], fill=(220, 40, 40, 255))
    return encode(image, "PNG")


def la() -> bytes:
    """Grey-plus-alpha: a dark square, half transparent around it."""
    image = Image.new("LA", (48, 48), (0, 0))
    ImageDraw.Draw(image).rectangle([12, 12, 36, 36], fill=(30, 255))
    return encode(image, "PNG")


def palette_transparency() -> bytes:
    """Palette image whose index 0 is transparent (a tRNS chunk), as GIF-style PNGs are."""
    image = Image.new("P", (48, 48), 0)
    image.putpalette([0, 0, 0, 220, 40, 40, 40, 60, 160] + [0] * (256 - 3) * 3)
    draw = ImageDraw.Draw(image)
    draw.rectangle([8, 8, 40, 24], fill=1)
    draw.rectangle([8, 24, 40, 40], fill=2)
    return encode(image, "PNG", transparency=0)


def cmyk() -> bytes:
    return encode(stripes((48, 48)).convert("CMYK"), "JPEG", quality=90)


def gray16() -> bytes:
    """16-bit greyscale (mode I;16): a horizontal ramp over the full 0-65535 range."""
    ramp = np.tile(np.linspace(0, 65535, 48).round().astype(np.uint16), (48, 1))
    image = Image.fromarray(ramp)
    assert image.mode == "I;16", image.mode
    return encode(image, "PNG")


def gray8() -> bytes:
    return encode(stripes((48, 48)).convert("L"), "PNG")


def bilevel() -> bytes:
    return encode(stripes((48, 48)).convert("1"), "PNG")


def exif_rotated() -> bytes:
    """Stored 64 wide x 32 high with EXIF orientation 6 (rotate 90 degrees): it shows as 32 x 64."""
    image = stripes((64, 32))
    exif = image.getexif()
    exif[0x0112] = 6
    return encode(image, "JPEG", quality=90, exif=exif)


def animated_gif() -> bytes:
    """Three frames of different colours; the first (red) one is used."""
    frames = [Image.new("RGB", (40, 40), c) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def jpeg_named_png() -> bytes:
    """A JPEG behind a .png name: images are recognised by their content, not their extension."""
    return encode(stripes((48, 48)), "JPEG", quality=90)


def progressive_jpeg() -> bytes:
    return encode(stripes((48, 48)), "JPEG", quality=90, progressive=True)


# -- prompt files for `refine --prompts` ------------------------------------------------------------------------
def prompts_latin1() -> bytes:
    return "a caf\u00e9 at night\na house\n".encode("latin-1")


def prompts_utf16() -> bytes:
    """What Windows PowerShell's `>` writes: UTF-16 with a byte-order mark."""
    return "a cat\r\na dog\r\n".encode("utf-16")


def prompts_empty() -> bytes:
    return b""


def prompts_comments_only() -> bytes:
    return b"# content prompts for the round\n\n   \n\t\n  # nothing here yet\n"


def prompts_bom_comments_only() -> bytes:
    """UTF-8 with a byte-order mark (as Notepad saves it), blanks and comments only: still no prompts."""
    return "\ufeff# content prompts\n\n# none yet\n".encode()


ENTRIES: dict[str, Callable[[], bytes]] = {
    # refused images
    "empty.png": empty,
    "truncated.png": truncated_png,
    "truncated.jpg": truncated_jpeg,
    "text-named.png": text_named_png,
    "bomb-10000x10000.png": bomb,
    "bomb-header-only-50000x50000.png": bomb_header_only,
    "tiny-1x1.png": one_pixel,
    "thin-10000x4.png": thin_strip,
    "bad-crc.png": bad_crc_png,
    "jpeg-markers-only.jpg": jpeg_markers_only,
    # odd but valid images
    "wide-10000x50.png": wide,
    "rgba-transparent.png": rgba,
    "la-transparent.png": la,
    "palette-transparency.png": palette_transparency,
    "cmyk.jpg": cmyk,
    "gray16.png": gray16,
    "gray8.png": gray8,
    "bilevel.png": bilevel,
    "exif-rotated.jpg": exif_rotated,
    "animated.gif": animated_gif,
    "jpeg-named.png": jpeg_named_png,
    "progressive.jpg": progressive_jpeg,
    # prompt files
    "prompts-latin1.txt": prompts_latin1,
    "prompts-utf16.txt": prompts_utf16,
    "prompts-empty.txt": prompts_empty,
    "prompts-comments-only.txt": prompts_comments_only,
    "prompts-bom-comments-only.txt": prompts_bom_comments_only,
}


def build(folder: str | Path = FILES) -> list[Path]:
    """Write every entry into `folder` (removing files there that are no longer entries); returns the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.iterdir():
        if stale.is_file() and stale.name not in ENTRIES:
            stale.unlink()
    paths = []
    for name, make in ENTRIES.items():
        (folder / name).write_bytes(make())
        paths.append(folder / name)
    return paths


if __name__ == "__main__":
    written = build(sys.argv[1] if len(sys.argv) > 1 else FILES)
    total = sum(p.stat().st_size for p in written)
    print(f"wrote {len(written)} files, {total:,} bytes, to {written[0].parent}")
