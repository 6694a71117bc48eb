"""Samples, shard registrations and gateway events: what each shard process writes."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from shardmon.connection import run_script
from shardmon.keys import GATEWAY_EVENTS_TTL_S, ROLLUP_MINUTE_TTL_S
from shardmon.models import MalformedData, Sample, SessionStartLimit
from shardmon.stats import ROLLUP_SCALE
from shardmon.store._base import StoreBase

__all__ = ["GatewayCounts", "SampleStore", "SampleWrite", "ShardInfo", "minute_of"]


def minute_of(ts: float) -> int:
    """The start of the minute of `ts`: the rollup bucket a sample goes to."""
    return int(ts // 60 * 60)


def _scaled(value: float | None) -> int | str:
    return "" if value is None else round(value * ROLLUP_SCALE)


@dataclass(frozen=True, slots=True)
class SampleWrite:
    """What a write of samples did: how many were applied (a retried seq is ignored), and the
    shards whose sample was the first this Redis holds (a lost Redis, if they wrote before)."""

    applied: int
    first_in_redis: frozenset[int]


@dataclass(frozen=True, slots=True)
class ShardInfo:
    """`shard:<shard>`: who runs a shard and since when."""

    started_at: float
    host: str
    pid: int
    version: str
    shard_count: int
    node: str


@dataclass(frozen=True, slots=True)
class GatewayCounts:
    """A shard's gateway sessions within a window: IDENTIFYs (new sessions) and RESUMEs."""

    identifies: int = 0
    resumes: int = 0


class SampleStore(StoreBase):
    async def push_samples(self, batch: Sequence[tuple[Sample, int]]) -> SampleWrite:
        """Write (sample, seq) pairs: one round trip for one sample, one pipeline for many."""
        calls = [
            (self._sample_keys(sample), self._sample_args(sample, seq)) for sample, seq in batch
        ]
        if len(calls) == 1:
            results = [await self.scripts["push_sample"](keys=calls[0][0], args=calls[0][1])]
        else:
            results = await run_script(self.client, self.scripts["push_sample"], calls)
        codes = [int(result) for result in results]  # 0 already applied, 1 applied, 2 the first
        return SampleWrite(
            applied=sum(min(code, 1) for code in codes),
            first_in_redis=frozenset(
                s.shard for (s, _), code in zip(batch, codes, strict=True) if code == 2
            ),
        )

    def _sample_keys(self, sample: Sample) -> list[str]:
        keys = self.keys
        return [
            keys.samples(sample.shard),
            keys.seq,
            keys.latest,
            keys.heartbeats,
            keys.rollup_minute(minute_of(sample.ts)),
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

    async def latest_samples(self) -> dict[int, Sample]:
        """Each shard's newest sample (one HGETALL of `latest`)."""
        return await self._parse_latest(await self.client.hvals(self.keys.latest))

    async def heartbeats(self) -> dict[int, float]:
        """Shard -> last-seen time; members that are not shard ids are skipped."""
        pairs = cast(
            "list[tuple[str, float]]",
            await self.client.zrange(self.keys.heartbeats, 0, -1, withscores=True),
        )
        return self._heartbeats(pairs)

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

    async def latest_of(self, shards: Sequence[int]) -> dict[int, Sample]:
        """The newest sample of each of `shards` (one HMGET); those that do not parse are
        counted and left out."""
        values = await self.client.hmget(self.keys.latest, [str(shard) for shard in shards])
        return await self._parse_latest(value for value in values if value is not None)

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

    async def record_gateway_event(self, shard: int, kind: str, now: float | None = None) -> None:
        """Count one IDENTIFY (`identify`) or RESUME (`resume`) of a shard; kept 7 days."""
        now = self.clock.now() if now is None else now
        identify = kind == "identify"
        key = self.keys.gateway_identify(shard) if identify else self.keys.gateway_resume(shard)
        member = f"{now:.6f}:{uuid.uuid4().hex[:8]}"
        # IDENTIFYs also go to the fleet's `identifies`, whose size follows the IDENTIFYs (a
        # daily budget), not the shard count: the leader counts the fleet's there.
        sets = [(key, member), *([(self.keys.identifies, f"{shard}:{member}")] * identify)]
        async with self.client.pipeline(transaction=False) as pipe:
            for zset, name in sets:
                pipe.zadd(zset, {name: now})
                pipe.zremrangebyscore(zset, "-inf", now - GATEWAY_EVENTS_TTL_S)
                pipe.expire(zset, GATEWAY_EVENTS_TTL_S)
            await pipe.execute()

    async def gateway_counts(
        self, shards: Iterable[int], window_s: float = 86400, now: float | None = None
    ) -> dict[int, GatewayCounts]:
        """Shard -> its IDENTIFYs and RESUMEs within the window: two ZCOUNTs a shard,
        pipelined (for views that show a page of shards)."""
        now = self.clock.now() if now is None else now
        shards = list(shards)
        async with self.client.pipeline(transaction=False) as pipe:
            for shard in shards:
                pipe.zcount(self.keys.gateway_identify(shard), now - window_s, "+inf")
                pipe.zcount(self.keys.gateway_resume(shard), now - window_s, "+inf")
            counts = await pipe.execute()
        return {
            shard: GatewayCounts(int(counts[2 * i]), int(counts[2 * i + 1]))
            for i, shard in enumerate(shards)
        }

    async def identify_counts(
        self, window_s: float = 86400, now: float | None = None
    ) -> dict[int, int]:
        """Shard -> IDENTIFYs within the window, for shards with any: one read of the fleet's
        `identifies`, whatever the shard count (members naming no shard are skipped and
        counted)."""
        now = self.clock.now() if now is None else now
        members = await self.client.zrangebyscore(self.keys.identifies, now - window_s, "+inf")
        return self._by_shard(cast("list[str]", members), self.keys.identifies)

    async def write_session_limit(self, limit: SessionStartLimit) -> None:
        """`session_start_limit`: the bot's IDENTIFY budget as just read (the leader's)."""
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.session_start_limit)
            pipe.hset(self.keys.session_start_limit, mapping=dict[Any, str](limit.fields()))
            await pipe.execute()

    def _session_limit(self, raw: Mapping[str, str]) -> SessionStartLimit | None:
        if not raw:
            return None
        try:
            return SessionStartLimit.from_fields(raw)
        except MalformedData:
            self._count_skipped(self.keys.session_start_limit, 1)
            return None

    async def session_limit(self) -> SessionStartLimit | None:
        """The IDENTIFY budget as the leader last read it (None: never, or malformed)."""
        raw = await self.client.hgetall(self.keys.session_start_limit)
        return self._session_limit(cast("dict[str, str]", raw))
