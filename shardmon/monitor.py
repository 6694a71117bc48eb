"""The per-process monitor: samples its shards, logs restarts, and survives Redis outages.

Samples taken while Redis is unreachable wait in a bounded buffer and are written when it comes
back; restart events are journaled first, and the journal is replayed on start and after every
outage, so nothing logged is lost and nothing is written twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from shardmon.alerts import Alerter
from shardmon.collector import Collector
from shardmon.failures import REDIS_FAILURES, RedisFailure, classify
from shardmon.health import HealthServer
from shardmon.journal import Journal
from shardmon.judge import FleetJudge
from shardmon.keys import Keys
from shardmon.leader import LeaderElection, LeaseTiming
from shardmon.models import (
    MalformedData,
    ProcessMetrics,
    RestartEvent,
    RestartType,
    Sample,
    new_event,
    parse_event,
)
from shardmon.render import format_uptime
from shardmon.rules import DEFAULT_RULES, Rule, Thresholds
from shardmon.sinks import LogSink, Sink
from shardmon.stats import Spread, summarize_samples
from shardmon.store import ShardInfo, Store

__all__ = ["GatewayProvider", "GatewayStats", "MonitorConfig", "SystemMonitor", "default_node"]

log = logging.getLogger(__name__)

#: Samples written per pipeline when a buffer is flushed after an outage.
FLUSH_BATCH = 200
#: The journal is replayed this often even when no failure was seen (ZADD NX: idempotent).
JOURNAL_REPLAY_EVERY_S = 600


def default_node() -> str:
    """This process's node id, `host:pid`."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True, slots=True)
class MonitorConfig:
    """The plain values the core takes (the edges build it from `settings.Settings`)."""

    deployment: str = "default"
    shard_ids: tuple[int, ...] = (0,)
    shard_count: int = 1
    system_name: str = "Discord Bot"
    environment: str = "Production"
    version: str = "0.0.0"
    node: str = field(default_factory=default_node)
    sample_interval_s: float = 60
    history_size: int = 1000
    sample_buffer_size: int = 1000
    memory_critical: float = 85
    cpu_critical: float = 85
    restart_alert_threshold: int = 3
    restart_window_s: int = 3600
    identify_alert_threshold: int = 25
    journal_path: Path = Path("logs/system_restarts.log")
    leader_eligible: bool = True
    leader_lease_s: float = 15
    alert_dedupe_s: int = 300
    health_port: int | None = None

    @property
    def thresholds(self) -> Thresholds:
        """The leader's thresholds; a shard is offline after 3 intervals without a heartbeat."""
        return Thresholds(
            memory=self.memory_critical,
            cpu=self.cpu_critical,
            restart_count=self.restart_alert_threshold,
            restart_window_s=self.restart_window_s,
            offline_after_s=3 * self.sample_interval_s,
            identify_count=self.identify_alert_threshold,
        )

    def event(
        self,
        restart_type: RestartType | str,
        metadata: dict[str, Any] | None = None,
        *,
        version: str | None = None,
    ) -> RestartEvent:
        """A new restart event of this process's shards."""
        return new_event(
            restart_type,
            shards=self.shard_ids,
            node=self.node,
            system=self.system_name,
            environment=self.environment,
            version=version or self.version,
            metadata=metadata,
        )


@dataclass(frozen=True, slots=True)
class GatewayStats:
    """A shard's gateway figures, supplied by the bot (the cog): unknown by default."""

    latency_ms: float | None = None
    guilds: int = 0
    users: int = 0


GatewayProvider = Callable[[int], GatewayStats]


def _report_end(task: asyncio.Task[None]) -> None:
    """A background loop ended by an error would otherwise vanish without a word."""
    if not task.cancelled() and task.exception() is not None:
        log.error("%s stopped", task.get_name(), exc_info=task.exception())


class SystemMonitor:
    """Samples this process's shards every `sample_interval_s` and records its restarts.

    Args:
        config: deployment, shards and limits (see `MonitorConfig`).
        client: asyncio Redis client from `shardmon.connection.create_redis`.
        gateway: shard id -> its `GatewayStats`; the cog passes one reading the bot.
        collector: the metrics source; a `Collector` of the journal's filesystem by default.
    """

    MEMORY_CRITICAL: float = 85
    CPU_CRITICAL: float = 85
    RESTART_ALERT_THRESHOLD: int = 3

    def __init__(
        self,
        config: MonitorConfig,
        client: aioredis.Redis,
        *,
        gateway: GatewayProvider | None = None,
        collector: Collector | None = None,
        sinks: Sequence[Sink] | None = None,
        rules: Sequence[Rule] = DEFAULT_RULES,
    ) -> None:
        self.config = config
        self.MEMORY_CRITICAL = config.memory_critical
        self.CPU_CRITICAL = config.cpu_critical
        self.RESTART_ALERT_THRESHOLD = config.restart_alert_threshold
        self.store = Store(client, Keys(config.deployment), config.history_size)
        self.journal = Journal(config.journal_path)
        self.collector = collector or Collector(disk_path=config.journal_path.parent)
        self.gateway: GatewayProvider = gateway or (lambda shard: GatewayStats())
        self.election = LeaderElection(
            client, self.store.keys, config.node, LeaseTiming(config.leader_lease_s)
        )
        self.alerter = Alerter(
            client,
            self.store.keys,
            config.node,
            sinks if sinks is not None else [LogSink()],
            dedupe_s=config.alert_dedupe_s,
        )
        self.judge = FleetJudge(
            self.store,
            self.election,
            self.alerter,
            config.thresholds,
            config.sample_interval_s,
            rules,
            shard_count=config.shard_count,
        )
        self.started_at = time.time()
        #: The last `history_size` readings of this process, oldest first.
        self.metrics_history: deque[ProcessMetrics] = deque(maxlen=config.history_size)
        #: Samples not yet in Redis (an outage), oldest first, with their sequence numbers.
        self.pending: deque[tuple[Sample, int]] = deque()
        #: Samples dropped because `pending` was full during a long outage.
        self.dropped_samples = 0
        self.redis_available = True
        self._needs_replay = True
        self._next_replay = 0.0
        self._last_seq = 0
        self._sync_lock = asyncio.Lock()
        self._last_refusal = ""
        self._journal_error = ""
        #: Shards this process has written samples of: a first sample again means a lost Redis.
        self._written_shards: set[int] = set()
        self._started = False
        #: Monotonic time of the last sampling tick, None before the first (for /healthz).
        self.last_tick: float | None = None
        self.health: HealthServer | None = None
        if config.health_port is not None:
            self.health = HealthServer(
                lambda: self.last_tick, time.monotonic(), config.sample_interval_s,
                self.store.client.ping, config.health_port,
            )  # fmt: skip
        self._task: asyncio.Task[None] | None = None
        self._leader_tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self, *, sample: bool = True) -> None:
        """Register the shards, replay the journal, start the sampling loop (unless `sample`
        is False: the caller then calls `sample_once()`, as the cog's tasks loop does) and,
        if eligible, join the leader election.

        Never raises for a Redis outage: the loops retry until Redis is back.
        """
        if self._started:
            return
        self._started = True
        try:  # sequence numbers go on from the last applied, whatever this host's clock says
            self._last_seq = max(
                self._last_seq, await self.store.applied_seq(self.config.shard_ids)
            )
        except REDIS_FAILURES as exc:
            log.warning("could not read applied sequence numbers (%s)", classify(exc))
        await self._sync_with_redis()
        if self.redis_available:
            await self._write_shard_info()
        if self.health is not None:
            self.health.started = time.monotonic()
            await self.health.start()
        self._stopping = asyncio.Event()  # one per run: ends every loop of this monitor
        if sample:
            self._task = asyncio.create_task(self._run(), name="shardmon-sampling")
        if self.config.leader_eligible:
            self._leader_tasks = [
                asyncio.create_task(self.election.run(self._stopping), name="shardmon-election"),
                asyncio.create_task(self.judge.run(self._stopping), name="shardmon-judge"),
            ]
            for task in self._leader_tasks:
                task.add_done_callback(_report_end)
        log.info(
            "monitoring shards %s of %s every %ss",
            list(self.config.shard_ids),
            self.config.deployment,
            self.config.sample_interval_s,
        )

    async def stop(self) -> None:
        """Stop judging and hand over leadership at once, stop sampling, and try once more
        to write what is pending."""
        # The event ends the loops even if a library swallows a cancellation (seen with
        # redis-py on Python 3.11); a cancel then interrupts one waiting on Redis.
        self._started = False
        self._stopping.set()
        if self.health is not None:
            await self.health.stop()
        leader_tasks, self._leader_tasks = self._leader_tasks, []
        if leader_tasks:
            await asyncio.wait(leader_tasks, timeout=self.election.timing.call_timeout_s * 2)
            for leader_task in leader_tasks:
                leader_task.cancel()  # still inside a bounded Redis call
            await asyncio.wait(leader_tasks, timeout=1)
            await self.alerter.close()
            await self.election.release()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.pending:
            await self._sync_with_redis()
        if self.pending:
            log.warning("stopped with %d sample(s) not written to Redis", len(self.pending))

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _run(self) -> None:
        interval = self.config.sample_interval_s
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                await self.sample_once()
            except Exception:  # the loop must outlive any one bad tick; logged below
                log.exception("sampling tick failed; retrying next interval")
            delay = max(0.0, interval - (time.monotonic() - started))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    # -- sampling -------------------------------------------------------------------------

    async def sample_once(self) -> list[Sample]:
        """Take one reading, make a sample per shard, and write them (or buffer them)."""
        metrics = await self.collector.collect_async()
        self.last_tick = time.monotonic()
        self.metrics_history.append(metrics)
        samples = []
        for shard in self.config.shard_ids:
            stats = self.gateway(shard)
            latency = stats.latency_ms
            if latency is not None and not math.isfinite(latency):
                latency = None  # discord.py says inf before the first heartbeat is acknowledged
            samples.append(
                Sample(
                    **metrics.model_dump(),
                    shard=shard,
                    latency_ms=latency,
                    guilds=stats.guilds,
                    users=stats.users,
                    node=self.config.node,
                    started_at=self.started_at,
                )
            )
        for sample in samples:
            self._enqueue(sample)
        await self._sync_with_redis()
        return samples

    def _enqueue(self, sample: Sample) -> None:
        # Sequence numbers are microseconds, strictly increasing: unique across restarts of the
        # process, and exact in Lua's doubles (below 2**53).
        self._last_seq = max(self._last_seq + 1, time.time_ns() // 1000)
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
                await self.store.push_samples(batch)
                for _ in batch:
                    self.pending.popleft()
                lost = self.store.first_samples & self._written_shards
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
        """Journal the event, then write it to Redis; an outage leaves it for the replay."""
        event = self.config.event(restart_type, metadata, version=version)
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
            events = []
            for line in await asyncio.to_thread(self.journal.tail, limit):
                with contextlib.suppress(MalformedData):
                    events.append(parse_event(line))
        return [event.model_dump(mode="json") for event in events]

    # -- local views ----------------------------------------------------------------------

    async def monitor_uptime(self) -> dict[str, Any]:
        """This process now: uptime, memory, CPU, disk, servers and users of its shards."""
        metrics = await self.collector.collect_async()
        gateway = [self.gateway(shard) for shard in self.config.shard_ids]
        uptime = time.time() - self.started_at
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
