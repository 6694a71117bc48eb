"""The local restart journal: JSON lines, appended and fsynced before Redis is written.

Whatever Redis loses (an outage, a restart without persistence), the journal still has, and
`Store.replay_restarts` puts back. Several processes on one host may share the file: appends
take an exclusive `flock`, so lines never interleave.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import os
from collections import deque
from collections.abc import Callable
from pathlib import Path

from shardmon.models import MalformedData, RestartEvent, parse_event

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
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:  # a rotation may have replaced the file while this waited for the lock
                if os.fstat(fd).st_ino == self.path.stat().st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        try:
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

    def rotate(self, keep: Callable[[str], bool], archive: Path) -> tuple[int, int]:
        """Move the lines `keep` refuses into the gzip `archive` (appended to if it exists);
        the rest stay. Crash-safe: the archive is fsynced before the journal is replaced, and
        the kept lines go to a new file renamed over the old one, under the lock (writers
        waiting on it see the new file). Returns (archived, kept)."""
        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            return 0, 0
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            with os.fdopen(os.dup(fd), "rb") as handle:
                text = handle.read().decode("utf-8", "replace")
            lines = [line for line in text.splitlines() if line.strip()]
            kept = [line for line in lines if keep(line)]
            moved = [line for line in lines if not keep(line)]
            if moved:
                with archive.open("ab") as raw, gzip.GzipFile(fileobj=raw, mode="ab") as out:
                    out.write("".join(line + "\n" for line in moved).encode("utf-8"))
                    out.flush()
                    raw.flush()
                    os.fsync(raw.fileno())
                fresh = self.path.with_name(self.path.name + ".rotating")
                with fresh.open("wb") as new:
                    new.write("".join(line + "\n" for line in kept).encode("utf-8"))
                    new.flush()
                    os.fsync(new.fileno())
                fresh.replace(self.path)
        finally:
            os.close(fd)
        return len(moved), len(kept)

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

    def recent_events(self, limit: int) -> list[RestartEvent]:
        """The newest `limit` lines that are restart events, newest first (others skipped)."""
        events = []
        for line in self.tail(limit):
            with contextlib.suppress(MalformedData):
                events.append(parse_event(line))
        return events
