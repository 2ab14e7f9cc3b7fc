import numpy as np
import pytest
from PIL import Image

from styledrop.errors import StyleDropError
from styledrop.images import grid, load_image, to_pil, to_tensor


def test_transparency_is_composited_on_white(tmp_path):
    rgba = Image.new("RGBA", (16, 16), (255, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (0, 0, 8, 16))
    rgba.save(tmp_path / "a.png")
    image = np.asarray(load_image(tmp_path / "a.png"))
    assert image[0, 0].tolist() == [0, 0, 255] and image[0, 15].tolist() == [255, 255, 255]


def test_exif_rotation_is_honoured(tmp_path):
    wide = Image.new("RGB", (40, 20), (0, 128, 0))
    exif = wide.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees on display
    wide.save(tmp_path / "r.jpg", exif=exif)
    assert load_image(tmp_path / "r.jpg").size == (20, 40)


def test_animated_gif_uses_the_first_frame(tmp_path):
    frames = [Image.new("RGB", (16, 16), c) for c in [(255, 0, 0), (0, 255, 0)]]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    assert np.asarray(load_image(tmp_path / "a.gif"))[0, 0].tolist() == [255, 0, 0]


def test_sixteen_bit_grayscale_is_scaled(tmp_path):
    Image.fromarray(np.full((16, 16), 65535, dtype=np.uint16)).save(tmp_path / "g.png")
    assert np.asarray(load_image(tmp_path / "g.png"))[0, 0].tolist() == [255, 255, 255]


def test_tiny_images_are_refused(tmp_path):
    Image.new("RGB", (1, 1)).save(tmp_path / "dot.png")
    with pytest.raises(StyleDropError, match="dot.png: image is 1x1"):
        load_image(tmp_path / "dot.png")


def test_tensor_round_trip_and_grid():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8))
    assert np.array_equal(np.asarray(to_pil(to_tensor(image))), np.asarray(image))
    assert grid([image] * 5, columns=3, pad=1).size == (3 * 9 + 1, 2 * 9 + 1)
