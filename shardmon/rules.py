"""The leader's rules: small objects that judge a snapshot of the fleet and word their alerts.

To add a rule, write a class with a `name`, `judge()`, `describe()` and `resolution()`, and pass
it to the judge with the others (`DEFAULT_RULES`). Rules are pure: no Redis, no Discord.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from shardmon.models import Sample
from shardmon.render import format_uptime

__all__ = [
    "DEFAULT_RULES",
    "AlertText",
    "CpuRule",
    "Finding",
    "FleetView",
    "IdentifyStormRule",
    "MemoryRule",
    "OfflineRule",
    "RestartStormRule",
    "Rule",
    "Thresholds",
]

#: A grouped alert names this many shards, then "+N more".
GROUP_NAMES_SHOWN = 20


@dataclass(frozen=True, slots=True)
class FleetView:
    """What the leader reads each tick (one pipelined round trip)."""

    now: float
    latest: Mapping[int, Sample]
    heartbeats: Mapping[int, float]
    restarts_in_window: Mapping[int, int]
    identifies_24h: Mapping[int, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Settings' thresholds, with the `thresholds` hash's runtime overrides on top."""

    memory: float = 85
    cpu: float = 85
    restart_count: int = 3
    restart_window_s: float = 3600
    offline_after_s: float = 180
    identify_count: int = 25
    overrides: Mapping[str, float] = field(default_factory=dict)

    def value(self, rule: str, shard: int, default: float) -> float:
        """`<rule>:<shard>` override, else `<rule>`, else the setting."""
        return self.overrides.get(f"{rule}:{shard}", self.overrides.get(rule, default))


@dataclass(frozen=True, slots=True)
class Finding:
    rule: str
    shard: int
    value: float
    threshold: float


@dataclass(frozen=True, slots=True)
class AlertText:
    title: str
    body: str


class Rule(Protocol):
    @property
    def name(self) -> str:
        """The rule's id in keys and overrides: `alert:<name>:<shard>`, `<name>:<shard>`."""

    def judge(self, fleet: FleetView, limits: Thresholds) -> list[Finding]:
        """The shards that break the rule now."""

    def describe(self, findings: Sequence[Finding], fleet: FleetView) -> AlertText:
        """One message for all the shards that fired in one tick."""

    def resolution(self, shard: int, fleet: FleetView, limits: Thresholds) -> AlertText | None:
        """The "resolved" message when fresh data shows the shard clear, else None."""


def _shard_list(shards: Sequence[int]) -> str:
    shown = ", ".join(str(s) for s in shards[:GROUP_NAMES_SHOWN])
    more = len(shards) - GROUP_NAMES_SHOWN
    return f"{shown}, … (+{more} more)" if more > 0 else shown


def _fresh(fleet: FleetView, limits: Thresholds) -> dict[int, Sample]:
    """Samples recent enough to judge by: a silent shard is the offline rule's business."""
    return {
        shard: sample
        for shard, sample in fleet.latest.items()
        if fleet.now - sample.ts <= limits.offline_after_s
    }


def _resource_details(sample: Sample, now: float) -> list[str]:
    uptime = format_uptime(now - sample.started_at) if sample.started_at else "unknown"
    return [
        f"Memory: {sample.memory:.1f}% "
        f"({sample.memory_used_mb:.0f}/{sample.memory_total_mb:.0f} MB)",
        f"CPU: {sample.cpu:.1f}% ({sample.cores:g} cores)",
        f"Disk: {sample.disk:.1f}%",
        f"Servers: {sample.guilds}",
        f"Uptime: {uptime}",
        f"Shard: {sample.shard} ({sample.node or 'unknown node'})",
    ]


@dataclass(frozen=True, slots=True)
class _ResourceRule:
    name: str
    label: str  # MEMORY, CPU
    attribute: str  # the Sample field

    def _limit(self, limits: Thresholds, shard: int) -> float:
        default = limits.memory if self.attribute == "memory" else limits.cpu
        return limits.value(self.name, shard, default)

    def judge(self, fleet: FleetView, limits: Thresholds) -> list[Finding]:
        findings = []
        for shard, sample in sorted(_fresh(fleet, limits).items()):
            value, limit = float(getattr(sample, self.attribute)), self._limit(limits, shard)
            if value > limit:
                findings.append(Finding(self.name, shard, value, limit))
        return findings

    def describe(self, findings: Sequence[Finding], fleet: FleetView) -> AlertText:
        title = "⚠️ High Resource Usage Detected"
        lines = [f"Critical thresholds exceeded: {self.label}"]
        if len(findings) == 1:
            lines += _resource_details(fleet.latest[findings[0].shard], fleet.now)
        else:
            worst = max(findings, key=lambda f: f.value)
            threshold = min(f.threshold for f in findings)
            lines.append(
                f"{len(findings)} shards above {threshold:g}% {self.label.lower()}: "
                + _shard_list([f.shard for f in findings])
            )
            lines.append(f"Highest: shard {worst.shard} at {worst.value:.1f}%")
        return AlertText(title, "\n".join(lines))

    def resolution(self, shard: int, fleet: FleetView, limits: Thresholds) -> AlertText | None:
        sample = _fresh(fleet, limits).get(shard)
        limit = self._limit(limits, shard)
        if sample is None or float(getattr(sample, self.attribute)) > limit:
            return None
        value = float(getattr(sample, self.attribute))
        return AlertText(
            f"✅ Resolved: {self.label} on shard {shard}",
            f"{self.label} back to {value:.1f}% (threshold {limit:g}%)",
        )


@dataclass(frozen=True, slots=True)
class MemoryRule(_ResourceRule):
    name: str = "memory"
    label: str = "MEMORY"
    attribute: str = "memory"


@dataclass(frozen=True, slots=True)
class CpuRule(_ResourceRule):
    name: str = "cpu"
    label: str = "CPU"
    attribute: str = "cpu"


class _CountRule:
    """A rule on a per-shard count, which fires at or above its threshold."""

    __slots__ = ()
    name: str

    def _counts(self, fleet: FleetView) -> Mapping[int, int]:
        raise NotImplementedError

    def _default(self, limits: Thresholds) -> float:
        raise NotImplementedError

    def _limit(self, limits: Thresholds, shard: int) -> float:
        return limits.value(self.name, shard, self._default(limits))

    def judge(self, fleet: FleetView, limits: Thresholds) -> list[Finding]:
        return [
            Finding(self.name, shard, count, self._limit(limits, shard))
            for shard, count in sorted(self._counts(fleet).items())
            if count >= self._limit(limits, shard)
        ]

    def _count_if_clear(self, shard: int, fleet: FleetView, limits: Thresholds) -> int | None:
        count = self._counts(fleet).get(shard, 0)
        return None if count >= self._limit(limits, shard) else count


@dataclass(frozen=True, slots=True)
class RestartStormRule(_CountRule):
    name: str = "restart_storm"

    def _counts(self, fleet: FleetView) -> Mapping[int, int]:
        return fleet.restarts_in_window

    def _default(self, limits: Thresholds) -> float:
        return limits.restart_count

    def describe(self, findings: Sequence[Finding], fleet: FleetView) -> AlertText:
        title = "🚨 Restart Storm Detected"
        first = findings[0]
        if len(findings) == 1:
            lines = [
                f"{first.value:.0f} restarts in the last hour - possible loop detected",
                "Time period: 1 hour",
                f"Restart count: {first.value:.0f}",
                f"Threshold: {first.threshold:g}",
                f"Shard: {first.shard}",
            ]
        else:
            lines = [
                f"{len(findings)} shards restarting in a loop: "
                + _shard_list([f.shard for f in findings]),
                f"Most: shard {max(findings, key=lambda f: f.value).shard} with "
                f"{max(f.value for f in findings):.0f} restarts in the last hour",
            ]
        return AlertText(title, "\n".join(lines))

    def resolution(self, shard: int, fleet: FleetView, limits: Thresholds) -> AlertText | None:
        count = self._count_if_clear(shard, fleet, limits)
        if count is None:
            return None
        return AlertText(
            f"✅ Resolved: restart storm on shard {shard}",
            f"{count} restart(s) in the last hour now (threshold {self._limit(limits, shard):g})",
        )


@dataclass(frozen=True, slots=True)
class OfflineRule:
    name: str = "offline"

    def _limit(self, limits: Thresholds, shard: int) -> float:
        return limits.value(self.name, shard, limits.offline_after_s)

    def judge(self, fleet: FleetView, limits: Thresholds) -> list[Finding]:
        return [
            Finding(self.name, shard, fleet.now - seen, self._limit(limits, shard))
            for shard, seen in sorted(fleet.heartbeats.items())
            if fleet.now - seen > self._limit(limits, shard)
        ]

    def describe(self, findings: Sequence[Finding], fleet: FleetView) -> AlertText:
        if len(findings) == 1:
            f = findings[0]
            seen = time.strftime("%H:%M:%S UTC", time.gmtime(fleet.now - f.value))
            body = f"Shard {f.shard}: no heartbeat for {format_uptime(f.value)} (last seen {seen})"
        else:
            body = f"{len(findings)} shards silent: " + _shard_list([f.shard for f in findings])
        return AlertText("🔌 Shard Offline", body)

    def resolution(self, shard: int, fleet: FleetView, limits: Thresholds) -> AlertText | None:
        seen = fleet.heartbeats.get(shard)
        if seen is None or fleet.now - seen > self._limit(limits, shard):
            return None
        return AlertText(f"✅ Resolved: shard {shard} is back online", "Heartbeats resumed")


@dataclass(frozen=True, slots=True)
class IdentifyStormRule(_CountRule):
    """A shard that IDENTIFYs far more than it should (each burns one of Discord's daily
    session starts): the sign of a reconnect loop that process restarts do not show."""

    name: str = "identify_storm"

    def _counts(self, fleet: FleetView) -> Mapping[int, int]:
        return fleet.identifies_24h

    def _default(self, limits: Thresholds) -> float:
        return limits.identify_count

    def describe(self, findings: Sequence[Finding], fleet: FleetView) -> AlertText:
        lines = [
            f"Shard {f.shard}: {f.value:.0f} IDENTIFYs in 24 hours (threshold {f.threshold:g})"
            for f in findings[:GROUP_NAMES_SHOWN]
        ]
        if len(findings) > GROUP_NAMES_SHOWN:
            lines.append(f"… (+{len(findings) - GROUP_NAMES_SHOWN} more shards)")
        lines.append("Each one uses a daily session start: look for a reconnect loop.")
        return AlertText("🔁 Gateway Identify Storm", "\n".join(lines))

    def resolution(self, shard: int, fleet: FleetView, limits: Thresholds) -> AlertText | None:
        count = self._count_if_clear(shard, fleet, limits)
        if count is None:
            return None
        return AlertText(
            f"✅ Resolved: identify storm on shard {shard}", f"{count} IDENTIFYs in 24 hours now"
        )


DEFAULT_RULES: tuple[Rule, ...] = (
    MemoryRule(),
    CpuRule(),
    RestartStormRule(),
    OfflineRule(),
    IdentifyStormRule(),
)
