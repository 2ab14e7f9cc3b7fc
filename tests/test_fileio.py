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
