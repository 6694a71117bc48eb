"""The sampler: samples this process's shards, logs its restarts, and survives Redis outages.

Samples taken while Redis is unreachable wait in a bounded buffer and are written when it comes
back; restart events are journaled first, and the journal is replayed on start, after every
outage and every 10 minutes, so nothing logged is lost and nothing is written twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shardmon.collector import Collector
from shardmon.config import MonitorConfig
from shardmon.failures import REDIS_FAILURES, RedisFailure, classify
from shardmon.journal import Journal
from shardmon.models import (
    GatewayState,
    ProcessMetrics,
    RestartEvent,
    RestartType,
    Sample,
)
from shardmon.render import format_uptime
from shardmon.stats import Spread, summarize_samples
from shardmon.store import ShardInfo, Store
from shardmon.tasks import Stopping

__all__ = ["GatewayProvider", "GatewayStats", "Sampler"]

log = logging.getLogger(__name__)

#: Samples written per pipeline when a buffer is flushed after an outage.
FLUSH_BATCH = 200
#: The journal is replayed this often even when no failure was seen (ZADD NX: idempotent).
JOURNAL_REPLAY_EVERY_S = 600
#: How long a restart logged before the clock's first measurement waits for it (the journal
#: waits no longer on Redis; after it the event keeps its host's time).
FIRST_CLOCK_WAIT_S = 1.0


@dataclass(frozen=True, slots=True)
class GatewayStats:
    """A shard's gateway figures, supplied by the bot (the cog): unknown by default."""

    latency_ms: float | None = None
    guilds: int = 0
    users: int = 0
    gateway: GatewayState | None = None  # its connection; None where nobody tracks it


GatewayProvider = Callable[[int], GatewayStats]


class Sampler:
    """Samples this process's shards and records its restarts.

    Args:
        config: deployment, shards and intervals (see `MonitorConfig`).
        store: the deployment's store.
        gateway: shard id -> its `GatewayStats`; the cog passes one reading the bot.
        collector: the metrics source; a `Collector` of the journal's filesystem by default.
    """

    def __init__(
        self,
        config: MonitorConfig,
        store: Store,
        *,
        gateway: GatewayProvider | None = None,
        collector: Collector | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.journal = Journal(config.journal_path)
        self.collector = collector or Collector(disk_path=config.journal_path.parent)
        self.gateway: GatewayProvider = gateway or (lambda shard: GatewayStats())
        self._started_monotonic = time.monotonic()
        #: When this process started, in fleet time once the clock is measured (`start`).
        self.started_at = time.time()
        #: The last `history_size` readings of this process, oldest first.
        self.metrics_history: deque[ProcessMetrics] = deque(maxlen=config.history_size)
        #: Samples not yet in Redis (an outage), oldest first, with their sequence numbers.
        self.pending: deque[tuple[Sample, int]] = deque()
        #: Samples dropped because `pending` was full during a long outage.
        self.dropped_samples = 0
        self.redis_available = True
        #: Monotonic time of the last sampling tick, None before the first (for /healthz).
        self.last_tick: float | None = None
        self._needs_replay = True
        self._next_replay = 0.0
        self._last_seq = 0
        self._sync_lock = asyncio.Lock()
        self._last_refusal = ""
        self._journal_error = ""
        #: Shards this process has written samples of: a first sample again means a lost Redis.
        self._written_shards: set[int] = set()

    async def start(self) -> None:
        """Measure the clock against Redis's, go on from the last applied sequence number,
        replay the journal, write what is pending and register the shards. Never raises for a
        Redis outage."""
        await self.refresh_clock()
        try:  # sequence numbers go on from the last applied, whatever this host's clock says
            self._last_seq = max(
                self._last_seq, await self.store.applied_seq(self.config.shard_ids)
            )
        except REDIS_FAILURES as exc:
            log.warning("could not read applied sequence numbers (%s)", classify(exc))
        await self._sync_with_redis()
        if self.redis_available:
            await self._write_shard_info()

    async def run(self, stopping: Stopping) -> None:
        """Sample every interval until `stopping` is set; a failed tick is logged, the loop
        goes on."""
        interval = self.config.sample_interval_s
        while not stopping.is_set():
            started = time.monotonic()
            try:
                await self.sample_once()
            except Exception:  # the loop must outlive any one bad tick; logged here
                log.exception("sampling tick failed; retrying next interval")
            await stopping.pause(max(0.0, interval - (time.monotonic() - started)))

    async def sync(self) -> None:
        """Replay the journal when due and write what is pending, taking no new sample: for a
        process that samples only at times (`shardmon run` while its child is down)."""
        await self.refresh_clock()
        await self._sync_with_redis()

    async def flush(self) -> None:
        """Try once more to write what is pending (on stop), and say what could not be."""
        if self.pending:
            await self._sync_with_redis()
        if self.pending:
            log.warning("stopped with %d sample(s) not written to Redis", len(self.pending))

    # -- the clock ----------------------------------------------------------------------

    async def refresh_clock(self) -> None:
        """Measure this host's offset from Redis's clock when due (see `FleetClock`), and say
        when it is over `clock_skew_warn_s`. During an outage the last measurement goes on,
        and nothing waits on a Redis that is known to be down."""
        clock = self.store.clock
        if not self.redis_available:
            return
        first = not clock.measured
        try:
            reading = await self.store.sync_clock()
        except REDIS_FAILURES:  # an outage: the writes report it
            return
        if reading is None:  # not due, or refused (the store says so)
            return
        if first:
            self.started_at = clock.now() - (time.monotonic() - self._started_monotonic)
        skew, limit = reading.skew_s, self.config.clock_skew_warn_s
        if abs(skew) > limit:
            log.warning(
                "the clock of host %s is %.1f s %s Redis's (more than %s s): shardmon uses "
                "Redis's time for what it compares across hosts; fix the host's time sync (NTP)",
                self.config.node.rpartition(":")[0] or self.config.node,
                abs(skew),
                "ahead of" if skew > 0 else "behind",
                limit,
            )

    # -- sampling -------------------------------------------------------------------------

    async def sample_once(self) -> list[Sample]:
        """Take one reading, make a sample per shard, and write them (or buffer them)."""
        await self.refresh_clock()
        metrics = await self.collector.collect_async()
        self.last_tick = time.monotonic()
        self.metrics_history.append(metrics)
        clock = self.store.clock
        fleet = {"ts": clock.now()}
        if clock.skew_s is not None:
            fleet["clock_skew_s"] = round(clock.skew_s, 3)
        samples = []
        for shard in self.config.shard_ids:
            stats = self.gateway(shard)
            latency = stats.latency_ms
            if latency is not None and not math.isfinite(latency):
                latency = None  # discord.py says inf before the first heartbeat is acknowledged
            samples.append(
                Sample.checked(
                    **(metrics.to_dict() | fleet),
                    shard=shard,
                    latency_ms=latency,
                    guilds=stats.guilds,
                    users=stats.users,
                    node=self.config.node,
                    started_at=self.started_at,
                    gateway=stats.gateway,
                )
            )
        for sample in samples:
            self._enqueue(sample)
        await self._sync_with_redis()
        return samples

    def _enqueue(self, sample: Sample) -> None:
        # Sequence numbers are microseconds, strictly increasing: unique across restarts of the
        # process, and exact in Lua's doubles (below 2**53).
        # Fleet time: a shard whose process moves to a host that is behind goes on with higher
        # numbers, instead of having its samples ignored as already applied.
        self._last_seq = max(self._last_seq + 1, int(self.store.clock.now() * 1e6))
        if len(self.pending) >= self.config.sample_buffer_size:
            self.pending.popleft()
            self.dropped_samples += 1
            if self.dropped_samples == 1 or self.dropped_samples % 100 == 0:
                log.warning(
                    "sample buffer full (%d) during a Redis outage: %d oldest sample(s) dropped",
                    self.config.sample_buffer_size,
                    self.dropped_samples,
                )
        self.pending.append((sample, self._last_seq))

    async def _sync_with_redis(self) -> None:
        """Replay the journal if needed, then write pending samples; notes outages and returns."""
        async with self._sync_lock:
            await self._sync_locked()

    async def _sync_locked(self) -> None:
        try:
            if self._needs_replay or time.monotonic() >= self._next_replay:
                await self._replay_journal()
            while self.pending:
                batch = list(self.pending)[:FLUSH_BATCH]
                written = await self.store.push_samples(batch)
                for _ in batch:
                    self.pending.popleft()
                lost = written.first_in_redis & self._written_shards
                self._written_shards.update(sample.shard for sample, _ in batch)
                if lost:  # a reconnect hid it: Redis restarted empty, or was flushed
                    log.warning(
                        "Redis has lost shardmon's data (shards %s had written before): "
                        "replaying the journal and registering the shards again",
                        sorted(lost),
                    )
                    await self._replay_journal()
                    await self._write_shard_info()
        except REDIS_FAILURES as exc:
            failure = classify(exc)
            if failure.outage:
                self._outage(failure)
            else:  # keep the samples (bounded) and say what Redis said
                self._refused("a write, samples kept meanwhile", failure)
            return
        if not self.redis_available:
            log.info("Redis is back; pending samples and journal written")
            self.redis_available = True
            await self._write_shard_info()
        if self._last_refusal:
            log.info("Redis accepts writes again")
            self._last_refusal = ""

    async def _replay_journal(self) -> None:
        """Put back the events the journal has and Redis lacks: on start, after an outage, and
        every JOURNAL_REPLAY_EVERY_S (a helper in another process may have failed to write, or
        Redis may have restarted empty without this process noticing). A refusal is reported
        and retried next tick without holding up the samples."""
        try:
            lines = await asyncio.to_thread(self.journal.lines)
        except OSError as exc:  # not Redis' fault: the samples go on, the replay waits
            said = f"journal {self.journal.path} unreadable: {exc}"
            if said != self._journal_error:
                log.error("%s; replay retried next tick", said)
            self._journal_error = said
            return
        self._journal_error = ""
        try:
            added = await self.store.replay_restarts(lines)
        except REDIS_FAILURES as exc:
            failure = classify(exc)
            if failure.outage:  # the caller's to handle
                raise
            self._refused("the journal replay, retried next tick", failure)
            return
        self._needs_replay = False
        self._next_replay = time.monotonic() + JOURNAL_REPLAY_EVERY_S
        if added:
            log.info("replayed %d restart event(s) from %s", added, self.journal.path)

    def _outage(self, failure: RedisFailure) -> None:
        if self.redis_available:
            log.warning("Redis unreachable (%s); buffering samples", failure)
        self.redis_available = False
        self._needs_replay = True

    def _refused(self, what: str, failure: RedisFailure) -> None:
        said = failure.text
        if said != self._last_refusal:
            log.error("Redis refused %s: %s", what, said)
        self._last_refusal = said

    async def _write_shard_info(self) -> None:
        host, _, pid = self.config.node.rpartition(":")
        info = ShardInfo(
            started_at=self.started_at,
            host=host,
            pid=int(pid) if pid.isdigit() else os.getpid(),
            version=self.config.version,
            shard_count=self.config.shard_count,
            node=self.config.node,
        )
        try:
            await self.store.write_shard_info(self.config.shard_ids, info)
        except REDIS_FAILURES as exc:
            log.warning("could not register shards (%s); will retry", classify(exc))
            self.redis_available = False

    # -- restarts -------------------------------------------------------------------------

    async def log_restart(
        self,
        restart_type: RestartType | str,
        metadata: dict[str, Any] | None = None,
        *,
        version: str | None = None,
    ) -> RestartEvent:
        """Journal the event, in fleet time where Redis's clock has been measured, then write it
        to Redis; an outage leaves it for the replay."""
        clock = self.store.clock
        if not clock.measured:  # a startup, logged before the monitor starts: a short wait
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FIRST_CLOCK_WAIT_S):
                    await self.refresh_clock()
        event = self.config.event(restart_type, metadata, version=version)
        if clock.measured:
            event = event.with_fleet_time(clock.now())
        try:
            await asyncio.to_thread(self.journal.append, event.to_json())
        except OSError as exc:  # a full disk or unwritable folder: Redis is the only copy now
            log.error("restart event %s not journaled (%s): %s", event.id, self.journal.path, exc)
        try:
            await self.store.record_restart(event)
        except REDIS_FAILURES as exc:
            log.warning("restart event %s kept in the journal (%s)", event.id, classify(exc))
            self._needs_replay = True
        return event

    async def get_restart_history(self, limit: int = 10) -> list[dict[str, Any]]:
        """The fleet's newest restarts from Redis; this host's journal while Redis is down."""
        try:
            events = await self.store.restart_history(limit)
        except REDIS_FAILURES:  # an outage or a refusal: this host's journal still answers
            events = await asyncio.to_thread(self.journal.recent_events, limit)
        return [event.model_dump(mode="json") for event in events]

    # -- local views ----------------------------------------------------------------------

    async def monitor_uptime(self) -> dict[str, Any]:
        """This process now: uptime, memory, CPU, disk, servers and users of its shards."""
        metrics = await self.collector.collect_async()
        gateway = [self.gateway(shard) for shard in self.config.shard_ids]
        uptime = time.monotonic() - self._started_monotonic
        return {
            "uptime_seconds": uptime,
            "uptime_formatted": format_uptime(uptime),
            "started_at": self.started_at,
            "memory_usage": metrics.memory,
            "memory_used_mb": metrics.memory_used_mb,
            "memory_total_mb": metrics.memory_total_mb,
            "cpu_usage": metrics.cpu,
            "cpu_cores": metrics.cores,
            "disk_usage": metrics.disk,
            "rss_mb": metrics.rss_mb,
            "active_servers": sum(g.guilds for g in gateway),
            "unique_users": sum(g.users for g in gateway),
            "shards": list(self.config.shard_ids),
            "redis_available": self.redis_available,
        }

    def get_metrics_stats(self) -> dict[str, Any]:
        """Count and average/peak/low memory and CPU over `metrics_history`."""
        summary = summarize_samples(list(self.metrics_history))

        def spread(value: Spread | None) -> dict[str, float] | None:
            if value is None:
                return None
            return {"average": value.average, "peak": value.peak, "low": value.low}

        return {
            "samples": summary.samples,
            "memory": spread(summary.memory),
            "cpu": spread(summary.cpu),
            "pending_samples": len(self.pending),
            "dropped_samples": self.dropped_samples,
        }
