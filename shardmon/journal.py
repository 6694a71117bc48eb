"""The local restart journal: JSON lines, appended and fsynced before Redis is written.

Whatever Redis loses (an outage, a restart without persistence), the journal still has, and
`Store.replay_restarts` puts back. Several processes on one host may share the file: appends
take an exclusive `flock`, so lines never interleave.
"""

from __future__ import annotations

import fcntl
import os
from collections import deque
from pathlib import Path

__all__ = ["Journal"]


class Journal:
    """Append-only JSON-lines file at `path` (its folder is created on first write)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, line: str) -> None:
        """Append one line durably: written, flushed and fsynced before this returns."""
        if "\n" in line:
            raise ValueError("a journal line cannot contain a newline")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            data = (line + "\n").encode("utf-8")
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = (
                    b"\n" + data
                )  # a writer died mid-line: keep its fragment on a line of its own
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)  # closing releases the lock

    def lines(self) -> list[str]:
        """Every non-empty line, oldest first; [] when there is no journal yet."""
        try:
            with self.path.open(encoding="utf-8", errors="replace") as handle:
                return [line.rstrip("\n") for line in handle if line.strip()]
        except FileNotFoundError:
            return []

    def tail(self, limit: int) -> list[str]:
        """The newest `limit` lines, newest first."""
        try:
            with self.path.open(encoding="utf-8", errors="replace") as handle:
                newest = deque((line.rstrip("\n") for line in handle if line.strip()), maxlen=limit)
        except FileNotFoundError:
            return []
        return list(reversed(newest))
