"""Bounded fuzzing of everything that reads user files: images, prompts and prompt files, adapter folders.
Every input must either load or raise StyleDropError (one clear line); any other exception is a crash.

CI runs a small number of examples per target; a longer run is recorded by benchmarks/fuzz_loaders.py
(STYLEDROP_FUZZ_EXAMPLES sets the count).
"""

import hashlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from styledrop.adapters import AdapterConfig
from styledrop.adapters.config import AdapterCard
from styledrop.adapters.io import CONFIG_NAME, WEIGHTS_NAME, save_adapter
from styledrop.errors import StyleDropError
from styledrop.feedback.rounds import read_prompt_file
from styledrop.images import load_image
from styledrop.pipeline import check_prompts

EXAMPLES = int(os.environ.get("STYLEDROP_FUZZ_EXAMPLES", "60"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same examples every run: CI is reproducible
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def encoded(fmt: str, mode: str = "RGB", size=(24, 16)) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 255, (size[1], size[0], len(mode)), dtype=np.uint8)
    image = Image.fromarray(pixels if len(mode) > 1 else pixels[..., 0], mode if mode != "RGBA" else None)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


SEEDS = [encoded("PNG"), encoded("JPEG"), encoded("GIF", "L"), encoded("PNG", "RGBA"), encoded("BMP"), encoded("WEBP")]


@st.composite
def mutated(draw, seeds: list[bytes]) -> bytes:
    """A valid file with random bytes overwritten, a random cut, or random bytes inserted."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif kind == "cut":
            data = data[:at]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


def loads_or_refuses(load, *args):
    try:
        return load(*args)
    except StyleDropError as e:
        assert "\n" not in str(e)
        return None


@FUZZ
@given(data=st.one_of(st.binary(max_size=512), mutated(SEEDS)), suffix=st.sampled_from([".png", ".jpg", ".gif", ""]))
def test_image_loader(data, suffix):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"input{suffix}"
        path.write_bytes(data)
        image = loads_or_refuses(load_image, path)
    if image is not None:
        assert image.mode == "RGB" and min(image.size) >= 8


@FUZZ
@given(prompts=st.lists(st.text(max_size=80), max_size=4))
def test_prompt_checks(prompts):
    checked = loads_or_refuses(check_prompts, prompts)
    if checked is not None:
        assert all(p and p == p.strip() for p in checked)


@FUZZ
@given(data=st.one_of(st.binary(max_size=256), st.text(max_size=200).map(str.encode)))
def test_prompt_file_reader(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "prompts.txt"
        path.write_bytes(data)
        prompts = loads_or_refuses(read_prompt_file, path)
    if prompts is not None:
        assert prompts and all(p.strip() == p and not p.startswith("#") for p in prompts)


@pytest.fixture(scope="module")
def encoder(tiny_base_dir):
    from styledrop.models.amused import load_base

    return load_base(str(tiny_base_dir))


@FUZZ
@given(prompt=st.text(max_size=300))
def test_any_unicode_prompt_encodes_to_finite_conditioning(encoder, prompt):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # over-long prompts warn and are truncated
        cond = encoder.condition([prompt])
    assert cond.hidden.isfinite().all() and cond.pooled.isfinite().all()


@pytest.fixture(scope="module")
def adapter_folder(encoder, tmp_path_factory):
    adapter = encoder.new_adapter("fuzz", AdapterConfig(rank=2))
    folder = save_adapter(
        tmp_path_factory.mktemp("fuzz") / "adapter", adapter, AdapterCard(adapter.config, encoder.identity)
    )
    encoder.adapters.remove("fuzz")
    return folder


def json_values():
    scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5000), st.floats(allow_nan=True), st.text(max_size=8))
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
        max_leaves=8,
    )


@FUZZ
@given(data=st.data())
def test_adapter_loader(encoder, adapter_folder, data):
    """A mutated card (a field replaced by any JSON value, or the text garbled) or mutated weights (with the
    card's checksum updated, so that the safetensors parser itself is fuzzed)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "adapter"
        shutil.copytree(adapter_folder, folder)
        card = json.loads((folder / CONFIG_NAME).read_text())
        target = data.draw(st.sampled_from(["card field", "card text", "weights"]))
        if target == "card field":
            path = data.draw(
                st.sampled_from(
                    [
                        ("format_version",),
                        ("kind",),
                        ("style",),
                        ("adapter",),
                        ("adapter", "rank"),
                        ("adapter", "shared"),
                        ("adapter", "placements"),
                        ("base",),
                        ("base", "fingerprint"),
                        ("prompts",),
                        ("training",),
                        ("weights_sha256",),
                    ]
                )
            )
            node = card
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = data.draw(json_values())
            (folder / CONFIG_NAME).write_text(json.dumps(card))
        elif target == "card text":
            text = (folder / CONFIG_NAME).read_bytes()
            (folder / CONFIG_NAME).write_bytes(data.draw(mutated([text])))
        else:
            weights = data.draw(mutated([(folder / WEIGHTS_NAME).read_bytes()]))
            (folder / WEIGHTS_NAME).write_bytes(weights)
            card["weights_sha256"] = hashlib.sha256(weights).hexdigest()
            (folder / CONFIG_NAME).write_text(json.dumps(card))
        try:
            loads_or_refuses(encoder.load_adapter, folder, "fuzzed")
        finally:
            if "fuzzed" in encoder.adapters:
                encoder.adapters.remove("fuzzed")
