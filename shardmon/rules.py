"""The leader's rules: small objects that judge a snapshot of the fleet and word their alerts.

Each rule owns what there is to know about it: its name (in keys and overrides), its threshold
(the `SHARDMON_*` setting, unit, bounds and default, as a `Limit`), any other setting it takes
(the storm window), how it judges, and the words of its alert and of its "resolved" message.
Settings fields, `shardmon thresholds`, the CLI's checks and the validation are derived from
`DEFAULT_RULES`: adding a rule with a threshold is one class here plus its test. Rules are
pure: no Redis, no Discord.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, ClassVar, Protocol, cast

from shardmon.keys import RECENT_RESTARTS_S
from shardmon.models import GatewayState, RunState, Sample, SessionStartLimit
from shardmon.render import format_uptime

__all__ = [
    "DEFAULT_RULES",
    "AlertText",
    "CpuRule",
    "DisconnectedRule",
    "Finding",
    "FleetView",
    "GatewayOutageRule",
    "IdentifyBudgetRule",
    "IdentifyStormRule",
    "Limit",
    "Limits",
    "LoopStallRule",
    "MemoryRule",
    "OfflineRule",
    "RestartStormRule",
    "RestartsHeldRule",
    "Rule",
    "StormReport",
    "ZombieRule",
    "connection_state",
    "rule_limits",
    "shard_badge",
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
    #: IDENTIFYs of the whole fleet in the last hour: the burn rate of the session budget.
    identifies_1h: int = 0
    #: The bot's session start limit as the leader last read it (None: never, or unknown).
    session_limit: SessionStartLimit | None = None
    #: Conditions announced and not yet resolved (`<rule>[:<shard>]`) -> when announced.
    active: Mapping[str, float] = field(default_factory=dict)
    shard_count: int = 0
    #: Node -> what each supervisor (`shardmon run`) said it does with its child.
    supervisors: Mapping[str, RunState] = field(default_factory=dict)
    #: What the rules derive from the view, made once a tick for all of them (`_fresh`).
    _derived: dict[Any, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def full_restart_s(self) -> float:
        """How long IDENTIFYing every shard takes at the bot's `max_concurrency` (1 if
        unknown): how long a shard may wait for its first connection after a start."""
        limit = self.session_limit
        shards = max(self.shard_count, len(self.latest))
        return limit.full_restart_s(shards) if limit else math.ceil(shards) * 5.0


@dataclass(frozen=True, slots=True)
class Limits:
    """The values the rules judge by: settings by name, the sample interval, and the
    `thresholds` hash's runtime overrides on top."""

    settings: Mapping[str, float] = field(default_factory=dict)
    interval_s: float = 60
    overrides: Mapping[str, float] = field(default_factory=dict)
    #: rule -> shard -> its `<rule>:<shard>` override, indexed once (the rules ask per shard).
    _per_shard: dict[str, dict[int, float]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        per_shard: dict[str, dict[int, float]] = {}
        for name, value in self.overrides.items():
            rule, _, shard = name.rpartition(":")
            if rule and shard.isdigit():
                per_shard.setdefault(rule, {})[int(shard)] = value
        object.__setattr__(self, "_per_shard", per_shard)

    def setting(self, limit: Limit) -> float:
        """The configured value: the setting, else its default (per sample interval)."""
        if limit.setting is None:
            return limit.default * self.interval_s
        return self.settings.get(limit.setting, limit.default)

    def threshold(self, rule: Thresholded, shard: int | None = None) -> float:
        """`<rule>:<shard>` override, else `<rule>` (the fleet's), else the setting."""
        fleet, per_shard = self.thresholds(rule)
        return fleet if shard is None else per_shard.get(shard, fleet)

    def thresholds(self, rule: Thresholded) -> tuple[float, Mapping[int, float]]:
        """The fleet's threshold of `rule` and its per-shard overrides: what a rule judging
        thousands of shards looks each one up in (`per_shard.get(shard, fleet)`)."""
        fleet = self.overrides.get(rule.name)
        if fleet is None:
            fleet = self.setting(rule.threshold)
        return fleet, self._per_shard.get(rule.name, {})

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
    """A rule broken: on one shard, or by the whole fleet (`shard` None)."""

    rule: str
    shard: int | None
    value: float
    threshold: float
    #: When the condition began, where the rule measures a duration (offline, disconnected,
    #: zombie): the incident's start, earlier than its alert by the threshold.
    since: float | None = None


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

    @property
    def inhibits(self) -> tuple[str, ...]:
        """Rules whose alerts are held while this one fires or is announced (an outage holds
        the per-shard `disconnected` alerts: one incident, not hundreds of alerts)."""

    @property
    def incident(self) -> str | None:
        """What the public status page calls the condition ("Shard offline"), or None: the
        rule speaks of infrastructure (resources, the IDENTIFY budget), for operators only."""

    def judge(self, fleet: FleetView, limits: Limits) -> list[Finding]:
        """The shards that break the rule now."""

    def describe(self, findings: Sequence[Finding], fleet: FleetView, limits: Limits) -> AlertText:
        """One message for all the shards that fired in one tick."""

    def resolution(self, shard: int | None, fleet: FleetView, limits: Limits) -> AlertText | None:
        """The "resolved" message when fresh data shows the shard (or the fleet, for a
        fleet-wide rule: `shard` None) clear, else None."""


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


def _shard_list(shards: Sequence[int | None]) -> str:
    shown = ", ".join(str(s) for s in shards[:GROUP_NAMES_SHOWN])
    more = len(shards) - GROUP_NAMES_SHOWN
    return f"{shown}, … (+{more} more)" if more > 0 else shown


def _on_shard(finding: Finding) -> int:
    """The shard of a per-shard rule's finding (which always names one)."""
    if finding.shard is None:
        raise ValueError(f"a {finding.rule} finding names no shard")
    return finding.shard


def _fresh(fleet: FleetView, limits: Limits) -> dict[int, Sample]:
    """Samples recent enough to judge by, by shard id: a silent shard is the offline rule's
    business. Made once a tick for every rule."""
    oldest = fleet.now - limits.offline_after_s
    key = ("fresh", oldest)
    if key not in fleet._derived:
        fleet._derived[key] = {
            shard: fleet.latest[shard] for shard in sorted(fleet.latest)
            if fleet.latest[shard].ts >= oldest
        }  # fmt: skip
    return cast("dict[int, Sample]", fleet._derived[key])


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
    inhibits: ClassVar[tuple[str, ...]] = ()
    incident: ClassVar[str | None] = None

    @property
    def label(self) -> str:
        return self.name.upper()

    @property
    def attribute(self) -> str:
        return self.name

    def judge(self, fleet: FleetView, limits: Limits) -> list[Finding]:
        fleet_limit, per_shard = limits.thresholds(self)
        value_of = attrgetter(self.attribute)
        fresh = _fresh(fleet, limits)
        if not per_shard:  # the common case, and the whole fleet: one comparison a shard
            over = [
                (s, v, fleet_limit) for s, x in fresh.items() if (v := value_of(x)) > fleet_limit
            ]
        else:
            over = [
                (shard, value, limit)
                for shard, sample in fresh.items()
                if (value := value_of(sample)) > (limit := per_shard.get(shard, fleet_limit))
            ]
        return [Finding(self.name, shard, value, limit) for shard, value, limit in over]

    def describe(self, findings: Sequence[Finding], fleet: FleetView, limits: Limits) -> AlertText:
        title = "⚠️ High Resource Usage Detected"
        lines = [f"Critical thresholds exceeded: {self.label}"]
        if len(findings) == 1:
            lines += _resource_details(fleet.latest[_on_shard(findings[0])], fleet.now)
        else:
            worst = max(findings, key=lambda f: f.value)
            threshold = min(f.threshold for f in findings)
            lines.append(
                f"{len(findings)} shards above {threshold:g}% {self.label.lower()}: "
                + _shard_list([f.shard for f in findings])
            )
            lines.append(f"Highest: shard {worst.shard} at {worst.value:.1f}%")
        return AlertText(title, "\n".join(lines))

    def resolution(self, shard: int | None, fleet: FleetView, limits: Limits) -> AlertText | None:
        sample = None if shard is None else _fresh(fleet, limits).get(shard)
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
    inhibits: ClassVar[tuple[str, ...]] = ()
    incident: ClassVar[str | None] = None

    def _counts(self, fleet: FleetView) -> Mapping[int, int]:
        raise NotImplementedError

    def judge(self, fleet: FleetView, limits: Limits) -> list[Finding]:
        fleet_limit, per_shard = limits.thresholds(self)
        return [
            Finding(self.name, shard, count, limit)
            for shard, count in sorted(self._counts(fleet).items())
            if count >= (limit := per_shard.get(shard, fleet_limit))
        ]

    def _count_if_clear(self, shard: int | None, fleet: FleetView, limits: Limits) -> int | None:
        if shard is None:
            return None
        count = self._counts(fleet).get(shard, 0)
        return None if count >= limits.threshold(self, shard) else count


class RestartStormRule(_CountRule):
    """`restart_alert_threshold` restarts of one shard within `restart_window_s`: a crash loop."""

    __slots__ = ()
    name = "restart_storm"
    incident: ClassVar[str | None] = "Restart storm"
    threshold = Limit("restart_alert_threshold", "restarts in the window", 3, 1, 10_000, True)
    window = Limit("restart_window_s", "seconds", 3600, 60, RECENT_RESTARTS_S, True)
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

    def resolution(self, shard: int | None, fleet: FleetView, limits: Limits) -> AlertText | None:
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
    incident: ClassVar[str | None] = "Shard offline"
    threshold = Limit(None, "seconds without heartbeat", 3, 1, 7 * 86400)
    options: ClassVar[tuple[Limit, ...]] = ()
    inhibits: ClassVar[tuple[str, ...]] = ()

    def judge(self, fleet: FleetView, limits: Limits) -> list[Finding]:
        fleet_limit, per_shard = limits.thresholds(self)
        now = fleet.now
        # the least threshold first rules out the shards seen lately, before any lookup
        seen_after = now - min([fleet_limit, *per_shard.values()])
        silent = sorted(
            (shard, now - seen, limit)
            for shard, seen in fleet.heartbeats.items()
            if seen < seen_after and now - seen > (limit := per_shard.get(shard, fleet_limit))
        )
        return [
            Finding(self.name, shard, value, limit, now - value) for shard, value, limit in silent
        ]

    def describe(self, findings: Sequence[Finding], fleet: FleetView, limits: Limits) -> AlertText:
        if len(findings) == 1:
            f = findings[0]
            seen = time.strftime("%H:%M:%S UTC", time.gmtime(fleet.now - f.value))
            body = f"Shard {f.shard}: no heartbeat for {format_uptime(f.value)} (last seen {seen})"
        else:
            body = f"{len(findings)} shards silent: " + _shard_list([f.shard for f in findings])
        return AlertText("🔌 Shard Offline", body)

    def resolution(self, shard: int | None, fleet: FleetView, limits: Limits) -> AlertText | None:
        seen = None if shard is None else fleet.heartbeats.get(shard)
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

    def resolution(self, shard: int | None, fleet: FleetView, limits: Limits) -> AlertText | None:
        count = self._count_if_clear(shard, fleet, limits)
        if count is None:
            return None
        return AlertText(
            f"✅ Resolved: identify storm on shard {shard}", f"{count} IDENTIFYs in 24 hours now"
        )


# -- the gateway: connections, zombies, stalls, the IDENTIFY budget, outages ---------------------


def _gateway_of(
    fleet: FleetView, limits: Limits, shard: int | None
) -> tuple[Sample, GatewayState, float] | None:
    """A shard's fresh sample, its gateway state and the sample's age at `fleet.now` (its
    durations grow by that much: they were measured when it was taken); None without them."""
    sample = None if shard is None else _fresh(fleet, limits).get(shard)
    if sample is None or sample.gateway is None:
        return None
    return sample, sample.gateway, max(0.0, fleet.now - sample.ts)


def _gateways(fleet: FleetView, limits: Limits) -> list[tuple[int, GatewayState]]:
    """Every fresh sample's gateway state (for the fleet-wide views of the outage rule)."""
    return [(s, x.gateway) for s, x in _fresh(fleet, limits).items() if x.gateway is not None]


@dataclass(frozen=True, slots=True)
class _Digest:
    """The fresh samples' gateway states sorted once a tick for the gateway rules, so that each
    reads only its few candidates (at 20,000 shards, four passes over every sample fewer)."""

    reporting: int  # fresh samples with gateway state
    down: list[tuple[int, Sample, GatewayState]]  # disconnected
    stalled: list[tuple[int, Sample, GatewayState]]  # with a stall warning in the last hour


def _digest(fleet: FleetView, limits: Limits) -> _Digest:
    key = ("digest", limits.offline_after_s)
    if key not in fleet._derived:
        reporting = 0
        down: list[tuple[int, Sample, GatewayState]] = []
        stalled: list[tuple[int, Sample, GatewayState]] = []
        for shard, sample in _fresh(fleet, limits).items():
            gateway = sample.gateway
            if gateway is None:
                continue
            reporting += 1
            if not gateway.connected:
                down.append((shard, sample, gateway))
            if gateway.stalls_1h:
                stalled.append((shard, sample, gateway))
        fleet._derived[key] = _Digest(reporting, down, stalled)
    return cast("_Digest", fleet._derived[key])


def _clock(ts: float | None) -> str:
    return "?" if ts is None else time.strftime("%H:%M:%S UTC", time.gmtime(ts))


class DisconnectedRule:
    """A shard's gateway disconnected longer than the threshold while its process reports
    (discord.py reconnects by itself: a shard down this long is stuck). A shard that has not
    connected since its process started is given the fleet's full IDENTIFY time first."""

    __slots__ = ()
    name = "disconnected"
    incident: ClassVar[str | None] = "Gateway disconnected"
    threshold = Limit("disconnected_after_s", "seconds disconnected", 120, 10, 86400, True)
    options: ClassVar[tuple[Limit, ...]] = ()
    inhibits: ClassVar[tuple[str, ...]] = ()

    def judge(self, fleet: FleetView, limits: Limits) -> list[Finding]:
        fleet_limit, per_shard = limits.thresholds(self)
        now, findings = fleet.now, []
        for shard, sample, gateway in _digest(fleet, limits).down:
            limit = per_shard.get(shard, fleet_limit)
            allowance = limit if gateway.last_connect is not None else limit + fleet.full_restart_s
            down = gateway.since_s + max(0.0, now - sample.ts)
            if down > allowance:
                findings.append(Finding(self.name, shard, down, limit, now - down))
        return findings

    def describe(self, findings: Sequence[Finding], fleet: FleetView, limits: Limits) -> AlertText:
        title = "🔌 Shard Gateway Disconnected"
        if len(findings) == 1:
            f = findings[0]
            sample = fleet.latest[f.shard] if f.shard is not None else None
            gateway = sample.gateway if sample else None
            since = (
                "never connected"
                if gateway and gateway.last_connect is None
                else (f"since {_clock(gateway.last_disconnect if gateway else None)}")
            )
            body = [
                f"Shard {f.shard}: gateway disconnected for {format_uptime(f.value)} ({since})",
                f"Its process still reports ({sample.node if sample else '?'}); "
                "discord.py has not managed to reconnect it.",
                f"Threshold: {format_uptime(f.threshold)}",
            ]
        else:
            body = [
                f"{len(findings)} shards disconnected longer than "
                f"{format_uptime(min(f.threshold for f in findings))}: "
                + _shard_list([f.shard for f in findings]),
                "Their processes still report; discord.py has not managed to reconnect them.",
            ]
        return AlertText(title, "\n".join(body))

    def resolution(self, shard: int | None, fleet: FleetView, limits: Limits) -> AlertText | None:
        found = _gateway_of(fleet, limits, shard)
        if found is None or not found[1].connected:
            return None
        gateway = found[1]
        how = "resumed" if (gateway.last_resume or 0) > (gateway.last_connect or 0) else "connected"
        return AlertText(
            f"✅ Resolved: shard {shard} gateway connected", f"Shard {shard} {how} again"
        )


class ZombieRule:
    """A connected shard with servers that has received no gateway dispatch for the threshold:
    a zombie connection, heartbeats acknowledged but no events (0 turns the rule off)."""

    __slots__ = ()
    name = "zombie"
    incident: ClassVar[str | None] = "Shard receiving no events"
    threshold = Limit("zombie_after_s", "seconds without a dispatch (0: off)", 900, 0, 86400, True)
    options: ClassVar[tuple[Limit, ...]] = ()
    inhibits: ClassVar[tuple[str, ...]] = ()

    def silent_for(self, sample: Sample, gateway: GatewayState, age: float) -> float | None:
        if not gateway.connected or sample.guilds <= 0 or gateway.dispatch_age_s is None:
            return None
        return gateway.dispatch_age_s + age

    def judge(self, fleet: FleetView, limits: Limits) -> list[Finding]:
        fleet_limit, per_shard = limits.thresholds(self)
        if fleet_limit <= 0 and not per_shard:
            return []  # off
        # `silent_for`, inlined: this runs for every shard of the fleet; the lowest threshold
        # first rules out all but the silent shards, before any per-shard lookup
        lowest = min([fleet_limit, *per_shard.values()])
        now = fleet.now
        silent = [
            (shard, silent, per_shard.get(shard, fleet_limit))
            for shard, sample in _fresh(fleet, limits).items()
            if (gateway := sample.gateway) is not None
            and gateway.connected
            and gateway.dispatch_age_s is not None
            and (silent := gateway.dispatch_age_s + now - sample.ts) > lowest
            and sample.guilds > 0
        ]
        return [
            Finding(self.name, shard, value, limit, now - value)
            for shard, value, limit in silent
            if 0 < limit < value
        ]

    def describe(self, findings: Sequence[Finding], fleet: FleetView, limits: Limits) -> AlertText:
        lines = []
        for f in findings[:GROUP_NAMES_SHOWN]:
            sample = fleet.latest.get(_on_shard(f))
            guilds = sample.guilds if sample else 0
            lines.append(
                f"Shard {f.shard}: connected, {guilds:,} servers, no gateway event for "
                f"{format_uptime(f.value)}"
            )
        if len(findings) > GROUP_NAMES_SHOWN:
            lines.append(f"… (+{len(findings) - GROUP_NAMES_SHOWN} more shards)")
        lines.append("A zombie connection: restart these shards (their sessions resume).")
        return AlertText("🧟 Zombie Shard", "\n".join(lines))

    def resolution(self, shard: int | None, fleet: FleetView, limits: Limits) -> AlertText | None:
        found = _gateway_of(fleet, limits, shard)
        if found is None:
            return None
        silent = self.silent_for(*found)
        if silent is not None and silent > limits.threshold(self, shard):
            return None
        return AlertText(
            f"✅ Resolved: zombie shard {shard}", f"Shard {shard} receives gateway events again"
        )


class LoopStallRule:
    """discord.py warned that a shard's heartbeat was blocked or could not keep up: the bot's
    event loop stalled (a blocking call in a handler), threshold-many times in the last hour."""

    __slots__ = ()
    name = "loop_stall"
    threshold = Limit("loop_stall_threshold", "warnings in an hour", 1, 1, 10_000, True)
    options: ClassVar[tuple[Limit, ...]] = ()
    inhibits: ClassVar[tuple[str, ...]] = ()
    incident: ClassVar[str | None] = None

    def judge(self, fleet: FleetView, limits: Limits) -> list[Finding]:
        fleet_limit, per_shard = limits.thresholds(self)
        return [
            Finding(self.name, shard, gateway.stalls_1h, limit)
            for shard, _, gateway in _digest(fleet, limits).stalled
            if gateway.stalls_1h >= (limit := per_shard.get(shard, fleet_limit))
        ]

    def describe(self, findings: Sequence[Finding], fleet: FleetView, limits: Limits) -> AlertText:
        lines = [
            f"Shard {f.shard}: {f.value:.0f} heartbeat-blocked or can't-keep-up warning(s) "
            "in the last hour"
            for f in findings[:GROUP_NAMES_SHOWN]
        ]
        if len(findings) > GROUP_NAMES_SHOWN:
            lines.append(f"… (+{len(findings) - GROUP_NAMES_SHOWN} more shards)")
        lines.append(
            "The bot's event loop was blocked (a blocking call in a handler?): discord.py "
            "logs where it was, under discord.gateway."
        )
        return AlertText("🐢 Event Loop Stalled", "\n".join(lines))

    def resolution(self, shard: int | None, fleet: FleetView, limits: Limits) -> AlertText | None:
        found = _gateway_of(fleet, limits, shard)
        if found is None or found[1].stalls_1h >= limits.threshold(self, shard):
            return None
        return AlertText(
            f"✅ Resolved: event loop stalls on shard {shard}", "No stall warning in the last hour"
        )


@dataclass(frozen=True, slots=True)
class BudgetVerdict:
    """The session start limit judged: how much is left, and where the last hour's rate
    would take it before the reset."""

    limit: SessionStartLimit
    left_percent: float
    resets_in_s: float
    runs_out_in_s: float | None  # at the last hour's rate; None when it is not burning

    def low(self, warn_percent: float) -> bool:
        return self.left_percent < warn_percent

    @property
    def exhausts_before_reset(self) -> bool:
        return self.runs_out_in_s is not None and self.runs_out_in_s < self.resets_in_s


class IdentifyBudgetRule:
    """The bot's session start limit (1,000 IDENTIFYs a day for most bots, for all shards)
    below the threshold percent of its total, or burning at a rate that exhausts it before it
    resets. When it runs out, Discord ends every session and resets the bot's token."""

    __slots__ = ()
    name = "identify_budget"
    threshold = Limit("identify_budget_warn", "percent of the daily total left", 25, 1, 100)
    options: ClassVar[tuple[Limit, ...]] = ()
    inhibits: ClassVar[tuple[str, ...]] = ()
    incident: ClassVar[str | None] = None

    @staticmethod
    def verdict(fleet: FleetView) -> BudgetVerdict | None:
        """The budget now, or None when unknown or read before its last reset (stale)."""
        limit = fleet.session_limit
        if limit is None or limit.resets_at <= fleet.now:
            return None
        # One IDENTIFY a shard is what a full restart (a deployment) costs: only a faster
        # burn than that is projected.
        burning = fleet.identifies_1h > max(fleet.shard_count, 1)
        return BudgetVerdict(
            limit=limit,
            left_percent=100 * limit.remaining / limit.total,
            resets_in_s=limit.resets_at - fleet.now,
            runs_out_in_s=limit.remaining / fleet.identifies_1h * 3600 if burning else None,
        )

    def judge(self, fleet: FleetView, limits: Limits) -> list[Finding]:
        verdict, warn = self.verdict(fleet), limits.threshold(self)
        if verdict is None or not (verdict.low(warn) or verdict.exhausts_before_reset):
            return []
        return [Finding(self.name, None, verdict.limit.remaining, warn)]

    def describe(self, findings: Sequence[Finding], fleet: FleetView, limits: Limits) -> AlertText:
        verdict = self.verdict(fleet)
        assert verdict is not None  # it fired on this fleet
        limit = verdict.limit
        lines = [
            f"{limit.remaining:,} of {limit.total:,} session starts left "
            f"({verdict.left_percent:.0f}%), resets in {format_uptime(verdict.resets_in_s)}",
            f"Fleet IDENTIFYs in the last hour: {fleet.identifies_1h:,}",
        ]
        if verdict.runs_out_in_s is not None:
            lines.append(f"At that rate it runs out in {format_uptime(verdict.runs_out_in_s)}")
        lines.append(
            "When it runs out, Discord ends every session and resets the bot token: stop "
            "restart loops now (`shardmon restarts`, the identify_storm alerts)."
        )
        return AlertText("🪫 IDENTIFY Budget Low", "\n".join(lines))

    def resolution(self, shard: int | None, fleet: FleetView, limits: Limits) -> AlertText | None:
        verdict = self.verdict(fleet)
        if verdict is None or verdict.low(limits.threshold(self)) or verdict.exhausts_before_reset:
            return None
        return AlertText(
            "✅ Resolved: IDENTIFY budget",
            f"{verdict.limit.remaining:,} of {verdict.limit.total:,} session starts left",
        )


class GatewayOutageRule:
    """At least the threshold fraction of the reporting shards (and two) disconnected within
    two ticks of each other: Discord's gateway, or this fleet's network, is down. One incident
    alert instead of one a shard: it holds the per-shard `disconnected` alerts while it lasts,
    and is resolved once most shards are back (fewer than half as many down as it took)."""

    __slots__ = ()
    name = "gateway_outage"
    incident: ClassVar[str | None] = "Discord gateway outage"
    threshold = Limit("outage_fraction", "fraction of the shards", 0.5, 0.01, 1)
    options: ClassVar[tuple[Limit, ...]] = ()
    inhibits: ClassVar[tuple[str, ...]] = (DisconnectedRule.name,)

    def _needed(self, reporting: int, limits: Limits) -> int:
        return max(2, math.ceil(limits.threshold(self) * reporting))

    def judge(self, fleet: FleetView, limits: Limits) -> list[Finding]:
        if self.name in fleet.active:  # announced: one incident, until it is resolved
            return []
        digest = _digest(fleet, limits)
        needed = self._needed(digest.reporting, limits)
        if len(digest.down) < needed:
            return []
        now = fleet.now
        went_down = sorted(  # when each went down: the sample's time, less its `since_s`
            min(now, sample.ts) - gateway.since_s
            for _, sample, gateway in digest.down
            if gateway.last_connect is not None
        )
        span = 2 * limits.interval_s
        start, together = 0, 0
        for end, instant in enumerate(went_down):  # the most disconnects within two ticks
            while instant - went_down[start] > span:
                start += 1
            together = max(together, end - start + 1)
        if together < needed:
            return []
        return [Finding(self.name, None, together, needed)]

    def describe(self, findings: Sequence[Finding], fleet: FleetView, limits: Limits) -> AlertText:
        gateways = _gateways(fleet, limits)
        down = [shard for shard, gateway in gateways if not gateway.connected]
        return AlertText(
            "🌩️ Discord gateway outage suspected",
            f"{len(down)} of {len(gateways)} shards disconnected: " + _shard_list(down) + "\n"
            "One incident: per-shard disconnect alerts are held until it is resolved.",
        )

    def resolution(self, shard: int | None, fleet: FleetView, limits: Limits) -> AlertText | None:
        gateways = _gateways(fleet, limits)
        down = sum(not gateway.connected for _, gateway in gateways)
        if not gateways or down >= self._needed(len(gateways), limits) / 2:
            return None
        since = fleet.active.get(self.name)
        lasted = f"; it lasted {format_uptime(fleet.now - since)}" if since else ""
        return AlertText(
            "✅ Resolved: Discord gateway outage",
            f"{len(gateways) - down} of {len(gateways)} shards connected again{lasted}",
        )


class RestartsHeldRule:
    """A supervisor (`shardmon run`) holds its child back: restarts paused by a restart storm
    (until `shardmon run --resume`), or held until Discord's session start limit resets. Said
    once a hold, with what lifts it (the supervisor's own words), after the threshold (0: at
    once); resolved when the child runs again. A back-off is not a hold: it ends by itself."""

    __slots__ = ()
    name = "restarts_held"
    incident: ClassVar[str | None] = None  # the operators' matter
    threshold = Limit(None, "seconds held before the alert", 0, 0, 7 * 86400)
    options: ClassVar[tuple[Limit, ...]] = ()
    inhibits: ClassVar[tuple[str, ...]] = ()

    @staticmethod
    def held(fleet: FleetView, limits: Limits) -> dict[int, RunState]:
        """Shard -> the state of its supervisor, where one that reported lately holds it."""
        fresh_after = fleet.now - limits.offline_after_s
        return {shard: state for state in fleet.supervisors.values()
                if state.seen >= fresh_after and state.holding
                for shard in state.shards}  # fmt: skip

    def judge(self, fleet: FleetView, limits: Limits) -> list[Finding]:
        fleet_limit, per_shard = limits.thresholds(self)
        findings = []
        for shard, state in sorted(self.held(fleet, limits).items()):
            if f"{self.name}:{shard}" in fleet.active:  # said: once a hold, until it ends
                continue
            held_for, limit = fleet.now - state.since, per_shard.get(shard, fleet_limit)
            if held_for >= limit:
                findings.append(Finding(self.name, shard, held_for, limit, state.since))
        return findings

    def describe(self, findings: Sequence[Finding], fleet: FleetView, limits: Limits) -> AlertText:
        held = self.held(fleet, limits)
        by_node: dict[str, list[int]] = {}
        for finding in findings:
            by_node.setdefault(held[_on_shard(finding)].node, []).append(_on_shard(finding))
        lines = []
        for node, shards in by_node.items():
            state = held[shards[0]]
            until = "" if state.until is None else f" (until {_clock(state.until)})"
            lines.append(f"Shard {_shard_list(shards)} ({node}): {state.reason}{until}")
        return AlertText("⏸️ Restarts Held by shardmon run", "\n".join(lines))

    def resolution(self, shard: int | None, fleet: FleetView, limits: Limits) -> AlertText | None:
        if shard is None or shard in self.held(fleet, limits):
            return None
        return AlertText(
            f"✅ Resolved: restarts of shard {shard}", "its supervisor restarts it again"
        )


def connection_state(sample: Sample | None, fleet_now: float, limits: Limits) -> str:
    """A shard's gateway in words, as /shards and `shardmon status` show it: `connected`,
    `connecting` (not yet since its process started), `resuming` (a short drop: discord.py
    reconnects), `disconnected for 3m`, `zombie` (no dispatch for the zombie threshold), or
    `-` for a sample without gateway state."""
    gateway = None if sample is None else sample.gateway
    if sample is None or gateway is None:
        return "-"
    age = max(0.0, fleet_now - sample.ts)
    if gateway.connected:
        zombie = ZombieRule()
        silent = zombie.silent_for(sample, gateway, age)
        limit = limits.threshold(zombie, sample.shard)
        return "zombie" if limit > 0 and silent is not None and silent > limit else "connected"
    if gateway.last_connect is None:
        return "connecting"
    down = gateway.since_s + age
    if down <= limits.threshold(DisconnectedRule(), sample.shard):
        return "resuming"
    return f"disconnected for {format_uptime(down)}"


DEFAULT_RULES: tuple[Rule, ...] = (
    MemoryRule(),
    CpuRule(),
    RestartStormRule(),
    OfflineRule(),
    IdentifyStormRule(),
    DisconnectedRule(),
    ZombieRule(),
    LoopStallRule(),
    IdentifyBudgetRule(),
    GatewayOutageRule(),
    RestartsHeldRule(),
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
        storms={_on_shard(f): int(f.value) for f in rule.judge(fleet, limits)},
    )


def shard_badge(online: bool, state: str) -> str:
    """A shard's status at a glance: its process (offline: 🔴 down) and its gateway
    (`connection_state`): 🟢 up, 🟡 resuming or connecting, 🔌 disconnected, 🧟 zombie."""
    if not online:
        return "🔴 down"
    if state.startswith("disconnected"):
        return "🔌 disconnected"
    return {"zombie": "🧟 zombie", "resuming": "🟡 resuming", "connecting": "🟡 connecting"}.get(
        state, "🟢 up"
    )
