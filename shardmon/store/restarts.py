"""Restart events: recorded once (ZADD NX, from the monitor or a journal replay), counted by
type and by shard, read newest first, judged for storms, and pruned."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import redis
from redis.asyncio.client import Pipeline

from shardmon.connection import run_script
from shardmon.keys import RECENT_RESTARTS_S, Keys
from shardmon.models import MalformedData, RestartEvent, parse_event
from shardmon.rules import Limits, StormReport, storm_report
from shardmon.stats import RestartStats, restart_stats
from shardmon.store._base import StoreBase, lua, parse_all

__all__ = ["PruneResult", "RestartStore", "record_restart_sync"]

#: Members of `restarts` read with the counts to find the oldest event (more only behind garbage).
FIRST_EVENT_PAGE = 1
#: The `restart_types` field that counts members of `restarts` that are not events.
MALFORMED = "malformed"


@dataclass(frozen=True, slots=True)
class PruneResult:
    """What a prune removed: events from the fleet set, and memberships from shard sets."""

    before: float
    fleet_removed: int
    shard_removed: int


def _restart_keys(keys: Keys, event: RestartEvent) -> list[str]:
    shard_sets = (keys.shard_restarts(shard) for shard in event.shards)
    return [keys.retention, keys.restart_counts, keys.restarts, keys.restart_types,
            keys.recent_restarts, *shard_sets]  # fmt: skip


def _restart_args(event: RestartEvent, member: str) -> list[str | float]:
    """Score, member (the JSON kept byte for byte), type, id, how long the index keeps it,
    and shards (for the counts and the index)."""
    return [event.ts, member, event.type.value, event.id, RECENT_RESTARTS_S,
            *(str(shard) for shard in event.shards)]  # fmt: skip


def _restart_types(raw: Mapping[str, str]) -> dict[str, int] | None:
    """`restart_types` as counts, or None when a field is not a count (then it is rebuilt)."""
    counts = {str(kind): str(value) for kind, value in raw.items()}
    if not all(value.isdigit() for value in counts.values()):
        return None
    return {kind: int(value) for kind, value in counts.items()}


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


class RestartStore(StoreBase):
    async def record_restart(self, event: RestartEvent) -> bool:
        """ZADD NX the event into `restarts` and its shards' sets; False if already there."""
        keys = _restart_keys(self.keys, event)
        return bool(
            await self.scripts["record_restart"](
                keys=keys, args=_restart_args(event, event.to_json())
            )
        )

    async def replay_restarts(self, lines: Sequence[str]) -> int:
        """Record journal lines (each an event JSON, kept byte for byte); returns how many
        were new to Redis. Lines that do not parse are counted and left out."""
        events, bad = await asyncio.to_thread(_parse_journal, lines)
        if bad:
            self._count_skipped("journal", bad)
        if not events:
            return 0
        calls = [
            (_restart_keys(self.keys, event), _restart_args(event, line)) for event, line in events
        ]
        added = await run_script(self.client, self.scripts["record_restart"], calls)
        return sum(int(result) for result in added)

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

    async def restart_stats(self, now: float | None = None) -> RestartStats:
        """Totals by type, per day and month, and the counts of the last hour and 24 hours:
        one round trip of bounded size, whatever the number of events (`restart_types`)."""
        now = self.clock.now() if now is None else now
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
            events, bad = await asyncio.to_thread(parse_all, members, parse_event)
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

    async def restart_storms(
        self, limits: Limits, shard_count: int, now: float | None = None
    ) -> StormReport:
        """Restart storms now, with the runtime overrides, for every view that shows them:
        the storm rule's judgement of each shard's restarts in the window (every shard that
        restarted, whatever `shard_count` says: a shard crash-looping before its first sample
        too)."""
        now = self.clock.now() if now is None else now
        since = now - limits.restart_window_s
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.thresholds)
            self._queue_recent_restarts(pipe, since)
            overrides, members, indexed = await pipe.execute()
        limits = Limits(limits.settings, limits.interval_s, self._overrides(overrides))
        restarts = await self._restarts_since(members, indexed, since, now)
        return storm_report(restarts, limits, now)

    async def restarts_in_window(self, window_s: float, now: float) -> dict[int, int]:
        """Shard -> its restarts since `now - window_s`, for shards with any: what a ZCOUNT of
        each `restarts:<shard>` answers (DESIGN.md's storm count), counted from
        `recent_restarts` in one read whose size follows the restarts, not the shards."""
        async with self.client.pipeline(transaction=False) as pipe:
            self._queue_recent_restarts(pipe, now - window_s)
            members, indexed = await pipe.execute()
        return await self._restarts_since(members, indexed, now - window_s, now)

    def _queue_recent_restarts(self, pipe: Pipeline, since: float) -> None:
        pipe.zrangebyscore(self.keys.recent_restarts, since, "+inf")
        pipe.exists(self.keys.recent_restarts)

    async def _restarts_since(
        self, members: list[str], indexed: int, since: float, now: float
    ) -> dict[int, int]:
        if not indexed:
            members = await self._index_recent_restarts(since, now)
        return self._by_shard(members, self.keys.recent_restarts)

    async def _index_recent_restarts(self, since: float, now: float) -> list[str]:
        """Fill a missing `recent_restarts` from the events of the last 7 days (a deployment
        that recorded restarts before the index existed; or none in 7 days: nothing to do),
        and return its members since `since`."""
        raw = cast(
            "list[str]",
            await self.client.zrangebyscore(self.keys.restarts, now - RECENT_RESTARTS_S, "+inf"),
        )
        events = await asyncio.to_thread(parse_all, raw, parse_event)
        members = {f"{shard}:{e.id}": e.ts for e in events[0] for shard in e.shards}
        if members:
            await self.client.zadd(self.keys.recent_restarts, members, nx=True)
        return [member for member, ts in members.items() if ts >= since]

    async def prune_restarts(self, before: float) -> PruneResult:
        """Remove restart events older than `before` from `restarts` and every
        `restarts:<shard>`; the cutoff is kept so that no journal replay brings them back."""
        if not math.isfinite(before):
            raise ValueError(f"prune cutoff {before!r} is not a time")
        await self.client.hset(self.keys.retention, "restarts_before", repr(before))
        async with self.client.pipeline(transaction=True) as pipe:  # counts rebuilt on read
            pipe.zremrangebyscore(self.keys.restarts, "-inf", f"({before}")
            pipe.delete(self.keys.restart_types)
            fleet = int((await pipe.execute())[0])
        await self.client.zremrangebyscore(self.keys.recent_restarts, "-inf", f"({before}")
        pattern = self.keys.pattern("restarts:<shard>")
        per_shard = 0
        async for key in self.client.scan_iter(pattern, count=1000):
            per_shard += int(await self.client.zremrangebyscore(key, "-inf", f"({before}"))
        return PruneResult(before, fleet, per_shard)
