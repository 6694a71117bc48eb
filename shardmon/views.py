"""The command line's views: pure functions of the store's answers, as text or as JSON.

`shardmon status`, `restarts`, `stats`, `performance`, `alerts`, `keys`, `thresholds` and
`prune` print these; the demo prints the same ones. Like the embeds of the cog, they read
nothing and write nothing, so each is tested on data made by hand.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from shardmon.keys import KeyInfo
from shardmon.models import FLEET_TS_MIN_SKEW_S, RestartEvent
from shardmon.render import (
    clock_line,
    format_uptime,
    run_words,
    session_limit_line,
    status_emoji,
    table,
)
from shardmon.rules import (
    DEFAULT_RULES,
    CpuRule,
    Limits,
    MemoryRule,
    Rule,
    StormReport,
    connection_state,
    shard_badge,
)
from shardmon.stats import Performance, RestartStats, Spread, clock_skews
from shardmon.store import FleetStatus, PruneResult

if TYPE_CHECKING:
    from shardmon.settings import Settings

__all__ = [
    "StatusReport",
    "alerts_view",
    "attention_reasons",
    "keys_view",
    "performance_view",
    "prune_view",
    "restarts_view",
    "stats_view",
    "status_report",
    "status_view",
    "thresholds_view",
]

_SHARD_HEADERS = ["shard", "status", "gateway", "cpu%", "mem%", "ms", "guilds", "uptime", "seen",
                  "id/24h", "res/24h"]  # fmt: skip


def _spread(spread: Spread | None, warn: float, critical: float) -> str:
    if spread is None:
        return "no data"
    emoji = status_emoji(spread.average, warn, critical)
    return f"{emoji} {spread.average:.1f}% avg, {spread.peak:.1f}% peak"


def _ago(ts: float | None, now: float) -> str:
    return "never" if ts is None else f"{format_uptime(now - ts)} ago"


@dataclass(frozen=True, slots=True)
class StatusReport:
    """`shardmon status`: what it prints, and why the fleet needs attention (none: healthy),
    which makes its exit code 1 for cron and Nagios-style checks."""

    view: Any
    attention: list[str]


def _states(status: FleetStatus, limits: Limits) -> dict[int, str]:
    """Each reporting shard's gateway in words (`-` for an offline one)."""
    return {s.shard: connection_state(s.sample, status.now, limits) if s.online else "-"
            for s in status.summary.shards}  # fmt: skip


def _attention(status: FleetStatus, states: Mapping[int, str], never_seen: int) -> list[str]:
    counts = {
        "offline": status.summary.offline,
        "never seen": never_seen,
        "disconnected": sum(1 for state in states.values() if state.startswith("disconnected")),
        "zombie": sum(1 for state in states.values() if state == "zombie"),
    }
    reasons = [f"{n} shard(s) {what}" for what, n in counts.items() if n]
    held = [s for s in status.supervisors.values() if s.holding]
    if held:
        reasons.append(f"restarts held by {len(held)} supervisor(s)")
    if status.leadership.node is None:
        reasons.append("no leader")
    return reasons


def _never_seen(status: FleetStatus, shard_count: int) -> list[int]:
    seen = {s.shard for s in status.summary.shards}
    return [shard for shard in range(shard_count) if shard not in seen]


def attention_reasons(status: FleetStatus, shard_count: int, limits: Limits) -> list[str]:
    """Why the fleet needs attention: shards offline or never seen, shards whose gateway is
    disconnected past the rule's threshold or a zombie (not those connecting or resuming,
    as discord.py does after a short drop), or no leader."""
    return _attention(status, _states(status, limits), len(_never_seen(status, shard_count)))


def status_view(status: FleetStatus, settings: Settings, *, as_json: bool = False) -> Any:
    """The /uptime and /shards views in one: the fleet, the leader, and a line per shard."""
    return status_report(status, settings, as_json=as_json).view


def status_report(
    status: FleetStatus, settings: Settings, *, as_json: bool = False
) -> StatusReport:
    """The status view and the reasons the fleet needs attention, each shard's state
    worked out once for both."""
    summary, gateway, leadership, now = (
        status.summary,
        status.gateway,
        status.leadership,
        status.now,
    )
    limits, warn, shard_count = settings.limits, settings.warn_level, settings.shard_count
    memory_critical, cpu_critical = limits.threshold(MemoryRule()), limits.threshold(CpuRule())
    limit = status.session_limit
    states = _states(status, limits)
    never = _never_seen(status, shard_count)
    attention = _attention(status, states, len(never))
    skews = clock_skews(s.sample for s in summary.shards if s.sample is not None)
    if as_json:
        return StatusReport({
            "healthy": not attention, "attention": attention,
            "online": summary.online, "offline": summary.offline, "up": summary.up,
            "connected": summary.connected, "disconnected": summary.disconnected,
            "guilds": summary.guilds,
            "users": summary.users, "leader": leadership.node, "epoch": leadership.epoch,
            "memory": summary.memory and asdict(summary.memory),
            "cpu": summary.cpu and asdict(summary.cpu),
            "disk": summary.disk and asdict(summary.disk),
            "session_start_limit": limit and limit.model_dump(),
            "clock_skew_s": skews,
            "supervisors": [state.model_dump() for state in status.supervisors.values()],
            "shards": [
                {"shard": s.shard, "online": s.online, "gateway": states[s.shard],
                 "last_seen": s.last_seen,
                 "sample": s.sample and s.sample.to_dict(),
                 "identifies_24h": gateway[s.shard].identifies,
                 "resumes_24h": gateway[s.shard].resumes}
                for s in summary.shards
            ],
        }, attention)  # fmt: skip
    health = f"🔴 needs attention: {', '.join(attention)}" if attention else "🟢 healthy"
    uptime = format_uptime(now - summary.oldest_start) if summary.oldest_start else "unknown"
    lease_s = leadership.lease_ms / 1000
    lines = [
        f"deployment {settings.deployment}: {health}",
        f"  shards    🟢 {summary.up} up, 🔌 {summary.disconnected} disconnected, "
        f"🔴 {summary.offline} offline"
        + (f", ⚪ {len(never)} never seen" if never else "")
        + f" ({shard_count} configured)",
        f"  uptime    {uptime} (oldest shard)",
        f"  memory    {_spread(summary.memory, warn, memory_critical)}",
        f"  cpu       {_spread(summary.cpu, warn, cpu_critical)}",
        f"  disk      {_spread(summary.disk, warn, memory_critical)}",
        f"  servers   {summary.guilds:,}   users {summary.users:,}",
        f"  leader    {leadership.node or 'none'} "
        f"(epoch {leadership.epoch}, lease {lease_s:.1f} s left)",
        f"  identify  {session_limit_line(limit, shard_count, now)}",
        f"  clocks    {clock_line(skews, settings.clock_skew_warn_s)}",
        *(f"  run       {run_words(state, now)}" for state in status.supervisors.values()),
        "",
    ]
    rows = []
    for s in summary.shards:
        sample, counts = s.sample, gateway[s.shard]
        rows.append([
            s.shard, shard_badge(s.online, states[s.shard]), states[s.shard],
            f"{sample.cpu:.1f}" if sample else "-", f"{sample.memory:.1f}" if sample else "-",
            f"{sample.latency_ms:.0f}" if sample and sample.latency_ms is not None else "-",
            f"{sample.guilds:,}" if sample else "-",
            format_uptime(now - sample.started_at) if sample and sample.started_at else "-",
            _ago(s.last_seen, now), counts.identifies, counts.resumes,
        ])  # fmt: skip
    return StatusReport("\n".join(lines) + table(_SHARD_HEADERS, rows), attention)


def restarts_view(events: Sequence[RestartEvent], *, as_json: bool = False) -> Any:
    """The newest restarts, newest first, with the first 50 characters of a crash's error; the
    time is the fleet's (Redis's), the one events are ordered and counted by, marked * where
    the host's own clock said otherwise (its `timestamp`, in --json)."""
    if as_json:
        return [e.model_dump(mode="json") for e in events]

    def when(e: RestartEvent) -> str:
        marked = "*" if e.fleet_ts is not None else ""
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(e.ts)) + marked

    rows = [
        [when(e), e.type.value, ",".join(map(str, e.shards)),
         e.version, e.node, str(e.metadata.get("error", ""))[:50]]
        for e in events
    ]  # fmt: skip
    headers = ["time (UTC)", "type", "shards", "version", "node", "error"]
    note = ""
    if any(e.fleet_ts is not None for e in events):
        note = (f"\n* the host's clock was off by {FLEET_TS_MIN_SKEW_S:g} s or more: its own "
                "time is in --json")  # fmt: skip
    return (table(headers, rows) + note) or "no restarts"


def stats_view(stats: RestartStats, storms: StormReport, *, as_json: bool = False) -> Any:
    """Restart totals, rates, types, and the storms of the storm window."""
    if as_json:
        return {**asdict(stats), "storms": dict(storms.storms)}
    lines = [
        f"total {stats.total}; last hour {stats.last_hour}; last 24 h {stats.last_24h}",
        f"per day {stats.per_day:.1f}; per month {stats.per_month:.1f}",
        "by type: " + (", ".join(f"{t} {n}" for t, n in stats.by_type.items()) or "none"),
    ]
    if storms.storms:
        names = ", ".join(f"shard {s} ({n})" for s, n in sorted(storms.storms.items()))
        lines.append(f"🚨 restart storm ({storms.threshold:g}+ in {storms.window_s:g} s): {names}")
    else:
        lines.append("🟢 no restart storm")
    if stats.skipped:
        lines.append(f"({stats.skipped} malformed entries skipped)")
    return "\n".join(lines)


def performance_view(result: Performance, scope: str, *, as_json: bool = False) -> Any:
    """Samples and the average/peak/low memory, CPU and latency of `scope`."""
    if as_json:
        return {"scope": scope, **asdict(result)}

    def line(name: str, spread: Spread | None, unit: str = "%") -> list[str]:
        if spread is None:
            return [name, "-", "-", "-"]
        return [name, *(f"{v:.1f}{unit}" for v in (spread.average, spread.peak, spread.low))]

    rows = [
        line("memory", result.memory),
        line("cpu", result.cpu),
        line("latency", result.latency_ms, " ms"),
    ]
    return f"{scope}: {result.samples} samples\n" + table(["", "average", "peak", "low"], rows)


def alerts_view(records: Sequence[Mapping[str, Any]], *, as_json: bool = False) -> Any:
    """Alerts sent and resolved, newest first, with their delivery per sink."""
    if as_json:
        return list(records)
    rows = [
        [time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(r["ts"]))), r["kind"], r["rule"],
         ",".join(map(str, r.get("shards", []))), r.get("epoch", ""),
         "yes" if r.get("delivered") else "NO",
         "; ".join(f"{k}: {v}" for k, v in r.get("delivery", {}).items())[:60]]
        for r in records
    ]  # fmt: skip
    headers = ["time (UTC)", "kind", "rule", "shards", "epoch", "delivered", "per sink"]
    return table(headers, rows) or "no alerts"


_READ_WITH = {"list": "LRANGE {} 0 4", "hash": "HGETALL {}", "zset": "ZRANGE {} 0 9 WITHSCORES",
              "string": "GET {}"}  # fmt: skip


def keys_view(
    layout: Sequence[KeyInfo], counts: Mapping[str, int], redis_cli: str, *, as_json: bool = False
) -> Any:
    """The key layout with live counts and the redis-cli command (`redis_cli`: the command and
    its connection options, no password) that reads each key."""
    if as_json:
        return [{"key": i.name, "type": i.type, "pattern" if i.family else "name": i.key,
                 "count": counts[i.name]} for i in layout]  # fmt: skip
    rows = []
    for info in layout:
        if info.family:
            command = f"{redis_cli} --scan --pattern '{info.key}'"
        else:
            command = f"{redis_cli} " + _READ_WITH[info.type].format(f"'{info.key}'")
        rows.append([info.name, info.type, counts[info.name], info.holds, command])
    note = "count: keys of a family, or the length of a single key\n"
    return note + table(["key", "type", "count", "holds", "read it with"], rows)


def thresholds_view(
    limits: Limits,
    overrides: Mapping[str, str],
    rules: Sequence[Rule] = DEFAULT_RULES,
    *,
    as_json: bool = False,
) -> Any:
    """Each rule's threshold as configured, with the runtime overrides on top."""
    configured = {rule.name: limits.setting(rule.threshold) for rule in rules}
    if as_json:
        return {"settings": configured, "overrides": dict(overrides)}
    rows = [
        [
            rule.name,
            f"{configured[rule.name]:g}",
            rule.threshold.unit,
            overrides.get(rule.name, "-"),
        ]
        for rule in rules
    ]
    per_shard = sorted((n, v) for n, v in overrides.items() if ":" in n)
    text = table(["rule", "setting", "unit", "fleet override"], rows)
    if per_shard:
        text += "\n\nper-shard overrides:\n" + table(
            ["rule:shard", "value"], [list(p) for p in per_shard]
        )
    return text + "\n\nthe leader reads overrides every tick: no restart needed"


def prune_view(
    pruned: PruneResult, archived: int, kept: int, archive: str, *, as_json: bool = False
) -> Any:
    """What a prune removed from Redis and moved out of this host's journal."""
    if as_json:
        return {"before": pruned.before, "redis_fleet_removed": pruned.fleet_removed,
                "redis_shard_removed": pruned.shard_removed, "journal_archived": archived,
                "journal_kept": kept, "archive": archive if archived else None}  # fmt: skip
    cutoff = time.strftime("%Y-%m-%d %H:%M", time.gmtime(pruned.before))
    text = (
        f"restarts before {cutoff} UTC: {pruned.fleet_removed} removed from Redis "
        f"({pruned.shard_removed} from shard sets)"
    )
    if archived:
        return text + f"\njournal: {archived} lines moved to {archive}, {kept} kept"
    return text + f"\njournal: nothing older ({kept} lines kept)"
