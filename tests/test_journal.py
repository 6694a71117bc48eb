from __future__ import annotations

import gzip
import json
import multiprocessing
from pathlib import Path

import pytest

from shardmon.journal import Journal


def test_append_creates_the_folder_and_keeps_order(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "logs" / "system_restarts.log")
    assert journal.lines() == [] and journal.tail(5) == []
    for i in range(5):
        journal.append(json.dumps({"i": i}))
    assert [json.loads(line)["i"] for line in journal.lines()] == [0, 1, 2, 3, 4]
    assert [json.loads(line)["i"] for line in journal.tail(2)] == [4, 3]


def test_a_torn_last_line_does_not_swallow_the_next_event(tmp_path: Path) -> None:
    path = tmp_path / "j.log"
    path.write_text('{"i": 0}\n{"i": 1, "tor')  # a writer died mid-line
    Journal(path).append('{"i": 2}')
    assert Journal(path).lines() == ['{"i": 0}', '{"i": 1, "tor', '{"i": 2}']


def test_newlines_cannot_split_an_event(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="newline"):
        Journal(tmp_path / "j.log").append("a\nb")


def _append_many(path: str, writer: int) -> None:
    journal = Journal(Path(path))
    for i in range(200):
        journal.append(json.dumps({"writer": writer, "i": i, "pad": "x" * 3000}))


def test_processes_sharing_a_journal_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "shared.log"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_append_many, args=(str(path), w)) for w in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    lines = Journal(path).lines()
    assert len(lines) == 800
    assert {(json.loads(line)["writer"], json.loads(line)["i"]) for line in lines} == {
        (w, i) for w in range(4) for i in range(200)
    }


def _append_while_rotating(path: str, writer: int) -> None:
    journal = Journal(Path(path))
    for i in range(300):
        journal.append(json.dumps({"writer": writer, "i": i}))


def test_rotation_loses_no_line_appended_meanwhile(tmp_path: Path) -> None:
    path = tmp_path / "j.log"
    journal = Journal(path)
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_append_while_rotating, args=(str(path), w)) for w in range(2)
    ]
    for worker in workers:
        worker.start()
    archive = tmp_path / "old.gz"
    archived = 0
    while any(w.is_alive() for w in workers):  # archive even lines while they are written
        archived += journal.rotate(lambda line: json.loads(line)["i"] % 2 == 1, archive)[0]
    for worker in workers:
        worker.join(30)
    archived += journal.rotate(lambda line: json.loads(line)["i"] % 2 == 1, archive)[0]
    with gzip.open(archive, "rt") as old:
        moved = old.read().splitlines()
    kept = journal.lines()
    assert len(moved) == archived and len(moved) + len(kept) == 600
    assert {json.loads(line)["i"] % 2 for line in kept} == {1}
