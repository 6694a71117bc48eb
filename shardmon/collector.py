"""Process and machine metrics from psutil, aware of container (cgroup) limits.

A bot in a 2 GiB container using 1.8 GiB is at 90% memory whatever the host has, and a bot
limited to 2 CPUs is at 100% CPU when it uses both, however many the host has.
`collect()` reads files and psutil, so callers on an event loop use `collect_async()`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from shardmon.models import ProcessMetrics

__all__ = ["CgroupLimits", "Collector", "read_cgroup"]

MIB = 1024 * 1024
#: cgroup v1 reports "no limit" as a huge number rather than "max".
_V1_UNLIMITED = 1 << 60


@dataclass(frozen=True, slots=True)
class CgroupLimits:
    """What the process's cgroup allows and uses; None where no limit is set."""

    memory_limit: int | None
    memory_used: int | None
    cpu_quota_cores: float | None
    cpu_usage_usec: int | None


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _stat_field(text: str | None, name: str) -> int | None:
    for line in (text or "").splitlines():
        key, _, value = line.partition(" ")
        if key == name and value.strip().isdigit():
            return int(value)
    return None


def _int(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() else None


def read_cgroup(root: Path, self_cgroup: Path) -> CgroupLimits:
    """The cgroup limits of this process, v2 (unified) or v1, from the files under `root`."""
    entries = [line.split(":", 2) for line in (_read(self_cgroup) or "").splitlines()]
    unified = next((path for hid, _, path in entries if hid == "0"), None)
    if unified is not None and (root / "cgroup.controllers").exists():
        return _read_v2(root, unified)
    return _read_v1(root)


def _read_v2(root: Path, own: str) -> CgroupLimits:
    # A limit may be set on any ancestor: the tightest one applies, with its own usage.
    memory_limit = memory_used = None
    cpu_cores = None
    cpu_usage = _stat_field(_read(root / own.lstrip("/") / "cpu.stat"), "usage_usec")
    folder = root / own.lstrip("/")
    while True:
        limit = _int(_read(folder / "memory.max"))
        if limit is not None and (memory_limit is None or limit < memory_limit):
            current = _int(_read(folder / "memory.current"))
            if current is not None:
                inactive = _stat_field(_read(folder / "memory.stat"), "inactive_file") or 0
                memory_limit, memory_used = limit, max(0, current - inactive)
        quota, _, period = (_read(folder / "cpu.max") or "max").partition(" ")
        if quota.isdigit() and period.isdigit() and int(period):
            cores = int(quota) / int(period)
            cpu_cores = cores if cpu_cores is None else min(cpu_cores, cores)
        if folder == root or root not in folder.parents:
            break
        folder = folder.parent
    return CgroupLimits(memory_limit, memory_used, cpu_cores, cpu_usage)


def _read_v1(root: Path) -> CgroupLimits:
    memory_limit = _int(_read(root / "memory" / "memory.limit_in_bytes"))
    memory_used = None
    if memory_limit is not None and memory_limit < _V1_UNLIMITED:
        usage = _int(_read(root / "memory" / "memory.usage_in_bytes"))
        inactive = _stat_field(_read(root / "memory" / "memory.stat"), "total_inactive_file") or 0
        memory_used = None if usage is None else max(0, usage - inactive)
    else:
        memory_limit = None
    quota = _read(root / "cpu" / "cpu.cfs_quota_us")
    period = _int(_read(root / "cpu" / "cpu.cfs_period_us"))
    cores = int(quota) / period if quota and quota.isdigit() and period else None
    usage_ns = _int(_read(root / "cpuacct" / "cpuacct.usage"))
    return CgroupLimits(
        memory_limit, memory_used, cores, None if usage_ns is None else usage_ns // 1000
    )


def _busy(times: Any) -> float:
    """CPU time not spent idle or waiting for I/O (as psutil.cpu_percent counts it)."""
    idle = times.idle + getattr(times, "iowait", 0.0)
    return float(sum(times) - idle)


class Collector:
    """Measures this process and its machine or container.

    Args:
        disk_path: whose filesystem's usage is reported (the nearest existing folder is used).
        cgroup_root, self_cgroup: where cgroups are mounted and this process's membership file.
    """

    def __init__(
        self,
        disk_path: Path = Path("/"),
        cgroup_root: Path = Path("/sys/fs/cgroup"),
        self_cgroup: Path = Path("/proc/self/cgroup"),
    ) -> None:
        self.disk_path = disk_path
        self.cgroup_root = cgroup_root
        self.self_cgroup = self_cgroup
        self._process = psutil.Process()
        self._last_cpu: tuple[float, int] | None = None
        # psutil.cpu_percent(None) keeps one baseline per process, which several collectors
        # (or a host bot's own calls) would share; each collector keeps its own instead.
        self._last_host_cpu = psutil.cpu_times()
        self._last_host_cpu_at = time.monotonic()
        self._last_host_percent = 0.0

    def follow(self, pid: int) -> None:
        """Measure the resident memory of process `pid` from now on (a supervisor's child)."""
        self._process = psutil.Process(pid)

    def collect(self) -> ProcessMetrics:
        """One reading (blocking: file reads and psutil calls, about a millisecond)."""
        now = time.time()
        limits = read_cgroup(self.cgroup_root, self.self_cgroup)
        host = psutil.virtual_memory()
        if (
            limits.memory_limit is not None
            and limits.memory_used is not None
            and (limits.memory_limit < host.total)
        ):
            total, used = limits.memory_limit, limits.memory_used
        else:
            total, used = host.total, host.total - host.available
        cores = limits.cpu_quota_cores or float(psutil.cpu_count() or 1)
        return ProcessMetrics.checked(
            ts=now,
            cpu=self._cpu_percent(limits, now),
            memory=round(min(100.0, 100.0 * used / total), 2) if total else 0.0,
            memory_used_mb=round(used / MIB, 1),
            memory_total_mb=round(total / MIB, 1),
            disk=psutil.disk_usage(str(self._existing(self.disk_path))).percent,
            cores=round(cores, 2),
            rss_mb=round(self._rss() / MIB, 1),
        )

    def _rss(self) -> int:
        """Resident bytes of the process measured; 0 for one that has just ended."""
        try:
            return int(self._process.memory_info().rss)
        except psutil.NoSuchProcess:
            return 0

    async def collect_async(self) -> ProcessMetrics:
        """`collect()` in a worker thread, so the event loop never waits on it."""
        return await asyncio.to_thread(self.collect)

    def _cpu_percent(self, limits: CgroupLimits, now: float) -> float:
        """CPU use since the last reading: of the cgroup quota if one is set, else of the host."""
        if limits.cpu_quota_cores is None or limits.cpu_usage_usec is None:
            return self._host_cpu_percent()
        last, self._last_cpu = self._last_cpu, (now, limits.cpu_usage_usec)
        if last is None or now <= last[0]:
            return 0.0
        used_s = (limits.cpu_usage_usec - last[1]) / 1e6
        return round(
            min(100.0, max(0.0, 100.0 * used_s / ((now - last[0]) * limits.cpu_quota_cores))), 2
        )

    def _host_cpu_percent(self) -> float:
        """Host CPU use since this collector's last reading; readings closer than 0.1 s
        apart would be noise (0% or 100%), so they repeat the last figure."""
        if time.monotonic() - self._last_host_cpu_at < 0.1:
            return self._last_host_percent
        last, self._last_host_cpu = self._last_host_cpu, psutil.cpu_times()
        self._last_host_cpu_at = time.monotonic()
        elapsed = sum(self._last_host_cpu) - sum(last)
        if elapsed > 0:
            busy = _busy(self._last_host_cpu) - _busy(last)
            self._last_host_percent = round(min(100.0, max(0.0, 100.0 * busy / elapsed)), 2)
        return self._last_host_percent

    @staticmethod
    def _existing(path: Path) -> Path:
        path = path.absolute()
        while not path.exists() and path != path.parent:
            path = path.parent
        return path
