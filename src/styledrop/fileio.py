"""Atomic writes: every output goes to a temporary sibling first and is renamed into place, so a crash or a
full disk never leaves a half-written file where a good one (or nothing) was."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import StyleDropError


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path`, on failure it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # as a plain open() would make it, not mkstemp's 0o600: files are shared
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError):  # name the file the user asked for, not our temporary
            raise OSError(e.errno, e.strerror or str(e), str(path)) from e
        raise


def read_json(path: str | os.PathLike):
    """A JSON file (UTF-8, a byte-order mark allowed) -> its value; StyleDropError, naming the file, for a
    missing, unreadable or invalid one (a nesting deep enough to exhaust the parser's recursion included)."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise StyleDropError(f"{path}: not valid JSON ({type(e).__name__}: {str(e)[:120]})") from None
    except OSError as e:
        raise StyleDropError(f"{path}: unreadable ({e.strerror or e})") from None


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | os.PathLike, obj) -> None:
    write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def replace_dir(path: str | os.PathLike, write: Callable[[Path], None], keep_same: bool = False) -> Path:
    """Write a folder through `write(tmp)` into a temporary sibling, then swap it in whole. keep_same: leave the
    folder as it is when it already holds the same thing (`same_files`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        write(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if keep_same and path.is_dir() and same_files(path, tmp):
        shutil.rmtree(tmp)
        return path
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's folders are 0o700
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)
    return path


VERSION_STAMPS = ("transformers_version", "_diffusers_version")  # what a library writes into its JSON configs


def same_files(a: Path, b: Path) -> bool:
    """The two folders hold the same files with the same bytes, except for JSON files, which may differ in the
    library versions stamped into them: the same weights saved under another transformers are the same model."""
    names = {p.relative_to(a) for p in a.rglob("*") if p.is_file()}
    if names != {p.relative_to(b) for p in b.rglob("*") if p.is_file()}:
        return False
    return all(same_file(a / name, b / name) for name in names)


def same_file(a: Path, b: Path) -> bool:
    if a.suffix != ".json":
        return a.read_bytes() == b.read_bytes()
    first, second = json.loads(a.read_text()), json.loads(b.read_text())
    if not (isinstance(first, dict) and isinstance(second, dict)):
        return first == second
    return {k: v for k, v in first.items() if k not in VERSION_STAMPS} == {
        k: v for k, v in second.items() if k not in VERSION_STAMPS
    }


def write_with(path: str | os.PathLike, writer: Callable[[Path], None]) -> None:
    """Atomically write `path` with a function that writes to the path it is given (safetensors, PIL, ...)."""
    with atomic_path(path) as tmp:
        writer(tmp)


def remove_temporaries(folder: str | os.PathLike, names: tuple[str, ...] = ()) -> None:
    """Delete the temporaries (`.NAME.XXXXXXXX.tmp`, files and folders) that writes killed before their rename
    left in `folder`: of the given names only, or of every name. Only while nothing else writes there."""
    for pattern in [f".{name}.*.tmp" for name in names] or [".*.tmp"]:
        for path in Path(folder).glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
