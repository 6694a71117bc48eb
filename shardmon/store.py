"""Reads and writes of samples and restart events: every Redis command of the core lives here.

The store is handed a client and the deployment's `Keys`; it reads no settings. Values that do
not parse (someone wrote to a key by hand) are skipped, counted in the result and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any, TypeVar, cast

import redis
import redis.asyncio as aioredis

from shardmon.connection import run_script
from shardmon.keys import (
    FLEET_TTL_S,
    GATEWAY_EVENTS_TTL_S,
    ROLLUP_HOUR_TTL_S,
    ROLLUP_MINUTE_TTL_S,
    Keys,
)
from shardmon.models import MalformedData, RestartEvent, Sample, parse_event, parse_sample
from shardmon.rules import FleetView
from shardmon.stats import (
    ROLLUP_SCALE,
    FleetSummary,
    Performance,
    RestartStats,
    fleet_fields,
    merge_rollups,
    parse_fleet_fields,
    restart_stats,
    summarize_fleet,
    summarize_rollups,
    summarize_samples,
)

__all__ = ["ShardInfo", "Store", "record_restart_sync"]

log = logging.getLogger(__name__)
T = TypeVar("T")


@cache
def lua(name: str) -> str:
    """The text of `shardmon/lua/<name>.lua`."""
    return files("shardmon").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


def _restart_keys(keys: Keys, event: RestartEvent) -> list[str]:
    shard_sets = (keys.shard_restarts(shard) for shard in event.shards)
    return [keys.retention, keys.restart_counts, keys.restarts, keys.restart_types, *shard_sets]


def _restart_args(event: RestartEvent, member: str) -> list[str | float]:
    """Score, member (the JSON kept byte for byte), type and shards (for the counts)."""
    return [event.ts, member, event.type.value, *(str(shard) for shard in event.shards)]


#: Members of `restarts` read with the counts to find the oldest event (more only behind garbage).
FIRST_EVENT_PAGE = 1
#: The `restart_types` field that counts members of `restarts` that are not events.
MALFORMED = "malformed"


def _restart_types(raw: Mapping[str, str]) -> dict[str, int] | None:
    """`restart_types` as counts, or None when a field is not a count (then it is rebuilt)."""
    counts = {str(kind): str(value) for kind, value in raw.items()}
    if not all(value.isdigit() for value in counts.values()):
        return None
    return {kind: int(value) for kind, value in counts.items()}


def _scaled(value: float | None) -> int | str:
    return "" if value is None else round(value * ROLLUP_SCALE)


def _minute(ts: float) -> int:
    return int(ts // 60 * 60)


def _parse_alert_record(raw: str | bytes) -> dict[str, Any]:
    """An alert record as `Alerter` writes it; anything else is MalformedData."""
    try:
        record = json.loads(raw)
    except ValueError:
        raise MalformedData("not JSON") from None
    valid = (
        isinstance(record, dict)
        and isinstance(record.get("ts"), int | float)
        and math.isfinite(record["ts"])
        and 0 <= record["ts"] < 32503680000  # before the year 3000: gmtime can show it
        and all(isinstance(record.get(k), str) for k in ("id", "kind", "rule", "title", "node"))
        and isinstance(record.get("shards"), list)
        and all(isinstance(s, int) for s in record["shards"])
        and isinstance(record.get("delivery", {}), dict)
        and isinstance(record.get("epoch", 0), int)
    )
    if not valid:
        raise MalformedData("not an alert record")
    return dict(record)


def _parse_all(
    raw: Iterable[str | bytes], parse: Callable[[str | bytes], T]
) -> tuple[list[T], int]:
    """Each raw value parsed, and how many did not parse (pure: safe in a worker thread)."""
    parsed: list[T] = []
    skipped = 0
    for value in raw:
        try:
            parsed.append(parse(value))
        except MalformedData:
            skipped += 1
    return parsed, skipped


def _parse_journal(lines: Sequence[str]) -> tuple[list[tuple[RestartEvent, str]], int]:
    """(event, its line kept byte for byte) for each line that parses, and how many did not."""
    events = []
    for line in lines:
        with contextlib.suppress(MalformedData):
            events.append((parse_event(line), line))
    return events, len(lines) - len(events)


def record_restart_sync(client: redis.Redis, keys: Keys, event: RestartEvent) -> bool:
    """Blocking twin of `Store.record_restart`, for the seed's log functions."""
    script = client.register_script(lua("record_restart"))
    return bool(script(keys=_restart_keys(keys, event), args=_restart_args(event, event.to_json())))


@dataclass(frozen=True, slots=True)
class ShardInfo:
    """`shard:<shard>`: who runs a shard and since when."""

    started_at: float
    host: str
    pid: int
    version: str
    shard_count: int
    node: str


class Store:
    """Samples and restart events of one deployment in Redis.

    Args:
        client: an asyncio Redis client with `decode_responses=True` (see `create_redis`).
        keys: the deployment's key names.
        history_size: samples kept per shard (`samples:<shard>` is LTRIMmed to it), default 1000.
    """

    def __init__(self, client: aioredis.Redis, keys: Keys, history_size: int = 1000) -> None:
        self.client = client
        self.keys = keys
        self.history_size = history_size
        self._push_sample = client.register_script(lua("push_sample"))
        self._record_restart = client.register_script(lua("record_restart"))
        self._count_identifies = client.register_script(lua("count_identifies"))
        #: key -> how many malformed values reads have skipped there, since this store began
        self.skipped: Counter[str] = Counter()
        #: Shards whose sample, in the last `push_samples`, was the first in this Redis.
        self.first_samples: set[int] = set()

    # -- writes ---------------------------------------------------------------------------

    async def push_samples(self, batch: Sequence[tuple[Sample, int]]) -> int:
        """Write (sample, seq) pairs: one round trip for one sample, one pipeline for many.
        Returns how many were applied (a seq already applied is ignored); `first_samples` then
        holds the shards that had no sample in this Redis before."""
        if len(batch) == 1:
            sample, seq = batch[0]
            result = int(
                await self._push_sample(
                    keys=self._sample_keys(sample), args=self._sample_args(sample, seq)
                )
            )
            self.first_samples = {sample.shard} if result == 2 else set()
            return min(result, 1)
        calls = [
            (self._sample_keys(sample), self._sample_args(sample, seq)) for sample, seq in batch
        ]
        results = [int(r) for r in await run_script(self.client, self._push_sample, calls)]
        self.first_samples = {s.shard for (s, _), r in zip(batch, results, strict=True) if r == 2}
        return sum(min(result, 1) for result in results)

    def _sample_keys(self, sample: Sample) -> list[str]:
        keys = self.keys
        return [
            keys.samples(sample.shard),
            keys.seq,
            keys.latest,
            keys.heartbeats,
            keys.rollup_minute(_minute(sample.ts)),
        ]

    def _sample_args(self, sample: Sample, seq: int) -> list[str | int | float]:
        return [
            sample.shard,
            seq,
            sample.to_json(),
            sample.ts,
            self.history_size,
            ROLLUP_MINUTE_TTL_S,
            _scaled(sample.cpu),
            _scaled(sample.memory),
            _scaled(sample.latency_ms),
        ]

    async def applied_seq(self, shards: Sequence[int]) -> int:
        """The highest sequence number applied for these shards (0 if none)."""
        values = await self.client.hmget(self.keys.seq, [str(s) for s in shards])
        return max((int(v) for v in values if v is not None and str(v).isdigit()), default=0)

    async def record_restart(self, event: RestartEvent) -> bool:
        """ZADD NX the event into `restarts` and its shards' sets; False if already there."""
        keys = _restart_keys(self.keys, event)
        return bool(
            await self._record_restart(keys=keys, args=_restart_args(event, event.to_json()))
        )

    async def replay_restarts(self, lines: Sequence[str]) -> int:
        """Record journal lines (each an event JSON, kept byte for byte); returns how many
        were new to Redis. Lines that do not parse are logged and left out."""
        events, bad = await asyncio.to_thread(_parse_journal, lines)
        if bad:
            log.warning("%d journal line(s) skipped: not restart events", bad)
            self.skipped["journal"] += bad
        if not events:
            return 0
        calls = [
            (_restart_keys(self.keys, event), _restart_args(event, line)) for event, line in events
        ]
        return sum(
            int(added) for added in await run_script(self.client, self._record_restart, calls)
        )

    async def write_shard_info(self, shards: Sequence[int], info: ShardInfo) -> None:
        """`shard:<shard>` of each shard a process runs, in one round trip."""
        async with self.client.pipeline(transaction=False) as pipe:
            for shard in shards:
                pipe.hset(
                    self.keys.shard_info(shard),
                    mapping={
                        "started_at": info.started_at,
                        "host": info.host,
                        "pid": info.pid,
                        "version": info.version,
                        "shard_count": info.shard_count,
                        "node": info.node,
                    },
                )
            await pipe.execute()

    # -- reads ----------------------------------------------------------------------------

    async def restart_history(
        self, limit: int = 10, shard: int | None = None, restart_type: str | None = None
    ) -> list[RestartEvent]:
        """The newest `limit` restart events, newest first (of one shard, of one type)."""
        if limit <= 0:
            return []
        key = self.keys.restarts if shard is None else self.keys.shard_restarts(shard)
        events: list[RestartEvent] = []
        start, page_size = 0, max(limit, 100 if restart_type else limit)
        while len(events) < limit:
            # Read a page at a time so that garbage or a type filter never shortens the answer.
            page = cast("list[str]", await self.client.zrevrange(key, start, start + page_size - 1))
            if not page:
                break
            parsed = self._parsed(page, parse_event, key)
            events.extend(e for e in parsed if restart_type is None or e.type == restart_type)
            start += page_size
        return events[:limit]

    async def recent_alerts(self, limit: int = 20) -> list[dict[str, Any]]:
        """The newest alert records (sent or resolved, with their delivery), newest first."""
        raw = await self.client.lrange(self.keys.alerts, 0, limit - 1)
        return self._parsed(raw, _parse_alert_record, self.keys.alerts)

    async def restart_counts(self) -> dict[tuple[int, str], int]:
        """(shard, type) -> restarts ever recorded (never lowered by a prune: a counter)."""
        counts: dict[tuple[int, str], int] = {}
        for field, value in (await self.client.hgetall(self.keys.restart_counts)).items():
            shard, _, kind = str(field).partition(":")
            if shard.isdigit() and kind and str(value).isdigit():
                counts[(int(shard), kind)] = int(value)
            else:
                self._count_skipped(self.keys.restart_counts, 1)
        return counts

    async def alert_counts(self) -> dict[tuple[str, str], int]:
        """(rule, kind) -> alerts delivered ever; fields that do not parse are skipped."""
        counts: dict[tuple[str, str], int] = {}
        for field, value in (await self.client.hgetall(self.keys.alert_counts)).items():
            rule, _, kind = str(field).rpartition(":")
            if rule and str(value).isdigit():
                counts[(rule, kind)] = int(value)
            else:
                self._count_skipped(self.keys.alert_counts, 1)
        return counts

    async def leader(self) -> tuple[str | None, int, int]:
        """(leading node or None, its lease's milliseconds left, the current epoch)."""
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.get(self.keys.leader)
            pipe.pttl(self.keys.leader)
            pipe.get(self.keys.leader_epoch)
            node, pttl, epoch = await pipe.execute()
        return node, max(0, int(pttl)), int(epoch) if str(epoch).isdigit() else 0

    async def restart_stats(self, now: float | None = None) -> RestartStats:
        """Totals by type, per day and month, and the counts of the last hour and 24 hours:
        one round trip of bounded size, whatever the number of events (`restart_types`)."""
        now = time.time() if now is None else now
        keys = self.keys
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.restart_types)
            pipe.zcard(keys.restarts)
            pipe.zrange(keys.restarts, 0, FIRST_EVENT_PAGE - 1, withscores=True)
            pipe.zcount(keys.restarts, now - 3600, "+inf")
            pipe.zcount(keys.restarts, now - 86400, "+inf")
            types_raw, total, first, last_hour, last_24h = await pipe.execute()
        by_type = _restart_types(types_raw)
        if by_type is None or sum(by_type.values()) != total:
            by_type = await self._rebuild_restart_types()
        malformed = by_type.pop(MALFORMED, 0)
        return restart_stats(
            by_type,
            first_at=await self._first_event_at(first),
            now=now,
            last_hour=last_hour,
            last_24h=last_24h,
            skipped=malformed,
        )

    async def _first_event_at(self, page: Sequence[tuple[str, float]]) -> float | None:
        """The time of the oldest event that parses: garbage with a score of 0 (written by
        hand) must not stretch the per-day rate over 56 years. Reads on while pages are all
        garbage."""
        start = 0
        while page:
            for member, score in page:
                try:
                    parse_event(member)
                except MalformedData:
                    continue
                return float(score)
            start += len(page)
            page = cast(
                "list[tuple[str, float]]",
                await self.client.zrange(self.keys.restarts, start, start + 99, withscores=True),
            )
        return None

    async def _rebuild_restart_types(self) -> dict[str, int]:
        """Count `restarts` by type and store the counts; the set is WATCHed, so an event
        recorded meanwhile leaves the counts for the next read to rebuild, never wrong. This
        reads the whole set: once after an upgrade, a prune or a hand edit."""
        key = self.keys.restarts
        async with self.client.pipeline(transaction=True) as pipe:
            await pipe.watch(key)
            members = cast("list[str]", await pipe.zrange(key, 0, -1))
            # The whole set: parsed off the event loop (20,000 events with tracebacks: ~0.2 s).
            events, bad = await asyncio.to_thread(_parse_all, members, parse_event)
            if bad:
                self._count_skipped(key, bad)
            counts = Counter(event.type.value for event in events)
            counts[MALFORMED] = len(members) - len(events)
            pipe.multi()  # type: ignore[no-untyped-call]
            pipe.delete(self.keys.restart_types)
            pipe.hset(self.keys.restart_types, mapping=dict[Any, int](counts))
            with contextlib.suppress(redis.WatchError):
                await pipe.execute()
        return dict(counts)

    async def restart_storm_count(
        self, shard: int, window_s: float = 3600, now: float | None = None
    ) -> int:
        """Restarts of `shard` within the last `window_s`: one ZCOUNT."""
        now = time.time() if now is None else now
        return int(
            await self.client.zcount(self.keys.shard_restarts(shard), now - window_s, "+inf")
        )

    async def shard_performance(self, shard: int) -> Performance:
        """Samples, average/peak/low memory, CPU and latency over the shard's whole list."""
        key = self.keys.samples(shard)
        raw = await self.client.lrange(key, 0, -1)
        samples = self._parsed(raw, parse_sample, key)
        return summarize_samples(samples, skipped=len(raw) - len(samples))

    async def fleet_performance(
        self, window_s: float = 3600, now: float | None = None
    ) -> Performance:
        """The fleet over the last `window_s` from the minute rollups: one HGETALL a minute,
        whatever the number of shards."""
        now = time.time() if now is None else now
        async with self.client.pipeline(transaction=False) as pipe:
            for minute in range(_minute(now - window_s) + 60, _minute(now) + 60, 60):
                pipe.hgetall(self.keys.rollup_minute(minute))
            performance = summarize_rollups(await pipe.execute())
        if performance.skipped:
            self._count_skipped(self.keys.rollup_minute_pattern, performance.skipped)
        return performance

    async def roll_up_hour(self, hour_start: int) -> int:
        """Recompute `rollup:h:<hour>` from that hour's 60 minute rollups and keep it 30 days.
        Idempotent: the leader may run it every tick. Returns the samples it holds."""
        async with self.client.pipeline(transaction=False) as pipe:
            for minute in range(hour_start, hour_start + 3600, 60):
                pipe.hgetall(self.keys.rollup_minute(minute))
            merged, skipped = merge_rollups(await pipe.execute())
        if skipped:
            self._count_skipped(self.keys.rollup_minute_pattern, skipped)
        if not merged.get("n"):
            return 0
        key = self.keys.rollup_hour(hour_start)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.hset(key, mapping={k: str(v) for k, v in merged.items()})
            pipe.expire(key, ROLLUP_HOUR_TTL_S)
            await pipe.execute()
        return merged["n"]

    async def fleet_performance_hours(self, hours: int, now: float | None = None) -> Performance:
        """The fleet over the last `hours` hours from the hourly rollups (24 keys a day)."""
        now = time.time() if now is None else now
        current = int(now // 3600 * 3600)
        async with self.client.pipeline(transaction=False) as pipe:
            for hour in range(current - (hours - 1) * 3600, current + 3600, 3600):
                pipe.hgetall(self.keys.rollup_hour(hour))
            performance = summarize_rollups(await pipe.execute())
        if performance.skipped:
            self._count_skipped(self.keys.rollup_minute_pattern, performance.skipped)
        return performance

    async def latest_samples(self) -> dict[int, Sample]:
        """Each shard's newest sample (one HGETALL of `latest`)."""
        return await self._parse_latest(await self.client.hgetall(self.keys.latest))

    async def _parse_latest(self, raw: Mapping[Any, str | bytes]) -> dict[int, Sample]:
        """`latest` parsed off the event loop: a sample per shard is the heaviest CPU work of
        a fleet-wide read (tens of ms at 5,000 shards). Malformed ones are counted."""
        samples, bad = await asyncio.to_thread(_parse_all, list(raw.values()), parse_sample)
        if bad:
            self._count_skipped(self.keys.latest, bad)
        return {sample.shard: sample for sample in samples}

    async def heartbeats(self) -> dict[int, float]:
        """Shard -> last-seen time; members that are not shard ids are skipped."""
        pairs = cast(
            "list[tuple[str, float]]",
            await self.client.zrange(self.keys.heartbeats, 0, -1, withscores=True),
        )
        return self._heartbeats(pairs)

    def _heartbeats(self, pairs: Sequence[tuple[str, float]]) -> dict[int, float]:
        seen = {int(member): float(score) for member, score in pairs if str(member).isdigit()}
        if len(seen) < len(pairs):
            self._count_skipped(self.keys.heartbeats, len(pairs) - len(seen))
        return seen

    async def fleet_summary(self, offline_after_s: float, now: float | None = None) -> FleetSummary:
        """Every shard's status and the fleet's sums and spreads (one round trip)."""
        now = time.time() if now is None else now
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.latest)
            pipe.zrange(self.keys.heartbeats, 0, -1, withscores=True)
            latest_raw, beats = await pipe.execute()
        return summarize_fleet(
            await self._parse_latest(latest_raw),
            self._heartbeats(beats),
            now=now,
            offline_after_s=offline_after_s,
        )

    async def fleet_totals(self, offline_after_s: float, now: float | None = None) -> FleetSummary:
        """The fleet's sums and spreads without its shard list: the `fleet` hash the leader
        writes each tick (one small key, whatever the shard count). Where no leader has
        written it within `offline_after_s`, or it does not parse, read every shard instead."""
        now = time.time() if now is None else now
        raw = await self.client.hgetall(self.keys.fleet)
        if raw:
            try:
                totals = parse_fleet_fields(cast("dict[str, str]", raw))
                age = now - (totals.measured_at or 0.0)
                if age < -offline_after_s:  # from the future: a clock or a hand gone wrong
                    raise MalformedData("fleet figures from the future")
            except MalformedData:
                self._count_skipped(self.keys.fleet, 1)
            else:
                if age <= offline_after_s:
                    return totals
        return await self.fleet_summary(offline_after_s, now=now)

    async def write_fleet_totals(self, summary: FleetSummary) -> None:
        """Replace the `fleet` hash with `summary` (the leader, each tick)."""
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.fleet)
            pipe.hset(self.keys.fleet, mapping=dict[Any, str](fleet_fields(summary)))
            pipe.expire(self.keys.fleet, FLEET_TTL_S)
            await pipe.execute()

    async def record_gateway_event(self, shard: int, kind: str, now: float | None = None) -> None:
        """Count one IDENTIFY (`identify`) or RESUME (`resume`) of a shard; kept 7 days."""
        now = time.time() if now is None else now
        key = (
            self.keys.gateway_identify(shard)
            if kind == "identify"
            else self.keys.gateway_resume(shard)
        )
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.zadd(key, {f"{now:.6f}:{uuid.uuid4().hex[:8]}": now})
            pipe.zremrangebyscore(key, "-inf", now - GATEWAY_EVENTS_TTL_S)
            pipe.expire(key, GATEWAY_EVENTS_TTL_S)
            await pipe.execute()

    async def gateway_counts(
        self, shards: Iterable[int], window_s: float = 86400, now: float | None = None
    ) -> dict[int, tuple[int, int]]:
        """Shard -> (IDENTIFYs, RESUMEs) within the window: two ZCOUNTs a shard, pipelined."""
        now = time.time() if now is None else now
        shards = list(shards)
        async with self.client.pipeline(transaction=False) as pipe:
            for shard in shards:
                pipe.zcount(self.keys.gateway_identify(shard), now - window_s, "+inf")
                pipe.zcount(self.keys.gateway_resume(shard), now - window_s, "+inf")
            counts = await pipe.execute()
        return {shard: (counts[2 * i], counts[2 * i + 1]) for i, shard in enumerate(shards)}

    async def identify_counts(
        self, shards: Iterable[int], window_s: float = 86400, now: float | None = None
    ) -> dict[int, int]:
        """Shard -> IDENTIFYs within the window, for shards with any: one script call, whatever
        the shard count (a key of the wrong type is skipped and counted)."""
        now = time.time() if now is None else now
        shards = list(shards)
        if not shards:
            return {}
        keys = [self.keys.gateway_identify(shard) for shard in shards]
        found = await self._count_identifies(keys=keys, args=[now - window_s])
        counts: dict[int, int] = {}
        for index, count in zip(found[::2], found[1::2], strict=True):
            if count < 0:
                self._count_skipped(keys[index - 1], 1)
            else:
                counts[shards[index - 1]] = int(count)
        return counts

    async def record_alert_channels(self, channels: Mapping[int, int]) -> None:
        """Guild id -> id of its alert channel (the first named dev-logs, admin-logs, ...)."""
        if channels:
            await self.client.hset(
                self.keys.alert_channels, mapping={str(g): str(c) for g, c in channels.items()}
            )

    async def forget_alert_channel(self, guild_id: int) -> None:
        await self.client.hdel(self.keys.alert_channels, str(guild_id))

    async def alert_channel(self, guild_ids: Iterable[int] = ()) -> int | None:
        """The channel alerts go to when none is configured: that of the lowest guild id
        (among `guild_ids` when given), so every leader picks the same one."""
        allowed = set(guild_ids)
        raw = await self.client.hgetall(self.keys.alert_channels)
        channels: dict[int, int] = {}
        for guild, channel in raw.items():
            if str(guild).isdigit() and str(channel).isdigit():
                channels[int(guild)] = int(channel)
            else:
                self._count_skipped(self.keys.alert_channels, 1)
        candidates = sorted(g for g in channels if not allowed or g in allowed)
        return channels[candidates[0]] if candidates else None

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

    async def prune_restarts(self, before: float) -> tuple[int, int]:
        """Remove restart events older than `before` from `restarts` and every
        `restarts:<shard>`: (removed from the fleet set, removed from the shard sets)."""
        if not math.isfinite(before):
            raise ValueError(f"prune cutoff {before!r} is not a time")
        await self.client.hset(self.keys.retention, "restarts_before", repr(before))
        async with self.client.pipeline(transaction=True) as pipe:  # counts rebuilt on read
            pipe.zremrangebyscore(self.keys.restarts, "-inf", f"({before}")
            pipe.delete(self.keys.restart_types)
            fleet = int((await pipe.execute())[0])
        pattern = next(i.key for i in self.keys.layout() if i.name == "restarts:<shard>")
        per_shard = 0
        async for key in self.client.scan_iter(pattern, count=1000):
            per_shard += int(await self.client.zremrangebyscore(key, "-inf", f"({before}"))
        return fleet, per_shard

    async def thresholds(self) -> dict[str, str]:
        raw = await self.client.hgetall(self.keys.thresholds)
        return {str(name): str(value) for name, value in raw.items()}

    async def set_threshold(self, name: str, value: float) -> None:
        await self.client.hset(self.keys.thresholds, name, repr(value))

    async def unset_threshold(self, name: str) -> bool:
        return bool(await self.client.hdel(self.keys.thresholds, name))

    async def fleet_view(
        self, restart_window_s: float, now: float | None = None
    ) -> tuple[FleetView, dict[str, float], list[str]]:
        """What the leader judges: the fleet, the runtime threshold overrides, and the
        conditions announced and not yet resolved (one round trip, and one for the IDENTIFY
        counts of the shards seen)."""
        now = time.time() if now is None else now
        keys = self.keys
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.latest)
            pipe.zrange(keys.heartbeats, 0, -1, withscores=True)
            pipe.zrangebyscore(keys.restarts, now - restart_window_s, "+inf")
            pipe.hgetall(keys.thresholds)
            pipe.hkeys(keys.active_alerts)
            latest_raw, beats, recent, overrides_raw, active = await pipe.execute()
        latest = await self._parse_latest(latest_raw)
        heartbeats = self._heartbeats(beats)
        identifies = await self.identify_counts(heartbeats, now=now)
        fleet = FleetView(
            now=now,
            latest=latest,
            heartbeats=heartbeats,
            restarts_in_window=self._restarts_per_shard(recent),
            identifies_24h=identifies,
        )
        return fleet, self._overrides(overrides_raw), list(active)

    async def storm_view(
        self, restart_window_s: float, now: float | None = None
    ) -> tuple[FleetView, dict[str, float]]:
        """Only what restart storms are judged by (the window's restarts and the overrides),
        for views that show storms without the whole fleet."""
        now = time.time() if now is None else now
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.zrangebyscore(self.keys.restarts, now - restart_window_s, "+inf")
            pipe.hgetall(self.keys.thresholds)
            recent, overrides_raw = await pipe.execute()
        fleet = FleetView(
            now=now, latest={}, heartbeats={}, restarts_in_window=self._restarts_per_shard(recent)
        )
        return fleet, self._overrides(overrides_raw)

    def _restarts_per_shard(self, members: Sequence[str]) -> dict[int, int]:
        restarts: Counter[int] = Counter()
        for event in self._parsed(members, parse_event, self.keys.restarts):
            restarts.update(event.shards)
        return dict(restarts)

    def _overrides(self, raw: Mapping[str, str]) -> dict[str, float]:
        overrides: dict[str, float] = {}
        for name, value in raw.items():
            try:
                number = float(value)
            except ValueError:
                number = math.nan
            if math.isfinite(number) and number >= 0:
                overrides[name] = number
            else:  # "nan" would switch a rule off without a word, a negative fire for all
                self._count_skipped(self.keys.thresholds, 1)
        return overrides

    async def shard_info(self, shard: int) -> ShardInfo | None:
        raw = await self.client.hgetall(self.keys.shard_info(shard))
        try:
            return ShardInfo(
                started_at=float(raw["started_at"]),
                host=str(raw["host"]),
                pid=int(raw["pid"]),
                version=str(raw["version"]),
                shard_count=int(raw["shard_count"]),
                node=str(raw["node"]),
            )
        except (KeyError, ValueError):
            if raw:
                self._count_skipped(self.keys.shard_info(shard), 1)
            return None

    def _parsed(
        self, raw: Iterable[str | bytes], parse: Callable[[str | bytes], T], key: str
    ) -> list[T]:
        """Parse each raw value, skipping and counting those that do not parse."""
        parsed, skipped = _parse_all(raw, parse)
        if skipped:
            self._count_skipped(key, skipped)
        return parsed

    def _count_skipped(self, key: str, count: int) -> None:
        self.skipped[key] += count
        log.warning("skipped %d malformed value(s) in %s", count, key)
