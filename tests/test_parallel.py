"""Adapter training data-parallel: two CPU processes train what one trains."""

import torch
from conftest import launch_two_processes
from safetensors.torch import load_file

from styledrop.cli import main
from styledrop.parallel import Processes


def test_rows_split_a_batch_among_processes():
    shares = [list(range(10))[Processes(rank, 3).rows(10)] for rank in range(3)]
    assert shares == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    assert sorted(sum(shares, [])) == list(range(10))


def test_two_processes_train_the_adapter_one_trains(tiny_base_dir, reference_png, tmp_path):
    def train_args(out):
        return [
            "train", str(reference_png), "--content", "a circle", "--style", "in striped style",
            "--base", str(tiny_base_dir), "--out", str(tmp_path / out), "--device", "cpu",
            "--steps", "6", "--batch-size", "5", "--checkpoint-every", "4", "--lr", "1e-2",
        ]  # fmt: skip

    assert main(train_args("one")) == 0
    done = launch_two_processes(train_args("two"))
    assert done.returncode == 0, done.stderr[-2000:]
    one, two = (load_file(tmp_path / d / "adapter.safetensors") for d in ("one", "two"))
    assert one.keys() == two.keys()
    moved = 0
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-5, msg=name)
        moved += int(one[name].abs().sum() > 0)
    assert moved == len(one)  # every weight trained (a test of nothing would pass with untouched zeros)
    assert not (tmp_path / "two" / "checkpoints").exists()
