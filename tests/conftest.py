import dataclasses
import os
import subprocess
import sys

# Tests never reach the network: hub ids resolve from the local cache or fail at once.
os.environ["HF_HUB_OFFLINE"] = "1"

import pytest
import torch

from styledrop.models.amused import load_base
from styledrop.models.tiny import TINY_UVIT, build_tiny_base


@pytest.fixture(scope="session")
def tiny_base_dir(tmp_path_factory):
    return build_tiny_base(tmp_path_factory.mktemp("tiny-base"), seed=0)


@pytest.fixture(scope="session")
def other_base_dir(tmp_path_factory):
    """A tiny base with a different transformer architecture: adapters of the first must not load here."""
    config = dataclasses.replace(TINY_UVIT, num_hidden_layers=3)
    return build_tiny_base(tmp_path_factory.mktemp("other-base"), seed=1, uvit=config)


@pytest.fixture
def tiny_base(tiny_base_dir):
    """A fresh load each test: adapters added by one test never leak into another."""
    return load_base(str(tiny_base_dir))


@pytest.fixture
def reference_image():
    return striped_circle(48)


def striped_circle(size: int):
    """A red circle with diagonal white stripes on a blue background: a style reference for tiny bases."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size), (40, 60, 160))
    stripes = Image.new("RGB", (size, size), (220, 40, 40))
    draw = ImageDraw.Draw(stripes)
    for offset in range(-size, size, 8):
        draw.line([(offset, 0), (offset + size, size)], fill=(250, 250, 250), width=3)
    mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(mask).ellipse([size // 8, size // 8, size - size // 8, size - size // 8], fill=255)
    image.paste(stripes, (0, 0), mask)
    return image


@pytest.fixture
def reference_png(tmp_path, reference_image):
    path = tmp_path / "reference.png"
    reference_image.save(path)
    return path


def randomize_(module: torch.nn.Module, std: float = 0.2, seed: int = 0) -> None:
    """Give every parameter random values, so that no zero-initialised weight hides a wiring error."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)


@pytest.fixture
def round1(tiny_base, reference_image, tmp_path):
    """A round-1 adapter on the tiny base, trained for two steps."""
    from styledrop.train import TrainConfig, train_adapter

    config = TrainConfig(steps=2, batch_size=2, crops_per_image=1, checkpoint_every=1)
    return train_adapter(
        tiny_base, [reference_image], ["a house in test style"], tmp_path / "r1", "in test style", config=config,
        progress=False, log=lambda _: None,
    )  # fmt: skip


def launch_two_processes(cli_args: list[str]) -> subprocess.CompletedProcess:
    """`styledrop CLI_ARGS` in two data-parallel CPU processes, launched by torchrun (the launcher that
    `accelerate launch --multi_gpu` runs; accelerate's own launcher starts one process on CPU)."""
    launch = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "styledrop.cli",
    ]
    # --standalone: a free port, so back-to-back launches never collide. CPU matmuls sum in an order that
    # depends on the thread count: give each process as many as this one has.
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    return subprocess.run(launch + cli_args, env=env, capture_output=True, text=True)
