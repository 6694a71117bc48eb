"""The leader's rules: small objects that judge a snapshot of the fleet and word their alerts.

Each rule owns what there is to know about it: its name (in keys and overrides), its threshold
(the `SHARDMON_*` setting, unit, bounds and default, as a `Limit`), any other setting it takes
(the storm window), how it judges, and the words of its alert and of its "resolved" message.
Settings fields, `shardmon thresholds`, the CLI's checks and the validation are derived from
`DEFAULT_RULES`: adding a rule with a threshold is one class here plus its test. Rules are
pure: no Redis, no Discord.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from shardmon.models import Sample
from shardmon.render import format_uptime

__all__ = [
    "DEFAULT_RULES",
    "AlertText",
    "CpuRule",
    "Finding",
    "FleetView",
    "IdentifyStormRule",
    "Limit",
    "Limits",
    "MemoryRule",
    "OfflineRule",
    "RestartStormRule",
    "Rule",
    "StormReport",
    "rule_limits",
    "storm_report",
    "window_words",
]

#: A grouped alert names this many shards, then "+N more".
GROUP_NAMES_SHOWN = 20


@dataclass(frozen=True, slots=True)
class Limit:
    """A number a rule judges by. The same bounds check the setting at start and an override
    at run time (`shardmon thresholds set`)."""

    setting: str | None  # the Settings field (`SHARDMON_<SETTING>`); None: from the interval
    unit: str  # what a value is, as `shardmon thresholds` says it
    default: float  # the setting's default; with no setting, in sample intervals
    low: float
    high: float
    whole: bool = False  # a count: the setting is an integer


@dataclass(frozen=True, slots=True)
class FleetView:
    """What the leader reads each tick (one pipelined round trip and one script call)."""

    now: float
    latest: Mapping[int, Sample]
    heartbeats: Mapping[int, float]
    restarts_in_window: Mapping[int, int]
    identifies_24h: Mapping[int, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Limits:
    """The values the rules judge by: settings by name, the sample interval, and the
    `thresholds` hash's runtime overrides on top."""

    settings: Mapping[str, float] = field(default_factory=dict)
    interval_s: float = 60
    overrides: Mapping[str, float] = field(default_factory=dict)

    def setting(self, limit: Limit) -> float:
        """The configured value: the setting, else its default (per sample interval)."""
        if limit.setting is None:
            return limit.default * self.interval_s
        return self.settings.get(limit.setting, limit.default)

    def threshold(self, rule: Thresholded, shard: int | None = None) -> float:
        """`<rule>:<shard>` override, else `<rule>` (the fleet's), else the setting."""
        fleet = self.overrides.get(rule.name, self.setting(rule.threshold))
        return fleet if shard is None else self.overrides.get(f"{rule.name}:{shard}", fleet)

    @property
    def offline_after_s(self) -> float:
        """Seconds without a heartbeat after which a shard counts as offline in the fleet's
        figures, and its sample too stale to judge: 3 sample intervals. An `offline` override
        changes only when the offline rule alerts, as it always has."""
        return self.setting(OfflineRule.threshold)

    @property
    def restart_window_s(self) -> float:
        """The restart storm window: what the restarts of a `FleetView` are counted over."""
        return self.setting(RestartStormRule.window)


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


class Thresholded(Protocol):
    @property
    def name(self) -> str:
        """The rule's id in keys and overrides: `alert:<name>:<shard>`, `<name>:<shard>`."""

    @property
    def threshold(self) -> Limit:
        """What the rule fires beyond, and the setting it comes from."""


class Rule(Thresholded, Protocol):
    @property
    def options(self) -> tuple[Limit, ...]:
        """The rule's other settings (the storm window), validated like its threshold."""

    def judge(self, fleet: FleetView, limits: Limits) -> list[Finding]:
        """The shards that break the rule now."""

    def describe(self, findings: Sequence[Finding], fleet: FleetView, limits: Limits) -> AlertText:
        """One message for all the shards that fired in one tick."""

    def resolution(self, shard: int, fleet: FleetView, limits: Limits) -> AlertText | None:
        """The "resolved" message when fresh data shows the shard clear, else None."""


def rule_limits(rules: Sequence[Rule]) -> Iterator[Limit]:
    """Every limit of these rules that is a setting: the settings' fields are made of these."""
    for rule in rules:
        for limit in (rule.threshold, *rule.options):
            if limit.setting is not None:
                yield limit


def window_words(seconds: float) -> tuple[str, str]:
    """A window in words: ("the last hour", "1 hour"), ("the last 10 minutes", "10 minutes")."""
    # a day reads better as "the last 24 hours"
    sizes = (("day", 86400 * (1 if seconds > 86400 else 2)), ("hour", 3600), ("minute", 60))
    unit, size = next(
        ((u, n) for u, n in sizes if seconds >= n and seconds % n == 0), ("second", 1)
    )
    count = int(seconds // size)
    period = f"{count} {unit}{'' if count == 1 else 's'}"
    return (f"the last {unit}" if count == 1 else f"the last {period}"), period


def _shard_list(shards: Sequence[int]) -> str:
    shown = ", ".join(str(s) for s in shards[:GROUP_NAMES_SHOWN])
    more = len(shards) - GROUP_NAMES_SHOWN
    return f"{shown}, … (+{more} more)" if more > 0 else shown


def _fresh(fleet: FleetView, limits: Limits) -> dict[int, Sample]:
    """Samples recent enough to judge by: a silent shard is the offline rule's business."""
    stale_after = limits.offline_after_s
    return {
        shard: sample
        for shard, sample in fleet.latest.items()
        if fleet.now - sample.ts <= stale_after
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


class _ResourceRule:
    """A percent of a sample above the threshold, on fresh samples only: the Sample field of
    the rule's name (`memory`, `cpu`), said in capitals in the alert (`MEMORY`)."""

    __slots__ = ()
    name: ClassVar[str]
    threshold: ClassVar[Limit]
    options: ClassVar[tuple[Limit, ...]] = ()

    @property
    def label(self) -> str:
        return self.name.upper()

    @property
    def attribute(self) -> str:
        return self.name

    def judge(self, fleet: FleetView, limits: Limits) -> list[Finding]:
        findings = []
        for shard, sample in sorted(_fresh(fleet, limits).items()):
            value, limit = float(getattr(sample, self.attribute)), limits.threshold(self, shard)
            if value > limit:
                findings.append(Finding(self.name, shard, value, limit))
        return findings

    def describe(self, findings: Sequence[Finding], fleet: FleetView, limits: Limits) -> AlertText:
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

    def resolution(self, shard: int, fleet: FleetView, limits: Limits) -> AlertText | None:
        sample = _fresh(fleet, limits).get(shard)
        limit = limits.threshold(self, shard)
        if sample is None or float(getattr(sample, self.attribute)) > limit:
            return None
        value = float(getattr(sample, self.attribute))
        return AlertText(
            f"✅ Resolved: {self.label} on shard {shard}",
            f"{self.label} back to {value:.1f}% (threshold {limit:g}%)",
        )


class MemoryRule(_ResourceRule):
    __slots__ = ()
    name = "memory"
    threshold = Limit("memory_critical", "percent", 85, 1, 100)


class CpuRule(_ResourceRule):
    __slots__ = ()
    name = "cpu"
    threshold = Limit("cpu_critical", "percent", 85, 1, 100)


class _CountRule:
    """A rule on a per-shard count, which fires at or above its threshold."""

    __slots__ = ()
    name: ClassVar[str]
    threshold: ClassVar[Limit]
    options: ClassVar[tuple[Limit, ...]] = ()

    def _counts(self, fleet: FleetView) -> Mapping[int, int]:
        raise NotImplementedError

    def judge(self, fleet: FleetView, limits: Limits) -> list[Finding]:
        return [
            Finding(self.name, shard, count, limits.threshold(self, shard))
            for shard, count in sorted(self._counts(fleet).items())
            if count >= limits.threshold(self, shard)
        ]

    def _count_if_clear(self, shard: int, fleet: FleetView, limits: Limits) -> int | None:
        count = self._counts(fleet).get(shard, 0)
        return None if count >= limits.threshold(self, shard) else count


class RestartStormRule(_CountRule):
    """`restart_alert_threshold` restarts of one shard within `restart_window_s`: a crash loop."""

    __slots__ = ()
    name = "restart_storm"
    threshold = Limit("restart_alert_threshold", "restarts in the window", 3, 1, 10_000, True)
    window = Limit("restart_window_s", "seconds", 3600, 60, 7 * 86400, True)
    options = (window,)

    def _counts(self, fleet: FleetView) -> Mapping[int, int]:
        return fleet.restarts_in_window

    def describe(self, findings: Sequence[Finding], fleet: FleetView, limits: Limits) -> AlertText:
        title = "🚨 Restart Storm Detected"
        last, period = window_words(limits.restart_window_s)
        first = findings[0]
        if len(findings) == 1:
            lines = [
                f"{first.value:.0f} restarts in {last} - possible loop detected",
                f"Time period: {period}",
                f"Restart count: {first.value:.0f}",
                f"Threshold: {first.threshold:g}",
                f"Shard: {first.shard}",
            ]
        else:
            lines = [
                f"{len(findings)} shards restarting in a loop: "
                + _shard_list([f.shard for f in findings]),
                f"Most: shard {max(findings, key=lambda f: f.value).shard} with "
                f"{max(f.value for f in findings):.0f} restarts in {last}",
            ]
        return AlertText(title, "\n".join(lines))

    def resolution(self, shard: int, fleet: FleetView, limits: Limits) -> AlertText | None:
        count = self._count_if_clear(shard, fleet, limits)
        if count is None:
            return None
        last, _ = window_words(limits.restart_window_s)
        threshold = limits.threshold(self, shard)
        return AlertText(
            f"✅ Resolved: restart storm on shard {shard}",
            f"{count} restart(s) in {last} now (threshold {threshold:g})",
        )


class OfflineRule:
    """No heartbeat for 3 sample intervals (or the `offline` override)."""

    __slots__ = ()
    name = "offline"
    threshold = Limit(None, "seconds without heartbeat", 3, 1, 7 * 86400)
    options: ClassVar[tuple[Limit, ...]] = ()

    def judge(self, fleet: FleetView, limits: Limits) -> list[Finding]:
        return [
            Finding(self.name, shard, fleet.now - seen, limits.threshold(self, shard))
            for shard, seen in sorted(fleet.heartbeats.items())
            if fleet.now - seen > limits.threshold(self, shard)
        ]

    def describe(self, findings: Sequence[Finding], fleet: FleetView, limits: Limits) -> AlertText:
        if len(findings) == 1:
            f = findings[0]
            seen = time.strftime("%H:%M:%S UTC", time.gmtime(fleet.now - f.value))
            body = f"Shard {f.shard}: no heartbeat for {format_uptime(f.value)} (last seen {seen})"
        else:
            body = f"{len(findings)} shards silent: " + _shard_list([f.shard for f in findings])
        return AlertText("🔌 Shard Offline", body)

    def resolution(self, shard: int, fleet: FleetView, limits: Limits) -> AlertText | None:
        seen = fleet.heartbeats.get(shard)
        if seen is None or fleet.now - seen > limits.threshold(self, shard):
            return None
        return AlertText(f"✅ Resolved: shard {shard} is back online", "Heartbeats resumed")


class IdentifyStormRule(_CountRule):
    """A shard that IDENTIFYs far more than it should (each burns one of Discord's daily
    session starts): the sign of a reconnect loop that process restarts do not show."""

    __slots__ = ()
    name = "identify_storm"
    threshold = Limit("identify_alert_threshold", "IDENTIFYs in 24 h", 25, 1, 1000, True)

    def _counts(self, fleet: FleetView) -> Mapping[int, int]:
        return fleet.identifies_24h

    def describe(self, findings: Sequence[Finding], fleet: FleetView, limits: Limits) -> AlertText:
        lines = [
            f"Shard {f.shard}: {f.value:.0f} IDENTIFYs in 24 hours (threshold {f.threshold:g})"
            for f in findings[:GROUP_NAMES_SHOWN]
        ]
        if len(findings) > GROUP_NAMES_SHOWN:
            lines.append(f"… (+{len(findings) - GROUP_NAMES_SHOWN} more shards)")
        lines.append("Each one uses a daily session start: look for a reconnect loop.")
        return AlertText("🔁 Gateway Identify Storm", "\n".join(lines))

    def resolution(self, shard: int, fleet: FleetView, limits: Limits) -> AlertText | None:
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


@dataclass(frozen=True, slots=True)
class StormReport:
    """Restart storms now, as /restart_stats, `shardmon stats` and the exporter show them."""

    window_s: float
    threshold: float  # the fleet's: the `restart_storm` override, else the setting
    restarts: Mapping[int, int]  # restarts in the window of each shard that has any
    storms: Mapping[int, int]  # the shards at or above their own threshold, and their count

    @property
    def window(self) -> str:
        """The window in words: "the last hour"."""
        return window_words(self.window_s)[0]


def storm_report(restarts: Mapping[int, int], limits: Limits, now: float) -> StormReport:
    """Judge restart counts by the storm rule, overrides included (pure)."""
    rule = RestartStormRule()
    fleet = FleetView(now=now, latest={}, heartbeats={}, restarts_in_window=restarts)
    return StormReport(
        window_s=limits.restart_window_s,
        threshold=limits.threshold(rule),
        restarts=dict(restarts),
        storms={f.shard: int(f.value) for f in rule.judge(fleet, limits)},
    )
