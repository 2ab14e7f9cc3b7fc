import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from styledrop.cli import main


def styledrop(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "styledrop", *map(str, args)], capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def trained(tiny_base_dir, tmp_path_factory):
    """`styledrop train` from the command line, once for the module."""
    from conftest import striped_circle

    root = tmp_path_factory.mktemp("cli")
    striped_circle(48).save(root / "ref.png")
    result = styledrop(
        "train",
        root / "ref.png",
        "--content",
        "a circle",
        "--style",
        "in striped style",
        "--base",
        tiny_base_dir,
        "--out",
        root / "adapter",
        "--steps",
        4,
        "--batch-size",
        2,
    )
    assert result.returncode == 0, result.stderr
    assert "trainable parameters" in result.stderr + result.stdout
    return root


def test_train_then_generate_end_to_end(trained):
    adapter, out = trained / "adapter", trained / "images"
    card = json.loads((adapter / "adapter_config.json").read_text())
    assert card["style"] == "in striped style" and card["prompts"] == ["a circle in striped style"]
    assert card["training"]["steps"] == 4 and card["adapter"]["rank"] == 4

    result = styledrop(
        "generate", "--style", adapter, "a cat", "a dog", "--out", out, "--n", 2, "--steps", 4, "--seed", 10
    )
    assert result.returncode == 0, result.stderr
    sidecar = json.loads((out / "images.json").read_text())
    assert [r["seed"] for r in sidecar["images"]] == [10, 11, 12, 13]
    assert sidecar["images"][2]["prompts"] == {"style0": "a dog in striped style", "content": "a dog"}
    assert sidecar["sampling"]["steps"] == 4 and sidecar["base"]["fingerprint"]
    for record in sidecar["images"]:
        assert Image.open(out / record["file"]).size == (32, 32)
    assert Image.open(out / "grid.png").size[0] > 64
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left

    # The sidecar reproduces one image on its own: same prompt, its seed, n = 1.
    again = trained / "again"
    record = sidecar["images"][2]
    result = styledrop(
        "generate",
        "--style",
        adapter,
        record["content"],
        "--out",
        again,
        "--n",
        1,
        "--steps",
        4,
        "--seed",
        record["seed"],
    )
    assert result.returncode == 0, result.stderr
    (alone,) = json.loads((again / "images.json").read_text())["images"]
    assert np.array_equal(np.asarray(Image.open(again / alone["file"])), np.asarray(Image.open(out / record["file"])))


def test_errors_have_no_traceback_from_the_command_line(tmp_path):
    result = styledrop("generate", "--style", tmp_path / "missing-adapter", "a cat", "--out", tmp_path / "out")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert result.stderr.startswith("styledrop: error:")


def bad_files(tmp_path):
    (tmp_path / "notes.png").write_text("this is not an image")
    Image.new("RGB", (64, 64), (200, 10, 10)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.png").write_bytes(b"")
    return tmp_path


TRAIN_CASES = {
    "missing image": (["nope.png"], [], "nope.png: no such file"),
    "non-image file": (["notes.png"], [], "notes.png: not an image"),
    "truncated png": (["truncated.png"], [], "truncated.png: corrupt or truncated"),
    "zero-byte image": (["empty.png"], [], "empty.png: not an image"),
    "empty content prompt": (["full.png"], ["--content", "   "], "--content 1: empty"),
    "empty style": (["full.png"], ["--style", " "], "--style: empty"),
    "unknown base": (["full.png"], ["--base", "/nonexistent/base"], "--base '/nonexistent/base': not a model folder"),
    "steps out of range": (["full.png"], ["--steps", "0"], "--steps: out of range"),
    "rank out of range": (["full.png"], ["--rank", "0"], "--rank: must be"),
    "learning rate out of range": (["full.png"], ["--lr", "-0.1"], "--lr: out of range"),
    "not a number": (["full.png"], ["--steps", "many"], "invalid int value: 'many'"),
}


def run_main(capsys, args):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.err


def assert_one_line_error(code, err, expected):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("styledrop: error:") and expected in lines[0], lines[0]


@pytest.mark.parametrize("case", TRAIN_CASES, ids=list(TRAIN_CASES))
def test_bad_train_input_gives_one_line_and_writes_nothing(case, tiny_base_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(bad_files(tmp_path))
    images, extra, expected = TRAIN_CASES[case]
    options = {"--content": "a square", "--style": "in flat style", "--base": str(tiny_base_dir), "--steps": "2"}
    for flag, value in zip(extra[::2], extra[1::2], strict=True):
        options[flag] = value
    args = ["train", *images, "--out", "adapter", *[x for kv in options.items() for x in kv]]
    assert_one_line_error(*run_main(capsys, args), expected)
    assert not (tmp_path / "adapter").exists()


GENERATE_CASES = {
    "empty prompt": (["a cat", " "], [], "prompt 2: empty"),
    "style scale out of range": (["a cat"], ["--style-scale", "-2"], "--style-scale: out of range"),
    "guidance out of range": (["a cat"], ["--guidance", "1000"], "--guidance: out of range"),
    "decoding steps out of range": (["a cat"], ["--steps", "0"], "--steps: out of range"),
    "token temperature out of range": (["a cat"], ["--token-temperature", "-1"], "--token-temperature: out of range"),
    "plausibility out of range": (["a cat"], ["--plausibility", "1"], "--plausibility: out of range"),
    "images per prompt out of range": (["a cat"], ["--n", "0"], "--n: out of range"),
    "unknown base": (["a cat"], ["--base", "/nonexistent/base"], "not a model folder"),
    "unknown sweep": (["a cat"], ["--sweep", "colour=0:1:3"], "--sweep 'colour=0:1:3': expected NAME="),
    "blend sweep of one style": (["a cat"], ["--sweep", "blend=0:1:3"], "--sweep blend: needs exactly two --style"),
    "subject weight without subject": (["a cat"], ["--subject-weight", "0.5"], "--subject-weight: needs --subject"),
    "negative blend weight": (["a cat"], ["--style", "ADAPTER:-1"], "--style: blend weights must be >= 0"),
}


@pytest.mark.parametrize("case", GENERATE_CASES, ids=list(GENERATE_CASES))
def test_bad_generate_input_gives_one_line_and_writes_nothing(case, trained, tmp_path, capsys):
    prompts, extra, expected = GENERATE_CASES[case]
    out = tmp_path / "out"
    extra = [str(trained / "adapter") + x[len("ADAPTER") :] if x.startswith("ADAPTER") else x for x in extra]
    args = ["generate", "--style", trained / "adapter", *prompts, "--out", out, "--steps", "2", *extra]
    assert_one_line_error(*run_main(capsys, args), expected)
    assert not out.exists()


@pytest.mark.parametrize("flag", ["--pool-steps", "--pool-guidance"])
def test_refine_names_the_pool_option_that_is_out_of_range(flag, tmp_path, capsys):
    # refine has a training --steps too: the error must name the pool's option, the one typed.
    out = tmp_path / "round"
    code, err = run_main(capsys, ["refine", tmp_path / "adapter", "--out", out, flag, "-1"])
    assert_one_line_error(code, err, f"{flag}: out of range (-1")
    assert not out.exists()


def test_adapter_on_another_base_gives_one_line_naming_both(trained, other_base_dir, tmp_path, capsys):
    out = tmp_path / "out"
    code, err = run_main(
        capsys, ["generate", "--style", trained / "adapter", "a cat", "--out", out, "--base", other_base_dir]
    )
    assert_one_line_error(code, err, "trained on base")
    assert str(other_base_dir.resolve()) in err and "tiny-base" in err
    assert not out.exists()


def test_evaluate_rejects_an_unknown_style_in_one_line(capsys):
    assert_one_line_error(
        *run_main(capsys, ["evaluate", "--style", "baroque"]), "--style: unknown held-out style 'baroque'"
    )


def test_missing_toy_base_is_one_clear_error(monkeypatch, tmp_path, reference_png, capsys):
    import styledrop.models.amused as amused

    monkeypatch.setattr(amused, "TOY_BASE", tmp_path / "not-built")
    args = ["train", reference_png, "--content", "a circle", "--style", "in striped style", "--out", tmp_path / "a"]
    assert_one_line_error(*run_main(capsys, args), "no --base given, and the built-in toy base is not built yet")


def test_my_subject_in_my_style_with_a_subject_weight_sweep(trained, tiny_base_dir, tmp_path):
    from conftest import striped_circle

    views = []
    for i, size in enumerate((40, 44, 48)):
        views.append(tmp_path / f"teapot{i}.png")
        striped_circle(size).save(views[-1])
    subject = tmp_path / "subject"
    args = ["--class-noun", "teapot", "--base", tiny_base_dir, "--out", subject, "--steps", 2, "--batch-size", 2]
    result = styledrop("train-subject", *views, *args)
    assert result.returncode == 0, result.stderr
    card = json.loads((subject / "adapter_config.json").read_text())
    assert card["kind"] == "subject" and card["prompts"] == ["a [V] teapot"] * 3 and card["style"] == ""

    out = tmp_path / "mixed"
    result = styledrop(
        "generate", "a [V] teapot", "--style", trained / "adapter", "--subject", subject,
        "--sweep", "subject-weight=0:1:3", "--n", 1, "--steps", 2, "--out", out,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    sidecar = json.loads((out / "images.json").read_text())
    assert [a["kind"] for a in sidecar["adapters"]] == ["style", "subject"]
    assert [r["subject-weight"] for r in sidecar["images"]] == [0.0, 0.5, 1.0]
    # The subject branch is prompted without the style descriptor (c_t), the style branch with it (t).
    assert sidecar["images"][0]["prompts"] == {"style0": "a [V] teapot in striped style", "content": "a [V] teapot"}


def test_stylize_from_the_command_line(trained, tmp_path):
    from conftest import striped_circle

    striped_circle(40).save(tmp_path / "photo.png")
    out = tmp_path / "stylized"
    args = ["--strength", 0.6, "--n", 2, "--steps", 2, "--out", out]
    result = styledrop("stylize", trained / "adapter", tmp_path / "photo.png", "a house", *args)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.glob("*.png")) == ["a-house-00.png", "a-house-01.png", "grid.png"]


def test_a_full_disk_while_saving_is_one_line_and_keeps_the_previous_adapter(
    trained, tiny_base_dir, tmp_path, capsys, monkeypatch
):
    import errno
    import shutil

    import styledrop.adapters.io as adapter_io

    adapter = tmp_path / "adapter"
    shutil.copytree(trained / "adapter", adapter)
    before = {p.name: p.read_bytes() for p in adapter.iterdir() if p.is_file()}

    def disk_full(state, path, metadata=None):
        with open(path, "wb") as f:
            f.write(b"\0" * 100)  # a partial write, as a filling disk leaves it
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(adapter_io, "save_file", disk_full)
    args = ["train", trained / "ref.png", "--content", "a circle", "--style", "in striped style"]
    args += ["--base", tiny_base_dir, "--out", adapter, "--steps", 1, "--batch-size", 2]
    code, err = run_main(capsys, args)
    last = err.strip().splitlines()[-1]  # after the training progress
    assert code == 2 and last == f"styledrop: error: {adapter / 'adapter.safetensors'}: No space left on device"
    assert "Traceback" not in err
    assert {p.name: p.read_bytes() for p in adapter.iterdir() if p.is_file()} == before
    assert not [p for p in adapter.iterdir() if p.name.endswith(".tmp")]


def test_line_breaks_in_quoted_user_content_stay_on_one_line(capsys):
    code, err = run_main(capsys, ["generate", "a cat", "--style", "no\nsuch\nadapter", "--out", "unused"])
    assert_one_line_error(code, err, "no\\nsuch\\nadapter")
