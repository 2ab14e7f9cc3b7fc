"""Pool generation data-parallel: two CPU processes write exactly what one writes."""

from conftest import launch_two_processes

from styledrop.cli import main
from styledrop.toyworld.build import ASSETS


def refine_args(adapter, out):
    return [
        "refine", str(adapter), "--out", str(out), "--prompts", str(out.parent / "prompts.txt"),
        "--per-prompt", "3", "--pool-steps", "2", "--pool-batch-size", "2", "--feedback", "human",
        "--scorer", str(ASSETS / "clip"), "--device", "cpu",
    ]  # fmt: skip


def test_two_processes_make_the_same_pool_as_one(round1, tmp_path):
    (tmp_path / "prompts.txt").write_text("a red star\na blue circle\na green heart\n")
    assert main(refine_args(round1, tmp_path / "one")) == 0
    done = launch_two_processes(refine_args(round1, tmp_path / "two"))
    assert done.returncode == 0, done.stderr[-2000:]
    one = sorted((tmp_path / "one" / "pool").glob("*.png"))
    assert len(one) == 9
    for png in one:
        assert (tmp_path / "two" / "pool" / png.name).read_bytes() == png.read_bytes(), png.name
    assert (tmp_path / "two" / "scores.json").read_text() == (tmp_path / "one" / "scores.json").read_text()
