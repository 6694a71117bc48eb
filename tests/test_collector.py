from __future__ import annotations

import threading
import time
from pathlib import Path

import psutil
import pytest

from shardmon.collector import Collector, read_cgroup
from shardmon.models import ProcessMetrics

GIB = 1024**3


def _v2_tree(root: Path, **files: str) -> Path:
    (root / "cgroup.controllers").parent.mkdir(parents=True, exist_ok=True)
    (root / "cgroup.controllers").write_text("cpu memory")
    bot = root / "bot"
    bot.mkdir()
    for name, text in files.items():
        (bot / name.replace("_", ".", 1)).write_text(text)
    membership = root / "self_cgroup"
    membership.write_text("0::/bot\n")
    return membership


def test_container_memory_limit_wins_over_the_host_total(tmp_path: Path) -> None:
    if psutil.virtual_memory().total <= 2 * GIB:
        pytest.skip("the host must have more than the 2 GiB container limit")
    membership = _v2_tree(
        tmp_path,
        memory_max=str(2 * GIB),
        memory_current=str(int(1.9 * GIB)),
        memory_stat=f"anon 1\ninactive_file {int(0.1 * GIB)}\n",
    )
    metrics = Collector(cgroup_root=tmp_path, self_cgroup=membership).collect()
    assert metrics.memory == pytest.approx(90, abs=0.01)
    assert metrics.memory_total_mb == 2048
    assert metrics.memory_used_mb == pytest.approx(1843.2, abs=0.1)


def test_cpu_quota_sets_cores_and_percent(tmp_path: Path) -> None:
    membership = _v2_tree(tmp_path, cpu_max="200000 100000", cpu_stat="usage_usec 1000000\n")
    collector = Collector(cgroup_root=tmp_path, self_cgroup=membership)
    first = collector.collect()
    assert first.cores == 2
    # Two cores busy for the whole interval: 100% of the quota, however many cores the host has.
    (tmp_path / "bot" / "cpu.stat").write_text(f"usage_usec {1_000_000 + 2 * 10_000_000}\n")
    collector._last_cpu = (first.ts - 10, 1_000_000)
    assert collector.collect().cpu == pytest.approx(100, abs=1)


def test_unlimited_cgroup_reports_the_host(tmp_path: Path) -> None:
    membership = _v2_tree(tmp_path, memory_max="max", memory_current="1000", cpu_max="max 100000")
    metrics = Collector(cgroup_root=tmp_path, self_cgroup=membership).collect()
    assert metrics.memory_total_mb == pytest.approx(psutil.virtual_memory().total / 2**20, abs=1)
    assert metrics.cores == psutil.cpu_count()


def test_cgroup_v1_limit(tmp_path: Path) -> None:
    (tmp_path / "memory").mkdir()
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text(str(GIB))
    (tmp_path / "memory" / "memory.usage_in_bytes").write_text(str(GIB // 2))
    (tmp_path / "memory" / "memory.stat").write_text("total_inactive_file 0\n")
    membership = tmp_path / "self_cgroup"
    membership.write_text("4:memory:/docker/abc\n")
    limits = read_cgroup(tmp_path, membership)
    assert (limits.memory_limit, limits.memory_used) == (GIB, GIB // 2)


def test_real_machine_reading_is_valid(tmp_path: Path) -> None:
    metrics = Collector(disk_path=tmp_path / "not" / "yet" / "there").collect()
    assert 0 < metrics.memory <= 100 and 0 <= metrics.cpu <= 100
    assert 0 < metrics.disk <= 100 and metrics.rss_mb > 10 and metrics.cores >= 1


async def test_collect_async_runs_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reading_threads: list[threading.Thread] = []
    collect = Collector.collect

    def recording_collect(self: Collector) -> ProcessMetrics:
        reading_threads.append(threading.current_thread())
        return collect(self)

    monkeypatch.setattr(Collector, "collect", recording_collect)
    metrics = await Collector(disk_path=tmp_path).collect_async()
    assert metrics.memory_total_mb > 0
    assert len(reading_threads) == 1  # the reading is the synchronous collect()...
    assert reading_threads[0] is not threading.current_thread()  # ...in another thread


def test_host_cpu_is_measured_per_collector_between_its_own_readings(tmp_path: Path) -> None:
    busy, idle_neighbour = Collector(disk_path=tmp_path), Collector(disk_path=tmp_path)
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:  # keep one core busy
        pass
    idle_neighbour.collect()  # another collector's reading must not reset this one's baseline
    assert busy.collect().cpu > 10
