"""What the dashboard's and the status page's JSON endpoints answer: pure functions of the
store's reads, one per audience, as the CLI's views and the cog's embeds are.

The operator's payloads carry the fleet's infrastructure (nodes, figures, alert bodies, crash
errors; crash tracebacks only for the token holder). The public ones carry what DESIGN.md calls
public data and nothing else: which shard serves a server, up or down, latency, incidents in
words. `PUBLIC_FIELDS` lists every field the public payloads may hold, and a test walks them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from shardmon.incidents import incidents
from shardmon.models import RestartEvent, Sample
from shardmon.render import clock_line, run_words, session_limit_line
from shardmon.rules import CpuRule, Limits, MemoryRule, connection_state
from shardmon.states import TILE_STATES, first_shard, public_state, publicly_up, shard_code
from shardmon.stats import Spread, clock_skews
from shardmon.store import FleetBoard, GatewayCounts, History

if TYPE_CHECKING:
    from shardmon.settings import Settings

__all__ = [
    "PUBLIC_FIELDS",
    "BoardSettings",
    "find_shard_payload",
    "fleet_payload",
    "history_payload",
    "shard_payload",
    "status_payload",
]

#: Crash errors shown in the dashboard's restart list are cut to this many characters.
ERROR_SHOWN = 300
#: The fields of an alert record the dashboard's feed shows (not its delivery per sink).
ALERT_FIELDS = ("id", "ts", "kind", "rule", "title", "body", "shards", "epoch", "node", "delivered")
#: Restart events the dashboard lists; incidents the status page lists.
RESTARTS_SHOWN = 10
INCIDENTS_SHOWN = 10

#: Every field a public payload may hold, at any depth: a test fails on any other.
PUBLIC_FIELDS = frozenset(
    {
        "name", "now", "refresh_s", "shard_count", "states", "legend", "code", "label", "state",
        "up", "down", "degraded", "unknown", "latency_ms", "judged_at", "incidents", "title",
        "shards", "started", "ended", "ongoing", "lasted_s", "server", "shard", "since",
        "reporting", "error",
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class BoardSettings:
    """What the pages need of the settings: names, the fleet's size, the rules' limits and
    how often the pages refresh themselves."""

    deployment: str
    system_name: str
    shard_count: int
    limits: Limits
    warn_level: float
    clock_skew_warn_s: float
    refresh_s: float

    @classmethod
    def of(cls, settings: Settings, refresh_s: float) -> BoardSettings:
        """What the pages need of `settings`."""
        return cls(
            deployment=settings.deployment,
            system_name=settings.system_name,
            shard_count=settings.shard_count,
            limits=settings.limits,
            warn_level=settings.warn_level,
            clock_skew_warn_s=settings.clock_skew_warn_s,
            refresh_s=refresh_s,
        )


def _spread(spread: Spread | None) -> dict[str, float] | None:
    return None if spread is None else asdict(spread)


def _grid(board: FleetBoard, settings: BoardSettings) -> dict[str, Any]:
    """What both pages' payloads open with: the bot's name, the grid and how fresh it is."""
    return {
        "name": settings.system_name,
        "now": board.now,
        "refresh_s": settings.refresh_s,
        "judged_at": board.judged_at,
        "shard_count": settings.shard_count,
        "states": board.grid.states,
    }


def _public_counts(states: str) -> dict[str, int]:
    """How many shards the public sees in each public state."""
    counts = dict.fromkeys(("up", "degraded", "down", "unknown"), 0)
    for state in TILE_STATES:
        counts[state.public] += states.count(state.code)
    return counts


def _nodes(board: FleetBoard) -> list[dict[str, Any]]:
    """Each node with its shards (checked ranges, expanded by the page), by its first shard.
    The page puts the shards no node has reported in a group of their own."""
    nodes = [{"node": node, "shards": ranges} for node, ranges in board.grid.nodes.items()]
    return sorted(nodes, key=lambda group: first_shard(group["shards"]))


def fleet_payload(
    board: FleetBoard,
    restarts: Sequence[RestartEvent],
    skipped: Mapping[str, int],
    settings: BoardSettings,
    *,
    token_holder: bool,
) -> dict[str, Any]:
    """The operator's dashboard: the grid by node, the fleet's figures, the leader, the
    IDENTIFY budget, the alerts feed, incidents and the newest restarts. Crash tracebacks
    only for the token holder; the error's first line for every operator."""
    summary, leadership = board.summary, board.leadership
    restart_rows = []
    for event in restarts:
        row: dict[str, Any] = {
            "id": event.id, "ts": event.ts, "type": event.type.value, "shards": list(event.shards),
            "node": event.node, "version": event.version,
        }  # fmt: skip
        error = event.metadata.get("error")
        if error:
            row["error"] = str(error).splitlines()[0][:ERROR_SHOWN] if str(error) else ""
            if token_holder and event.metadata.get("traceback"):
                row["traceback"] = str(event.metadata["traceback"])
        restart_rows.append(row)
    figures = {
        "up": summary.up, "online": summary.online, "offline": summary.offline,
        "disconnected": summary.disconnected, "guilds": summary.guilds, "users": summary.users,
        "memory": _spread(summary.memory), "cpu": _spread(summary.cpu),
        "disk": _spread(summary.disk), "latency_ms": _spread(summary.latency_ms),
        "oldest_start": summary.oldest_start,
    }  # fmt: skip
    limit = board.session_limit
    budget = None
    if limit is not None:
        budget = {
            "total": limit.total, "remaining": limit.remaining, "resets_at": limit.resets_at,
            "max_concurrency": limit.max_concurrency, "synthetic": limit.synthetic,
            "line": session_limit_line(limit, settings.shard_count, board.now),
        }  # fmt: skip
    alerts = [{key: record.get(key) for key in ALERT_FIELDS} for record in board.alerts]
    supervisors = [
        {"node": state.node, "shards": list(state.shards), "state": state.state,
         "until": state.until, "failures": state.failures, "words": run_words(state, board.now)}
        for state in sorted(board.supervisors.values(), key=lambda state: state.shards)
    ]  # fmt: skip
    return {
        **_grid(board, settings),
        "deployment": settings.deployment,
        "legend": [asdict(state) for state in TILE_STATES],
        "nodes": _nodes(board),
        "summary": figures,
        "thresholds": {
            "warn": settings.warn_level,
            "memory": settings.limits.threshold(MemoryRule()),
            "cpu": settings.limits.threshold(CpuRule()),
        },
        "leader": {
            "node": leadership.node,
            "epoch": leadership.epoch,
            "lease_ms": leadership.lease_ms,
        },
        "budget": budget,
        "alerts": alerts,
        "incidents": [i.public(board.now) for i in incidents(board.alerts, board.active)],
        "restarts": restart_rows,
        "supervisors": supervisors,
        "skipped": dict(skipped),
        "token_holder": token_holder,
    }


def shard_payload(
    shard: int,
    sample: Sample | None,
    last_seen: float | None,
    counts: GatewayCounts,
    settings: BoardSettings,
    now: float,
) -> dict[str, Any]:
    """One shard for the operator's tooltip: its figures, node and gateway now."""
    code = shard_code(sample, last_seen, now, settings.limits)
    payload: dict[str, Any] = {
        "shard": shard, "code": code, "last_seen": last_seen,
        "identifies_24h": counts.identifies, "resumes_24h": counts.resumes,
    }  # fmt: skip
    if sample is None:
        return payload
    gateway = sample.gateway
    payload |= {
        "gateway": connection_state(sample, now, settings.limits),
        "sample_age_s": max(0.0, now - sample.ts), "cpu": sample.cpu, "memory": sample.memory,
        "memory_used_mb": sample.memory_used_mb, "memory_total_mb": sample.memory_total_mb,
        "disk": sample.disk, "rss_mb": sample.rss_mb, "latency_ms": sample.latency_ms,
        "guilds": sample.guilds, "users": sample.users, "node": sample.node,
        "started_at": sample.started_at, "clock_skew_s": sample.clock_skew_s,
        "clock": clock_line(clock_skews([sample]), settings.clock_skew_warn_s),
        "disconnects_1h": None if gateway is None else gateway.disconnects_1h,
        "stalls_1h": None if gateway is None else gateway.stalls_1h,
        "dispatch_age_s": None if gateway is None or gateway.dispatch_age_s is None
        else gateway.dispatch_age_s + max(0.0, now - sample.ts),
    }  # fmt: skip
    return payload


def history_payload(history: History) -> dict[str, Any]:
    """A span of the fleet's history as chart columns (see `History`)."""
    return {
        "span": history.span,
        "bucket_s": history.bucket_s,
        "columns": history.columns,
        "storms": history.storms,
    }


def status_payload(board: FleetBoard, settings: BoardSettings) -> dict[str, Any]:
    """The public status page: shards up of total, average latency, the grid (states only),
    and the last incidents in words. Nothing else: no node, host, version, figure or error."""
    latency = board.summary.latency_ms
    return {
        **_grid(board, settings),
        "legend": [{"code": s.code, "state": s.public} for s in TILE_STATES],
        "up": _public_counts(board.grid.states),
        "latency_ms": None if latency is None else round(latency.average),
        "incidents": [
            incident.public(board.now)
            for incident in incidents(board.alerts, board.active, limit=INCIDENTS_SHOWN)
        ],
    }


def find_shard_payload(
    guild_id: int,
    shard: int,
    sample: Sample | None,
    last_seen: float | None,
    settings: BoardSettings,
    now: float,
) -> dict[str, Any]:
    """ "Find my shard", for anyone: the server's shard, up or down, its latency and since
    when it runs, as /shard says them."""
    code = shard_code(sample, last_seen, now, settings.limits)
    public, up = public_state(code), publicly_up(code)
    return {
        "server": str(guild_id),  # a string: JavaScript's numbers cannot hold a snowflake
        "shard": shard,
        "shard_count": settings.shard_count,
        "state": public,
        "latency_ms": None
        if not up or sample is None or sample.latency_ms is None
        else round(sample.latency_ms),
        "since": None if not up or sample is None else sample.started_at,
    }
