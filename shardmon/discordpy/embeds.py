"""Embeds of the slash commands: pure functions of the store's answers, within Discord's limits."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import discord

from shardmon.clock import CLOCK_SKEW_WARN_S
from shardmon.models import RestartEvent, Sample, SessionStartLimit
from shardmon.render import (
    clock_line,
    defuse_mentions,
    format_uptime,
    session_limit_line,
    sparkline,
    status_emoji,
)
from shardmon.rules import Limits, StormReport, connection_state, shard_badge
from shardmon.states import publicly_up, shard_code
from shardmon.stats import (
    FleetSummary,
    Performance,
    RestartStats,
    ShardStatus,
    Spread,
    clock_skews,
)
from shardmon.store import GatewayCounts

__all__ = [
    "performance_embed",
    "public_shard_embed",
    "restart_stats_embed",
    "restarts_embed",
    "shards_pages",
    "uptime_embed",
]

# Discord's embed limits.
TITLE_LIMIT, DESCRIPTION_LIMIT, FIELD_VALUE_LIMIT, FIELDS_LIMIT, TOTAL_LIMIT = (
    256,
    4096,
    1024,
    25,
    6000,
)
#: /shards lists this many shards a page (about 70 characters each: well inside 4096).
SHARDS_PER_PAGE = 40

GREEN, YELLOW, RED = discord.Colour.green(), discord.Colour.gold(), discord.Colour.red()


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _field(embed: discord.Embed, name: str, value: str, inline: bool = True) -> None:
    if len(embed.fields) < FIELDS_LIMIT:
        embed.add_field(
            name=_clip(name, TITLE_LIMIT),
            value=_clip(value or "-", FIELD_VALUE_LIMIT),
            inline=inline,
        )


def _percent(spread: Spread | None, warn: float, critical: float) -> str:
    if spread is None:
        return "⚪ no data"
    emoji = status_emoji(spread.average, warn, critical)
    return f"{emoji} {spread.average:.1f}% avg · {spread.peak:.1f}% peak"


def _health(summary: FleetSummary, critical: float) -> tuple[str, discord.Colour]:
    peaks = [s.peak for s in (summary.memory, summary.cpu) if s is not None]
    if summary.offline or summary.disconnected or any(p > critical for p in peaks):
        return "🔴 Needs attention", RED
    if not summary.online:
        return "⚪ No shard reporting", RED
    return "🟢 Healthy", GREEN


def uptime_embed(
    summary: FleetSummary, *, now: float, warn: float, critical: float, shard_count: int
) -> discord.Embed:
    health, colour = _health(summary, critical)
    embed = discord.Embed(title="🤖 Fleet uptime and health", colour=colour)
    if summary.oldest_start is not None and summary.newest_start is not None:
        oldest, newest = now - summary.oldest_start, now - summary.newest_start
        uptime = f"{format_uptime(oldest)} (newest shard {format_uptime(newest)})"
    else:
        uptime = "unknown"
    _field(embed, "Uptime", uptime, inline=False)
    _field(embed, "Memory", _percent(summary.memory, warn, critical))
    _field(embed, "CPU", _percent(summary.cpu, warn, critical))
    _field(embed, "Disk", _percent(summary.disk, warn, critical))
    _field(embed, "Servers", f"{summary.guilds:,}")
    _field(embed, "Users", f"{summary.users:,}")
    latency = f"{summary.latency_ms.average:.0f} ms avg" if summary.latency_ms else "unknown"
    _field(embed, "Gateway latency", latency)
    gateway = f"🔌 {summary.disconnected} disconnected · " if summary.gateway_known else ""
    _field(
        embed,
        "Shards",
        f"🟢 {summary.up} up · {gateway}🔴 {summary.offline} offline · {shard_count} configured",
    )
    _field(embed, "Overall health", health)
    if summary.measured_at is not None:  # Discord shows it in the reader's own time zone
        with contextlib.suppress(ValueError, OverflowError, OSError):  # a time no date can hold
            embed.timestamp = datetime.fromtimestamp(summary.measured_at, tz=UTC)
            embed.set_footer(text="Figures as of")
    return embed


def _when(event: RestartEvent) -> str:
    return f"<t:{int(event.ts)}:R>"


_TYPE_EMOJI = {
    "startup": "🚀",
    "manual": "🔄",
    "crash": "💥",
    "deployment": "📦",
    "scheduled": "⏰",
}


def restarts_embed(
    events: Sequence[RestartEvent], limit: int, *, show_errors: bool
) -> discord.Embed:
    """The newest restarts, whole lines only: as many of `limit` as fit in a description;
    crash errors only with `show_errors` (they may hold paths, hosts, even credentials)."""
    lines: list[str] = []
    size = 0
    errors_hidden = 0
    for event in events:
        shards = ", ".join(str(s) for s in event.shards)
        kind = event.type.value
        emoji = _TYPE_EMOJI.get(kind, "•")
        version = defuse_mentions(event.version)
        line = f"{emoji} **{kind}** · shard {shards} · v{version} · {_when(event)}"
        error = event.metadata.get("error") if kind == "crash" else None
        if error and show_errors:
            text = defuse_mentions(str(error)[:120]).replace("`", "'")  # cut, then defuse
            line += f"\n  `{text}`"
        if size + len(line) + 1 > DESCRIPTION_LIMIT:
            break
        lines.append(line)
        size += len(line) + 1
        errors_hidden += bool(error and not show_errors)
    shown = len(lines)
    title = (
        f"🔄 Last {shown} restarts"
        if shown == len(events)
        else f"🔄 Last {shown} of {limit} restarts"
    )
    embed = discord.Embed(title=title, colour=discord.Colour.blurple())
    embed.description = "\n".join(lines) if lines else "No restart recorded yet."
    notes = []
    if shown < len(events):
        notes.append(f"{len(events) - shown} more did not fit: use a smaller limit")
    if errors_hidden:
        notes.append("Crash errors are shown in the operators' servers only")
    if notes:
        embed.set_footer(text=" · ".join(notes))
    return embed


def restart_stats_embed(stats: RestartStats, storms: StormReport) -> discord.Embed:
    colour = RED if storms.storms else GREEN
    embed = discord.Embed(title="📊 Restart statistics", colour=colour)
    _field(embed, "Total", str(stats.total))
    _field(embed, "Last hour", str(stats.last_hour))
    _field(embed, "Last 24 hours", str(stats.last_24h))
    _field(embed, "Average per day", f"{stats.per_day:.1f}")
    _field(embed, "Average per month", f"{stats.per_month:.1f}")
    by_type = "\n".join(f"{_TYPE_EMOJI.get(t, '•')} {t}: {n}" for t, n in stats.by_type.items())
    _field(embed, "By type", by_type or "none", inline=False)
    if storms.storms:
        names = ", ".join(f"shard {s} ({n})" for s, n in sorted(storms.storms.items()))
        _field(
            embed,
            "Storm status",
            f"🚨 {storms.threshold:g}+ restarts in {storms.window}: {names}",
            inline=False,
        )
    else:
        _field(embed, "Storm status", "🟢 No restart storm", inline=False)
    if stats.skipped:
        embed.set_footer(text=f"{stats.skipped} malformed entries skipped")
    return embed


def _spread_text(spread: Spread | None, unit: str = "%") -> str:
    if spread is None:
        return "no data"
    s = spread
    return f"avg {s.average:.1f}{unit} · peak {s.peak:.1f}{unit} · low {s.low:.1f}{unit}"


def performance_embed(performance: Performance, *, scope: str) -> discord.Embed:
    embed = discord.Embed(title=f"📈 Performance: {scope}", colour=discord.Colour.blurple())
    _field(embed, "Samples", f"{performance.samples:,}", inline=False)
    _field(embed, "Memory", _spread_text(performance.memory), inline=False)
    _field(embed, "CPU", _spread_text(performance.cpu), inline=False)
    _field(embed, "Gateway latency", _spread_text(performance.latency_ms, " ms"), inline=False)
    if performance.memory_trend:
        _field(embed, "Memory trend", f"`{sparkline(performance.memory_trend)}`", inline=False)
    if performance.cpu_trend:
        _field(embed, "CPU trend", f"`{sparkline(performance.cpu_trend)}`", inline=False)
    return embed


def _shard_line(status: ShardStatus, now: float, limits: Limits) -> str:
    sample: Sample | None = status.sample
    state = connection_state(sample, now, limits) if status.online else "-"
    badge = shard_badge(status.online, state)
    latency = "-"
    if sample is not None and sample.latency_ms is not None and math.isfinite(sample.latency_ms):
        latency = f"{sample.latency_ms:.0f} ms"
    guilds = f"{sample.guilds:,} guilds" if sample else "- guilds"
    uptime = format_uptime(now - sample.started_at) if sample and sample.started_at else "?"
    seen = f"{format_uptime(now - status.last_seen)} ago" if status.last_seen else "never"
    gateway = f"{state} · " if state not in ("-", "connected") else ""
    return (
        f"{badge[0]} `{status.shard:>4}` {gateway}{latency} · {guilds} · up {uptime} · seen {seen}"
    )


def shards_pages(
    summary: FleetSummary,
    gateway: Mapping[int, GatewayCounts],
    *,
    limits: Limits,
    shard_count: int,
    session_limit: SessionStartLimit | None = None,
    now: float | None = None,
    clock_skew_warn_s: float = CLOCK_SKEW_WARN_S,
) -> list[discord.Embed]:
    """One embed a page of SHARDS_PER_PAGE shards, each with its gateway state (where not
    simply connected) and IDENTIFY/RESUME counts of 24 h, and the IDENTIFY budget; the first
    page also says how far the hosts' clocks are from Redis's."""
    now = time.time() if now is None else now
    budget = f"IDENTIFY budget: {session_limit_line(session_limit, shard_count, now)}"
    statuses = summary.shards
    pages = max(1, math.ceil(len(statuses) / SHARDS_PER_PAGE))
    embeds = []
    for page in range(pages):
        chunk = statuses[page * SHARDS_PER_PAGE : (page + 1) * SHARDS_PER_PAGE]
        lines = []
        for status in chunk:
            counts = gateway.get(status.shard, GatewayCounts())
            lines.append(
                f"{_shard_line(status, now, limits)} · {counts.identifies} id / "
                f"{counts.resumes} res (24 h)"
            )
        embed = discord.Embed(
            title=f"🧩 Shards: {summary.up} up, {summary.disconnected} disconnected, "
            f"{summary.offline} offline",
            description=_clip("\n".join(lines) or "No shard has reported yet.", DESCRIPTION_LIMIT),
            colour=RED if summary.offline or summary.disconnected else GREEN,
        )
        if page == 0:
            skews = clock_skews(s.sample for s in statuses if s.sample is not None)
            embed.add_field(name="Clocks", value=_clip(clock_line(skews, clock_skew_warn_s), 1024))
        embed.set_footer(text=_clip(f"{budget} · Page {page + 1}/{pages}", 2048))
        embeds.append(embed)
    return embeds


def public_shard_embed(
    guild_id: int,
    shard: int,
    shard_count: int,
    sample: Sample | None,
    last_seen: float | None,
    fleet: FleetSummary,
    *,
    limits: Limits,
    now: float,
) -> discord.Embed:
    """/shard, for anyone: which shard serves a server and whether it is up, and the fleet in
    one line. Public data only: no host, node, version, error, memory or CPU."""
    online = last_seen is not None and now - last_seen <= limits.offline_after_s
    state = connection_state(sample, now, limits) if online else "-"
    badge = shard_badge(online, state)
    up = publicly_up(shard_code(sample, last_seen, now, limits))
    embed = discord.Embed(
        title=f"{badge[0]} Shard {shard} of {shard_count}", colour=GREEN if up else RED
    )
    _field(embed, "Server", str(guild_id))
    _field(embed, "Status", badge if state in ("-", "connected") else f"{badge} ({state})")
    latency = "-"
    if online and sample is not None and sample.latency_ms is not None:
        latency = f"{sample.latency_ms:.0f} ms"
    _field(embed, "Latency", latency)
    if online and sample is not None and sample.started_at is not None:
        _field(embed, "Running since", f"<t:{int(sample.started_at)}:R>")
    average = f" · {fleet.latency_ms.average:.0f} ms average latency" if fleet.latency_ms else ""
    _field(embed, "Fleet", f"{fleet.up} of {shard_count} shards up{average}", inline=False)
    return embed
