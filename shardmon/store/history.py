"""The fleet over time: performance from the minute and hour rollups, restarts counted by
bucket, and the hourly rollup the leader keeps. Every read costs the same whatever the number
of shards: one small hash (and one ZCOUNT) a bucket."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shardmon.keys import ALERTS_CAP, ROLLUP_HOUR_TTL_S
from shardmon.rules import RestartStormRule
from shardmon.stats import Performance, merge_rollups, rollup_columns, summarize_rollups
from shardmon.store.alerting import AlertStore
from shardmon.store.samples import minute_of

__all__ = ["SPANS", "History", "HistoryStore"]

#: A chart's span -> its length and its bucket in seconds: the last hour a minute rollup a
#: point, the last day and 30 days an hour rollup a point (they are kept 2 and 30 days).
SPANS: dict[str, tuple[int, int]] = {
    "hour": (3600, 60),
    "day": (86400, 3600),
    "month": (30 * 86400, 3600),
}


@dataclass(frozen=True, slots=True)
class History:
    """The fleet over a span, oldest first, for charts: `columns` has `t` (each bucket's
    start), `samples`, the average, peak and low of memory, CPU and latency, and `restarts`
    (events that began in the bucket); `storms` are the restart storm alerts sent in the span
    (`ts` and `shards`); `performance` sums the span up, as /performance shows it."""

    span: str
    bucket_s: int
    columns: dict[str, list[float | None]]
    storms: list[dict[str, Any]]
    performance: Performance


class HistoryStore(AlertStore):
    async def fleet_performance(
        self, window_s: float = 3600, now: float | None = None
    ) -> Performance:
        """The fleet over the last `window_s` from the minute rollups: one HGETALL a minute,
        whatever the number of shards."""
        now = self.clock.now() if now is None else now
        minutes = range(minute_of(now - window_s) + 60, minute_of(now) + 60, 60)
        return await self._rollups([self.keys.rollup_minute(minute) for minute in minutes])

    async def fleet_performance_hours(self, hours: int, now: float | None = None) -> Performance:
        """The fleet over the last `hours` hours from the hourly rollups (24 keys a day)."""
        now = self.clock.now() if now is None else now
        current = int(now // 3600 * 3600)
        span = range(current - (hours - 1) * 3600, current + 3600, 3600)
        return await self._rollups([self.keys.rollup_hour(hour) for hour in span])

    async def _rollups(self, keys: list[str]) -> Performance:
        async with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hgetall(key)
            performance = summarize_rollups(await pipe.execute())
        if performance.skipped:
            self._count_skipped(self.keys.rollup_minute_pattern, performance.skipped)
        return performance

    async def history(self, span: str, now: float | None = None) -> History:
        """The fleet over one of SPANS, a point a bucket (the current one included): the
        rollups, a ZCOUNT of `restarts` a bucket and the `alerts` list (its storm alerts) in
        one round trip. KeyError for a span that is not one of SPANS."""
        length, bucket_s = SPANS[span]
        now = self.clock.now() if now is None else now
        current = int(now // bucket_s * bucket_s)
        starts = list(range(current - length + bucket_s, current + bucket_s, bucket_s))
        rollup = self.keys.rollup_minute if bucket_s == 60 else self.keys.rollup_hour
        async with self.client.pipeline(transaction=False) as pipe:
            for start in starts:
                pipe.hgetall(rollup(start))
            for start in starts:
                pipe.zcount(self.keys.restarts, start, f"({start + bucket_s}")
            pipe.lrange(self.keys.alerts, 0, ALERTS_CAP - 1)
            *replies, records = await pipe.execute()
        performance = summarize_rollups(replies[: len(starts)])
        columns, _ = rollup_columns(starts, replies[: len(starts)])  # the same buckets skipped
        if performance.skipped:
            self._count_skipped(self.keys.rollup_minute_pattern, performance.skipped)
        columns["restarts"] = [float(count) for count in replies[len(starts) :]]
        storms = [
            {"ts": record["ts"], "shards": record["shards"]}
            for record in self._alert_records(records)
            if record["rule"] == RestartStormRule.name
            and record["kind"] == "alert"
            and record["ts"] >= starts[0]
        ]
        storms.sort(key=lambda storm: float(storm["ts"]))
        return History(span, bucket_s, columns, storms, performance)

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
