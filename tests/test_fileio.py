import errno
import os

import pytest

from styledrop.fileio import replace_dir, write_json, write_with


def test_written_files_and_folders_get_the_usual_permissions_not_mkstemps(tmp_path):
    umask = os.umask(0o022)
    try:
        write_json(tmp_path / "card.json", {"a": 1})
        replace_dir(tmp_path / "reference", lambda tmp: (tmp / "00.png").write_bytes(b"png"))
    finally:
        os.umask(umask)
    assert (tmp_path / "card.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "reference").stat().st_mode & 0o777 == 0o755


def test_a_failed_write_keeps_the_previous_file_and_names_it(tmp_path):
    target = tmp_path / "weights.bin"
    target.write_bytes(b"previous")

    def disk_full(path):
        path.write_bytes(b"part")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as error:
        write_with(target, disk_full)
    assert error.value.errno == errno.ENOSPC and error.value.filename == str(target)
    assert target.read_bytes() == b"previous" and os.listdir(tmp_path) == ["weights.bin"]


def test_keep_same_leaves_a_folder_that_differs_only_in_library_version_stamps(tmp_path):
    """Re-exporting a finished build under another transformers must not rewrite the shipped assets."""

    def export(version: str, weights: bytes, hidden: int = 64):
        def write(tmp):
            write_json(tmp / "config.json", {"hidden_size": hidden, "transformers_version": version})
            (tmp / "model.safetensors").write_bytes(weights)

        return write

    folder = tmp_path / "clip"
    replace_dir(folder, export("5.23.0", b"w1"), keep_same=True)
    replace_dir(folder, export("5.24.0", b"w1"), keep_same=True)
    assert '"5.23.0"' in (folder / "config.json").read_text()
    replace_dir(folder, export("5.24.0", b"w1"), keep_same=False)
    assert '"5.24.0"' in (folder / "config.json").read_text()
    replace_dir(folder, export("5.25.0", b"w2"), keep_same=True)  # other weights
    assert (folder / "model.safetensors").read_bytes() == b"w2"
    replace_dir(folder, export("5.25.0", b"w2", hidden=32), keep_same=True)  # another setting
    assert '"hidden_size": 32' in (folder / "config.json").read_text()
    (folder / "extra.txt").write_text("x")
    replace_dir(folder, export("5.25.0", b"w2", hidden=32), keep_same=True)  # another set of files
    assert not (folder / "extra.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["clip"]  # no temporaries left behind
