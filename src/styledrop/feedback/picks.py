"""A person's picks for a round, in ROUND_DIR/picks.json. Every change is one image picked or unpicked,
applied under a file lock to what is on disk: two tabs (or two people) never overwrite each other, and
every click is saved the moment it is made."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

from ..fileio import read_json, write_json

PICKS = "picks.json"


@contextlib.contextmanager
def locked(round_dir: Path) -> Iterator[None]:
    with open(Path(round_dir) / ".picks.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_picks(round_dir: str | Path) -> list[str]:
    path = Path(round_dir) / PICKS
    if not path.is_file():
        return []
    data = read_json(path)
    try:
        return list(data["picked"])
    except (KeyError, TypeError) as e:
        from ..errors import StyleDropError

        raise StyleDropError(f"{path}: unreadable picks ({e})") from None


def set_pick(round_dir: str | Path, file: str, picked: bool) -> list[str]:
    """Pick or unpick one pool image; returns all picks, in the order they were made."""
    with locked(Path(round_dir)):
        picks = [f for f in read_picks(round_dir) if f != file]
        if picked:
            picks.append(file)
        write_json(Path(round_dir) / PICKS, {"picked": picks})
    return picks
