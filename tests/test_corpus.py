"""The committed bad-input corpus (tests/corpus, listed in its README) through the command line.

Every refused input gives exactly one line on stderr, `styledrop: error:` naming the file or argument and the
problem, exit 2, and writes nothing (no --out folder, no temporary files). Every odd-but-valid input works.
"""

import hashlib
import importlib.util
import json
import pathlib
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from styledrop.cli import main

CORPUS = Path(__file__).resolve().parent / "corpus"
FILES = CORPUS / "files"
WHITE = (255, 255, 255)

# Images that `train` must refuse: file -> what the one line says about it.
BAD_IMAGES = {
    "empty.png": "not an image",
    "truncated.png": "corrupt or truncated image",
    "truncated.jpg": "corrupt or truncated image",
    "text-named.png": "not an image",
    "bomb-10000x10000.png": "image too large to decode safely",
    "bomb-header-only-50000x50000.png": "image too large to decode safely",
    "tiny-1x1.png": "image is 1x1, need at least 8 pixels per side",
    "thin-10000x4.png": "image is 10000x4, need at least 8 pixels per side",
    "bad-crc.png": "corrupt or truncated image",
    "jpeg-markers-only.jpg": "not an image",
}

# Odd but valid images that `train` must accept: file -> (size as loaded, {pixel: RGB as loaded}). The loaded
# image is what the adapter keeps as its reference (reference/00.png), so both are checked there.
VALID_IMAGES = {
    "wide-10000x50.png": ((10_000, 50), {(0, 0): (220, 40, 40)}),
    "rgba-transparent.png": ((48, 48), {(0, 0): WHITE, (24, 24): (220, 40, 40)}),  # transparency on white
    "la-transparent.png": ((48, 48), {(0, 0): WHITE, (24, 24): (30, 30, 30)}),
    "palette-transparency.png": ((48, 48), {(0, 0): WHITE, (24, 12): (220, 40, 40), (24, 36): (40, 60, 160)}),
    "cmyk.jpg": ((48, 48), {}),
    "gray16.png": ((48, 48), {(0, 0): (0, 0, 0), (47, 0): WHITE}),  # the full 16-bit range onto 0-255
    "gray8.png": ((48, 48), {}),
    "bilevel.png": ((48, 48), {}),
    "exif-rotated.jpg": ((32, 64), {}),  # stored 64x32, EXIF orientation 6
    "animated.gif": ((40, 40), {(0, 0): (255, 0, 0)}),  # the first frame
    "jpeg-named.png": ((48, 48), {}),
    "progressive.jpg": ((48, 48), {}),
}

# Prompt files that `refine --prompts` must refuse before anything is generated.
PROMPT_FILES = {
    "prompts-latin1.txt": "not UTF-8 text",
    "prompts-utf16.txt": "not UTF-8 text",
    "prompts-empty.txt": "no prompts in it",
    "prompts-comments-only.txt": "no prompts in it",
    "prompts-bom-comments-only.txt": "no prompts in it",
}

# Prompts that `generate` must refuse.
BAD_PROMPTS = {
    "empty": ("", "prompt 1: empty"),
    "blanks": (" \t\n ", "prompt 1: empty"),
    "ideographic space": ("\u3000", "prompt 1: empty"),
}
LONG_PROMPT = " ".join(["a small red house with a green door beside a tall oak tree"] * 10)  # > 77 tokens


# -- adapter folders: mutations of a real trained adapter -------------------------------------------------------
WEIGHTS, CARD = "adapter.safetensors", "adapter_config.json"


class Unpickled:
    """Unpickling this creates `marker`: proof that a loader ran pickle."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


def pickle_payload(marker: Path) -> bytes:
    return pickle.dumps({"sites.mlp.up_weight": Unpickled(marker)})


def torch_payload(marker: Path) -> bytes:
    import io

    import torch

    buffer = io.BytesIO()
    torch.save({"sites.mlp.up_weight": Unpickled(marker)}, buffer)
    return buffer.getvalue()


def edit_card(folder: Path, change) -> None:
    card = json.loads((folder / CARD).read_text())
    change(card)
    (folder / CARD).write_text(json.dumps(card, indent=2))


def rehash(folder: Path) -> None:
    """Record the (changed) weights' checksum in the card, so that the change gets past the checksum."""
    digest = hashlib.sha256((folder / WEIGHTS).read_bytes()).hexdigest()
    edit_card(folder, lambda card: card.update(weights_sha256=digest))


def header(folder: Path) -> tuple[dict, bytes]:
    data = (folder / WEIGHTS).read_bytes()
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def write_header(folder: Path, head: dict, body: bytes) -> None:
    text = json.dumps(head).encode()
    text += b" " * (-len(text) % 8)
    (folder / WEIGHTS).write_bytes(len(text).to_bytes(8, "little") + text + body)


def truncate(folder):
    data = (folder / WEIGHTS).read_bytes()
    (folder / WEIGHTS).write_bytes(data[: len(data) // 2])


def garble_header(folder):
    data = bytearray((folder / WEIGHTS).read_bytes())
    data[8:24] = b"\xff" * 16  # the start of the JSON header
    (folder / WEIGHTS).write_bytes(bytes(data))


def swap_dtype(folder):
    data = (folder / WEIGHTS).read_bytes()
    n = int.from_bytes(data[:8], "little")
    head = data[8 : 8 + n].replace(b'"F32"', b'"F16"', 1)  # same length: only the meaning changes
    (folder / WEIGHTS).write_bytes(data[:8] + head + data[8 + n :])


def overlap_offsets(folder):
    head, body = header(folder)
    name = sorted(k for k in head if k != "__metadata__")[-1]
    start, end = head[name]["data_offsets"]
    head[name]["data_offsets"] = [0, end - start]  # aliases the first tensor's bytes
    write_header(folder, head, body)


def huge_header_length(folder):
    data = (folder / WEIGHTS).read_bytes()
    (folder / WEIGHTS).write_bytes((2**62).to_bytes(8, "little") + data[8:])


def change_state(folder, change):
    from safetensors.torch import load_file, save_file

    state = load_file(folder / WEIGHTS)
    change(state)
    save_file(state, folder / WEIGHTS)


def drop_key(state):
    state.pop(sorted(state)[0])


def add_key(state):
    import torch

    state["sites.extra.weight"] = torch.zeros(2)


def poison(state):
    name = sorted(state)[0]
    state[name][..., 0] = float("nan")


def rehashed(*changes):
    def mutate(folder, marker):
        for change in changes:
            change(folder)
        rehash(folder)

    return mutate


def state_change(change):
    return lambda folder: change_state(folder, change)


def card_text(text: str | bytes):
    def mutate(folder, marker):
        target = folder / CARD
        target.write_bytes(text if isinstance(text, bytes) else text.encode())

    return mutate


def card_change(change):
    return lambda folder, marker: edit_card(folder, change)


def weights_bytes(make, with_hash: str):
    """Replace the weights by make(marker); with_hash: 'keep' the card's checksum, 'rehash' it, or 'clear' it."""

    def mutate(folder, marker):
        (folder / WEIGHTS).write_bytes(make(marker))
        if with_hash == "rehash":
            rehash(folder)
        elif with_hash == "clear":
            edit_card(folder, lambda card: card.update(weights_sha256=""))

    return mutate


def remove(name):
    def mutate(folder, marker):
        target = folder / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()

    return mutate


def replace_by_folder(name):
    def mutate(folder, marker):
        (folder / name).unlink()
        (folder / name).mkdir()

    return mutate


def empty_folder(folder, marker):
    for p in list(folder.iterdir()):
        shutil.rmtree(p) if p.is_dir() else p.unlink()


CHECKSUM = f"{WEIGHTS}: checksum does not match {CARD}"
NOT_SAFETENSORS = f"{WEIGHTS}: not a valid safetensors file"

# mutation -> (how to make it from a copy of a trained adapter, what the one line says). A mutation may return
# another path to pass as --style instead of the folder.
ADAPTER_MUTATIONS = {
    "truncated-weights": (lambda f, m: truncate(f), CHECKSUM),
    "truncated-weights-rehashed": (rehashed(truncate), NOT_SAFETENSORS),
    "empty-weights-rehashed": (weights_bytes(lambda m: b"", "rehash"), NOT_SAFETENSORS),
    "tampered-header": (lambda f, m: garble_header(f), CHECKSUM),
    "tampered-header-rehashed": (rehashed(garble_header), NOT_SAFETENSORS),
    "tampered-header-dtype-rehashed": (rehashed(swap_dtype), NOT_SAFETENSORS),
    "tampered-header-offsets-rehashed": (rehashed(overlap_offsets), NOT_SAFETENSORS),
    "header-length-huge-rehashed": (rehashed(huge_header_length), NOT_SAFETENSORS),
    "pickle-renamed": (weights_bytes(pickle_payload, "keep"), CHECKSUM),
    "pickle-renamed-rehashed": (weights_bytes(pickle_payload, "rehash"), NOT_SAFETENSORS),
    "pickle-renamed-no-checksum": (weights_bytes(pickle_payload, "clear"), NOT_SAFETENSORS),
    "torch-save-renamed-rehashed": (weights_bytes(torch_payload, "rehash"), NOT_SAFETENSORS),
    "other-base-fingerprint": (
        card_change(lambda c: c["base"].update(fingerprint="0" * 16)),
        "adapter: adapter was trained on base",
    ),
    "missing-key-rehashed": (rehashed(state_change(drop_key)), f"{WEIGHTS}: does not match {CARD} (missing ['"),
    "extra-key-rehashed": (
        rehashed(state_change(add_key)),
        f"{WEIGHTS}: does not match {CARD} (missing [], unexpected ['sites.extra.weight']",
    ),
    "card-rank-differs-from-weights": (
        card_change(lambda c: c["adapter"].update(rank=8)),
        f"{WEIGHTS}: does not match {CARD} (missing [], unexpected [], wrong shape ['",
    ),
    "nan-weights-rehashed": (rehashed(state_change(poison)), f"{WEIGHTS}: contains NaN or infinite values"),
    "missing-weights": (remove(WEIGHTS), f"{WEIGHTS}: missing"),
    "weights-is-a-folder": (replace_by_folder(WEIGHTS), f"{WEIGHTS}: missing"),
    "missing-config": (remove(CARD), f"{CARD}: missing (not an adapter folder?)"),
    "config-is-a-folder": (replace_by_folder(CARD), f"{CARD}: missing (not an adapter folder?)"),
    "malformed-config": (card_text("{not json"), f"{CARD}: not valid JSON"),
    "config-not-utf8": (card_text(b'{"style": "caf\xe9"}'), f"{CARD}: not valid JSON"),
    "config-deeply-nested": (card_text("[" * 100_000 + "]" * 100_000), f"{CARD}: not valid JSON"),
    "config-a-list": (card_text("[1, 2]"), f"{CARD}: malformed adapter config"),
    "config-missing-fields": (card_text('{"format_version": 1}'), f"{CARD}: malformed adapter config"),
    "config-future-format": (
        card_change(lambda c: c.update(format_version=99)),
        f"{CARD}: malformed adapter config (ValueError: unsupported format_version 99",
    ),
    "config-rank-a-string": (
        card_change(lambda c: c["adapter"].update(rank="4")),
        f"{CARD}: malformed adapter config (StyleDropError: --rank: must be an integer",
    ),
    "empty-folder": (empty_folder, f"{CARD}: missing (not an adapter folder?)"),
    "weights-file-instead-of-folder": (lambda f, m: f / WEIGHTS, "not a folder (give the adapter's folder"),
    "nonexistent-folder": (lambda f, m: f.parent / "no-such-adapter", "no-such-adapter: adapter folder not found"),
    "recorded-base-missing": (
        card_change(lambda c: c["base"].update(source="/nonexistent/base")),
        "adapter_config.json: cannot load the base it was trained on (--base '/nonexistent/base': not a model folder",
    ),
}


def bom_config(folder, marker):
    """The card re-saved by an editor that writes a UTF-8 byte-order mark (Windows Notepad)."""
    (folder / CARD).write_bytes(b"\xef\xbb\xbf" + (folder / CARD).read_bytes())


def unchanged(folder, marker):
    pass


# Odd but valid adapter folders that `generate` must accept.
VALID_ADAPTERS = {"config-with-utf8-bom": bom_config, "unchanged": unchanged}


# -- helpers --------------------------------------------------------------------------------------------------
def run_main(capsys, args):
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def one_error_line(code, err, *expected):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("styledrop: error:"), lines[0]
    for text in expected:
        assert text in lines[0], lines[0]
    assert "Traceback" not in err


def leftovers(folder: Path) -> list[Path]:
    """Temporary files and folders that atomic writes leave only when they go wrong."""
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


@pytest.fixture(scope="module")
def adapter(tiny_base_dir, tmp_path_factory):
    """A real round-1 adapter on the tiny base, trained for one step, once for the module."""
    from conftest import striped_circle

    from styledrop.pipeline import train_from_files
    from styledrop.train import TrainConfig

    root = tmp_path_factory.mktemp("corpus-adapter")
    striped_circle(48).save(root / "ref.png")
    config = TrainConfig(steps=1, batch_size=2, crops_per_image=1)
    return train_from_files(
        [root / "ref.png"], ["a circle"], "in striped style", str(tiny_base_dir), root / "adapter", config=config,
        progress=False,
    )  # fmt: skip


# -- the corpus is complete and listed ------------------------------------------------------------------------------
def test_corpus_has_every_entry_listed_and_tested():
    spec = importlib.util.spec_from_file_location("make_corpus", CORPUS / "make_corpus.py")
    make_corpus = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_corpus)

    on_disk = sorted(p.name for p in FILES.iterdir())
    assert on_disk == sorted(make_corpus.ENTRIES), "run tests/corpus/make_corpus.py"
    assert sorted({**BAD_IMAGES, **VALID_IMAGES, **PROMPT_FILES}) == on_disk
    assert sum(p.stat().st_size for p in FILES.iterdir()) < 200_000

    readme = (CORPUS / "README.md").read_text()
    names = [*on_disk, *ADAPTER_MUTATIONS, *VALID_ADAPTERS]
    assert [n for n in names if f"`{n}`" not in readme] == []
    entries = len(on_disk) + len(ADAPTER_MUTATIONS) + len(VALID_ADAPTERS) + len(BAD_PROMPTS) + 1  # + LONG_PROMPT
    assert entries >= 25


# -- images through `train` -------------------------------------------------------------------------------------
def train_args(image, out, base):
    return ["train", image, "--content", "a circle", "--style", "in striped style", "--base", base, "--out", out]


@pytest.mark.parametrize("name", BAD_IMAGES)
def test_bad_image_is_refused_in_one_line(name, tiny_base_dir, tmp_path, capsys):
    out = tmp_path / "adapter"
    code, err = run_main(capsys, [*train_args(FILES / name, out, tiny_base_dir), "--steps", 1, "--batch-size", 2])
    one_error_line(code, err, f"{name}: {BAD_IMAGES[name]}")
    assert not out.exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("name", VALID_IMAGES)
def test_odd_but_valid_image_trains(name, tiny_base_dir, tmp_path, capsys):
    out = tmp_path / "adapter"
    code, err = run_main(capsys, [*train_args(FILES / name, out, tiny_base_dir), "--steps", 1, "--batch-size", 2])
    assert code == 0, err
    assert (out / WEIGHTS).is_file() and (out / CARD).is_file() and leftovers(tmp_path) == []
    size, pixels = VALID_IMAGES[name]
    reference = Image.open(out / "reference" / "00.png")
    assert reference.mode == "RGB" and reference.size == size
    for xy, rgb in pixels.items():
        assert reference.getpixel(xy) == rgb, xy


# -- prompts through `generate` ----------------------------------------------------------------------------------
@pytest.mark.parametrize("case", BAD_PROMPTS)
def test_empty_prompt_is_refused_in_one_line(case, adapter, tmp_path, capsys):
    prompt, expected = BAD_PROMPTS[case]
    out = tmp_path / "out"
    code, err = run_main(capsys, ["generate", prompt, "--style", adapter, "--out", out, "--steps", 2, "--n", 1])
    one_error_line(code, err, expected)
    assert not out.exists()


def test_too_long_prompt_is_truncated_with_one_warning(adapter, tmp_path):
    # A real process: pytest captures warnings, and the warning must reach stderr as exactly one line.
    out = tmp_path / "out"
    args = ["generate", LONG_PROMPT, "--style", adapter, "--out", out, "--steps", 2, "--n", 1]
    result = subprocess.run([sys.executable, "-m", "styledrop", *map(str, args)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    progress = re.compile(r"^\s*$|^\w+:\s+\d+%\|")  # tqdm's redrawn progress lines
    lines = [line for line in re.split(r"[\r\n]", result.stderr) if not progress.match(line)]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("styledrop: warning: prompt longer than the text encoder's 77 tokens, truncated")
    assert len(list(out.glob("000-*.png"))) == 1


# -- prompt files through `refine` -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", PROMPT_FILES)
def test_bad_prompt_file_is_refused_in_one_line(name, adapter, tmp_path, capsys):
    out = tmp_path / "round"
    code, err = run_main(capsys, ["refine", adapter, "--prompts", FILES / name, "--out", out])
    one_error_line(code, err, f"--prompts {FILES / name}: {PROMPT_FILES[name]}")
    assert not out.exists()


# -- adapter folders through `generate` --------------------------------------------------------------------------
def test_the_pickle_payloads_would_run_code_when_unpickled(tmp_path):
    import io

    import torch

    pickle.loads(pickle_payload(tmp_path / "a"))
    torch.load(io.BytesIO(torch_payload(tmp_path / "b")), weights_only=False)
    assert (tmp_path / "a").exists() and (tmp_path / "b").exists()


@pytest.mark.parametrize("case", ADAPTER_MUTATIONS)
def test_bad_adapter_is_refused_in_one_line(case, adapter, tmp_path, capsys):
    mutate, expected = ADAPTER_MUTATIONS[case]
    folder, marker, out = tmp_path / "adapter", tmp_path / "unpickled", tmp_path / "out"
    shutil.copytree(adapter, folder)
    style = mutate(folder, marker) or folder
    code, err = run_main(capsys, ["generate", "a cat", "--style", style, "--out", out, "--steps", 2, "--n", 1])
    one_error_line(code, err, expected)
    assert not out.exists() and not marker.exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("case", VALID_ADAPTERS)
def test_odd_but_valid_adapter_generates(case, adapter, tmp_path, capsys):
    folder, out = tmp_path / "adapter", tmp_path / "out"
    shutil.copytree(adapter, folder)
    VALID_ADAPTERS[case](folder, tmp_path / "unused")
    code, err = run_main(capsys, ["generate", "a cat", "--style", folder, "--out", out, "--steps", 2, "--n", 1])
    assert code == 0, err
    assert (out / "images.json").is_file() and (out / "grid.png").is_file() and leftovers(tmp_path) == []
