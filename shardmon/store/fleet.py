"""Fleet-wide reads: the fleet now (every shard, or the leader's pre-aggregated figures), what
the leader judges, performance history from the rollups, and the key layout's counts."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

from shardmon.keys import ALERTS_CAP, FLEET_TTL_S
from shardmon.models import MalformedData, RunState, Sample, SessionStartLimit, parse_sample
from shardmon.rules import (
    DEFAULT_RULES,
    FleetView,
    IdentifyStormRule,
    Limits,
    OfflineRule,
    RestartStormRule,
    Thresholded,
)
from shardmon.states import TILE_CODES, FleetGrid, check_shard_ranges, judge_fleet
from shardmon.stats import (
    FleetSummary,
    Performance,
    fleet_fields,
    parse_fleet_fields,
    summarize_fleet,
    summarize_samples,
)
from shardmon.store._base import heartbeat_map, pairs
from shardmon.store.alerting import Leadership, parse_condition
from shardmon.store.history import HistoryStore
from shardmon.store.restarts import RestartStore
from shardmon.store.samples import GatewayCounts, SampleStore
from shardmon.store.supervisors import SupervisorStore

__all__ = ["FleetBoard", "FleetStatus", "FleetStore", "LeaderView"]

#: IDENTIFYs are judged over the last 24 hours: Discord's session start limit resets daily.
IDENTIFY_WINDOW_S = 86400


@dataclass(frozen=True, slots=True)
class LeaderView:
    """What the leader judges each tick: the fleet (with the conditions announced and not yet
    resolved) and the runtime threshold overrides."""

    fleet: FleetView
    overrides: dict[str, float]


def _announced(raw: Mapping[str, str], now: float) -> dict[str, float]:
    """`active_alerts` as condition -> when it was announced (now, where unreadable)."""
    active = {}
    for name, value in raw.items():
        try:
            since = float(json.loads(value)["since"])
        except (ValueError, KeyError, TypeError):
            since = now
        active[str(name)] = since if math.isfinite(since) else now
    return active


@dataclass(frozen=True, slots=True)
class FleetBoard:
    """The fleet as the dashboard and the status page show it (`fleet_board`)."""

    grid: FleetGrid
    summary: FleetSummary  # the fleet's figures, without a shard list
    judged_at: float | None  # the leader tick of the grid and figures; None: judged by the read
    leadership: Leadership
    session_limit: SessionStartLimit | None
    alerts: list[dict[str, Any]]  # newest first
    active: dict[str, float]  # conditions announced, not yet resolved -> since
    now: float
    supervisors: dict[str, RunState] = field(default_factory=dict)  # reporting lately


@dataclass(frozen=True, slots=True)
class FleetStatus:
    """The fleet now, as `shardmon status` and /shards show it: every shard, each shard's
    gateway sessions of the last 24 hours, and who leads."""

    summary: FleetSummary
    gateway: dict[int, GatewayCounts]
    leadership: Leadership
    now: float
    session_limit: SessionStartLimit | None = None
    #: The supervisors (`shardmon run`) that reported lately, by node.
    supervisors: dict[str, RunState] = field(default_factory=dict)


def _heartbeats_of(
    samples: Mapping[int, Sample], beats: Sequence[Any], every: bool
) -> tuple[dict[int, float], int]:
    """Shard -> last seen, and how many members are not shard ids (pure). With `every`, the
    `heartbeats` set read whole; else a shard's heartbeat is its sample's time (the write
    script stamps both with it), with the heartbeats old enough to matter read on top."""
    if every:
        return heartbeat_map(pairs(beats))
    old, bad = heartbeat_map(pairs(beats))
    return {shard: sample.ts for shard, sample in samples.items()} | old, bad


def _counts(found: Sequence[Any]) -> tuple[dict[int, int], int, int]:
    """`count_by_shard.lua`'s reply: shard -> count, members naming no shard, recent ones."""
    bad, recent, *flat = (int(value) for value in found)
    return dict(zip(flat[::2], flat[1::2], strict=True)), bad, recent


def _floor(limits: Limits, rule: Thresholded) -> int:
    """The least count the rule can fire at, on any shard (with the overrides)."""
    fleet, per_shard = limits.thresholds(rule)
    return max(1, math.floor(min([fleet, *per_shard.values()])))


class FleetStore(SampleStore, RestartStore, HistoryStore, SupervisorStore):
    async def leader_view(
        self, limits: Limits, shard_count: int, now: float | None = None
    ) -> LeaderView:
        """What the leader judges, in two round trips.

        The first reads every shard's newest sample, the overrides, the conditions announced
        and the session start limit. The second, with the overrides known, reads the
        heartbeats old enough to matter (the others are the samples' own times) and counts
        the window's restarts and the day's IDENTIFYs inside Redis, returning only the shards
        at or above a threshold. What grows with the shard count is parsed in a worker thread
        meanwhile: the bot's event loop only moves the bytes."""
        now = self.clock.now() if now is None else now
        keys = self.keys
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.hvals(keys.latest)
            pipe.zcard(keys.heartbeats)
            pipe.hgetall(keys.thresholds)
            pipe.hgetall(keys.active_alerts)
            pipe.hgetall(keys.session_start_limit)
            pipe.exists(keys.recent_restarts)
            pipe.hvals(keys.supervisors)
            (
                latest_raw,
                beat_count,
                overrides_raw,
                active_raw,
                limit_raw,
                indexed,
                supervisors_raw,
            ) = await pipe.execute()
        parsing = asyncio.ensure_future(self._parse_latest(latest_raw))
        limits = replace(limits, overrides=self._overrides(overrides_raw))
        active = _announced(active_raw, now)
        window = limits.restart_window_s
        if not indexed:
            await self._index_recent_restarts(now - window, now)
        offline = OfflineRule()
        offline_fleet, offline_per_shard = limits.thresholds(offline)
        stale_after = min(limits.offline_after_s, offline_fleet, *offline_per_shard.values())
        announced = {rule: [str(shard) for r, shard in map(parse_condition, active)
                            if r == rule and shard is not None]
                     for rule in (RestartStormRule.name, IdentifyStormRule.name)}  # fmt: skip
        every_beat = beat_count > len(latest_raw)  # a heartbeat without a sample: read them all
        if every_beat:
            beats = self.client.zrange(keys.heartbeats, 0, -1, withscores=True)
        else:
            beats = self.client.zrangebyscore(
                keys.heartbeats, "-inf", now - stale_after, withscores=True
            )
        by_shard = self.scripts["count_by_shard"]
        # three commands at once (a Cluster pipeline takes no script): one round trip's wait
        # All three run to their end before a failure is raised: none is left holding a
        # connection of the pool behind a tick that gave up (a Redis outage, a stop).
        replies = await asyncio.gather(
            beats,
            by_shard(keys=[keys.recent_restarts],
                     args=[now - window, _floor(limits, RestartStormRule()), now,
                           *announced[RestartStormRule.name]]),
            by_shard(keys=[keys.identifies],
                     args=[now - IDENTIFY_WINDOW_S, _floor(limits, IdentifyStormRule()),
                           now - 3600, *announced[IdentifyStormRule.name]]),
            return_exceptions=True,
        )  # fmt: skip
        failed = next((r for r in replies if isinstance(r, BaseException)), None)
        if failed is not None:
            parsing.cancel()
            raise failed
        beats_raw, restarted, identified = cast("list[Any]", replies)
        samples = await parsing
        heartbeats, bad_beats = await asyncio.to_thread(
            _heartbeats_of, samples, beats_raw, every_beat
        )
        restarts, bad_marks, _ = _counts(restarted)
        identifies, bad_ids, identifies_1h = _counts(identified)
        skipped = {keys.heartbeats: bad_beats, keys.recent_restarts: bad_marks,
                   keys.identifies: bad_ids}  # fmt: skip
        for key, count in skipped.items():
            if count:
                self._count_skipped(key, count)
        fleet = FleetView(
            now=now,
            latest=samples,
            heartbeats=heartbeats,
            restarts_in_window=restarts,
            identifies_24h=identifies,
            identifies_1h=identifies_1h,
            session_limit=self._session_limit(limit_raw),
            active=active,
            shard_count=shard_count,
            supervisors=self._supervisors(supervisors_raw),
        )
        return LeaderView(fleet, dict(limits.overrides))

    async def shard_now(self, shard: int) -> tuple[Sample | None, float | None]:
        """One shard's newest sample and last heartbeat (one round trip); a sample that does
        not parse is counted and left out."""
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.hget(self.keys.latest, str(shard))
            pipe.zscore(self.keys.heartbeats, str(shard))
            raw, seen = await pipe.execute()
        samples = [] if raw is None else self._parsed([raw], parse_sample, self.keys.latest)
        return (samples[0] if samples else None), (None if seen is None else float(seen))

    async def fleet_summary(self, offline_after_s: float, now: float | None = None) -> FleetSummary:
        """Every shard's status and the fleet's sums and spreads (one round trip)."""
        now = self.clock.now() if now is None else now
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.latest)
            pipe.zrange(self.keys.heartbeats, 0, -1, withscores=True)
            latest_raw, beats = await pipe.execute()
        return await self._summary(latest_raw, beats, offline_after_s, now)

    async def _summary(
        self, latest_raw: Any, beats: Any, offline_after_s: float, now: float
    ) -> FleetSummary:
        return summarize_fleet(
            await self._parse_latest(latest_raw.values()),
            self._heartbeats(beats),
            now=now,
            offline_after_s=offline_after_s,
        )

    async def fleet_status(self, offline_after_s: float, now: float | None = None) -> FleetStatus:
        """Every shard, its gateway counts of 24 h and the leadership (two round trips: the
        leadership comes with the shards)."""
        now = self.clock.now() if now is None else now
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.latest)
            pipe.zrange(self.keys.heartbeats, 0, -1, withscores=True)
            pipe.hgetall(self.keys.session_start_limit)
            pipe.hvals(self.keys.supervisors)
            self._queue_leader(pipe)
            latest_raw, beats, limit_raw, supervisors_raw, *leader = await pipe.execute()
        summary = await self._summary(latest_raw, beats, offline_after_s, now)
        gateway = await self.gateway_counts((s.shard for s in summary.shards), now=now)
        limit = self._session_limit(limit_raw)
        supervisors = self._supervisors(supervisors_raw, now - offline_after_s)
        return FleetStatus(summary, gateway, self._leadership(*leader), now, limit, supervisors)

    async def fleet_totals(self, offline_after_s: float, now: float | None = None) -> FleetSummary:
        """The fleet's sums and spreads without its shard list: the `fleet` hash the leader
        writes each tick (one small key, whatever the shard count). Where no leader has
        written it within `offline_after_s`, or it does not parse, read every shard instead."""
        now = self.clock.now() if now is None else now
        raw = cast("dict[str, str]", await self.client.hgetall(self.keys.fleet))
        totals = self._judged_totals(raw, offline_after_s, now)
        return totals or await self.fleet_summary(offline_after_s, now=now)

    def _judged_totals(
        self, raw: Mapping[str, str], offline_after_s: float, now: float
    ) -> FleetSummary | None:
        """The `fleet` hash as a summary, if a leader wrote it within `offline_after_s`; one
        that does not parse (or comes from the future) is counted and is None."""
        if not raw:
            return None
        try:
            totals = parse_fleet_fields(raw)
            age = now - (totals.measured_at or 0.0)
            if age < -offline_after_s:  # from the future: a clock or a hand gone wrong
                raise MalformedData("fleet figures from the future")
        except MalformedData:
            self._count_skipped(self.keys.fleet, 1)
            return None
        return totals if age <= offline_after_s else None

    def _judged_grid(self, states: str | None, nodes_raw: Mapping[str, str]) -> FleetGrid | None:
        """`shard_states` and `shard_nodes` as a grid; None without states, or when they hold
        a character that is no state (counted). A node whose ranges do not parse is left
        out and counted."""
        if not states:
            return None
        if not set(states) <= TILE_CODES:
            self._count_skipped(self.keys.shard_states, 1)
            return None
        nodes: dict[str, str] = {}
        for node, ranges in nodes_raw.items():
            try:
                nodes[node] = check_shard_ranges(ranges, len(states))
            except MalformedData:
                self._count_skipped(self.keys.shard_nodes, 1)
        return FleetGrid(states, nodes)

    async def fleet_board(
        self, limits: Limits, shard_count: int, alerts: int = ALERTS_CAP, now: float | None = None
    ) -> FleetBoard:
        """The fleet as the dashboard and the status page show it, in one round trip: the grid
        and figures of the leader's last tick, who leads, the IDENTIFY budget, the newest
        `alerts` records and the conditions announced. Where no leader has judged within
        `limits.offline_after_s` (every process down, say), the fleet is read and judged
        here instead (every shard's sample: what the leader's keys spare a page otherwise)."""
        now = self.clock.now() if now is None else now
        keys = self.keys
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.get(keys.shard_states)
            pipe.hgetall(keys.shard_nodes)
            pipe.hgetall(keys.fleet)
            pipe.hgetall(keys.session_start_limit)
            pipe.lrange(keys.alerts, 0, alerts - 1)
            pipe.hgetall(keys.active_alerts)
            pipe.hvals(keys.supervisors)
            self._queue_leader(pipe)
            (states, nodes, totals_raw, limit_raw, records, active, supervisors,
             *leader) = await pipe.execute()  # fmt: skip
        totals = self._judged_totals(totals_raw, limits.offline_after_s, now)
        grid = self._judged_grid(states, nodes) if totals is not None else None
        if totals is None or grid is None:
            view = await self.leader_view(limits, shard_count, now=now)
            limits = replace(limits, overrides=view.overrides)
            judged = await asyncio.to_thread(judge_fleet, view.fleet, limits, DEFAULT_RULES)
            totals, grid, judged_at = judged.summary, judged.grid, None
        else:
            judged_at = totals.measured_at
        if len(grid.states) < shard_count:
            grid = FleetGrid(grid.states.ljust(shard_count, "."), grid.nodes)
        return FleetBoard(
            grid=grid,
            summary=totals,
            judged_at=judged_at,
            leadership=self._leadership(*leader),
            session_limit=self._session_limit(limit_raw),
            alerts=self._alert_records(records),
            active=_announced(active, now),
            now=now,
            supervisors=self._supervisors(supervisors, now - limits.offline_after_s),
        )

    async def write_fleet_totals(self, summary: FleetSummary, grid: FleetGrid) -> None:
        """Replace the `fleet` hash with `summary`, and `shard_states` and `shard_nodes` with
        `grid` (the leader, each tick), in one transaction: the grid is as old as `fleet`'s
        `ts` says."""
        keys = self.keys
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(keys.fleet, keys.shard_nodes)
            pipe.hset(keys.fleet, mapping=dict[Any, str](fleet_fields(summary)))
            pipe.set(keys.shard_states, grid.states, ex=FLEET_TTL_S)
            if grid.nodes:
                pipe.hset(keys.shard_nodes, mapping=dict[Any, str](grid.nodes))
                pipe.expire(keys.shard_nodes, FLEET_TTL_S)
            pipe.expire(keys.fleet, FLEET_TTL_S)
            await pipe.execute()

    async def shard_performance(self, shard: int) -> Performance:
        """Samples, average/peak/low memory, CPU and latency over the shard's whole list."""
        key = self.keys.samples(shard)
        raw = await self.client.lrange(key, 0, -1)
        samples = self._parsed(raw, parse_sample, key)
        return summarize_samples(samples, skipped=len(raw) - len(samples))

    async def key_counts(self) -> dict[str, int]:
        """Layout name -> how many such keys exist (a family) or its length (a single key)."""
        counts: dict[str, int] = {}
        for info in self.keys.layout():
            if info.family:
                counts[info.name] = sum(
                    [1 async for _ in self.client.scan_iter(info.key, count=1000)]
                )
                continue
            kind = await self.client.type(info.key)
            size = {"list": self.client.llen, "hash": self.client.hlen, "zset": self.client.zcard}
            if kind in size:
                counts[info.name] = int(await size[kind](info.key))
            else:
                counts[info.name] = int(await self.client.exists(info.key))
        return counts
