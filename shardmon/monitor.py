"""One process's monitoring, wired: the sampler of its shards and, when it may lead, the leader's
duties (election, judge, alerter), built by `build_monitor()` and started and stopped together.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import redis.asyncio as aioredis

from shardmon.alerts import Alerter
from shardmon.collector import Collector
from shardmon.config import MonitorConfig, default_node
from shardmon.doctor import log_failures
from shardmon.judge import FleetJudge, SessionLimitSource
from shardmon.keys import Keys
from shardmon.leader import LeaderElection, LeaseTiming
from shardmon.rules import DEFAULT_RULES, CpuRule, MemoryRule, RestartStormRule, Rule
from shardmon.sampler import GatewayProvider, GatewayStats, Sampler
from shardmon.sinks import LogSink, Sink
from shardmon.store import Store
from shardmon.tasks import Stopping, TaskSet

if TYPE_CHECKING:
    from shardmon.health import HealthServer

__all__ = [
    "GatewayProvider",
    "GatewayStats",
    "MonitorConfig",
    "SystemMonitor",
    "build_monitor",
    "default_node",
]

log = logging.getLogger(__name__)


class SystemMonitor:
    """The sampler, the leader's duties (run only where `config.leader_eligible`) and the
    optional health server of one process. Build it with `build_monitor()`.

    `MEMORY_CRITICAL`, `CPU_CRITICAL` and `RESTART_ALERT_THRESHOLD` are the seed's names of
    the rules' defaults (on the class) and of this monitor's settings (on an instance).
    """

    MEMORY_CRITICAL: float = MemoryRule.threshold.default
    CPU_CRITICAL: float = CpuRule.threshold.default
    RESTART_ALERT_THRESHOLD: float = RestartStormRule.threshold.default

    def __init__(
        self,
        sampler: Sampler,
        election: LeaderElection,
        judge: FleetJudge,
        health: HealthServer | None = None,
    ) -> None:
        self.sampler = sampler
        limits = sampler.config.limits
        self.MEMORY_CRITICAL = limits.threshold(MemoryRule())
        self.CPU_CRITICAL = limits.threshold(CpuRule())
        self.RESTART_ALERT_THRESHOLD = limits.threshold(RestartStormRule())
        # The seed's API, answered by the sampler (see its docstrings).
        self.sample_once = sampler.sample_once
        self.log_restart = sampler.log_restart
        self.get_restart_history = sampler.get_restart_history
        self.monitor_uptime = sampler.monitor_uptime
        self.get_metrics_stats = sampler.get_metrics_stats
        self.metrics_history = sampler.metrics_history
        self.election = election
        self.judge = judge
        self.health = health
        self._sampling = TaskSet()
        self._leading = TaskSet()
        self._checking = TaskSet()  # shardmon doctor's Redis checks, once at start
        self._stopping = Stopping()
        self._started = False
        self._campaigning = False

    @property
    def config(self) -> MonitorConfig:
        return self.sampler.config

    @property
    def store(self) -> Store:
        return self.sampler.store

    @property
    def alerter(self) -> Alerter:
        return self.judge.alerter

    @property
    def running(self) -> bool:
        """Whether the sampling loop runs (not with `start(sample=False)`)."""
        return len(self._sampling) > 0

    @property
    def loops(self) -> set[str]:
        """The background loops running now: `shardmon-sampling`, `shardmon-election`,
        `shardmon-judge` (a health view shows those that stopped)."""
        return self._sampling.names | self._leading.names

    async def start(self, *, sample: bool = True) -> None:
        """Register the shards, replay the journal, start the sampling loop (unless `sample`
        is False: the caller then calls `sample_once()`, as the cog's tasks loop does) and,
        if eligible, join the leader election. Never raises for a Redis outage: the loops
        retry until Redis is back."""
        if self._started:
            return
        self._started = True
        await self.sampler.start()
        if self.health is not None:
            self.health.started = time.monotonic()
            await self.health.start()
        self._stopping = Stopping()  # one per run: ends every loop of this monitor
        config = self.config
        self._checking.spawn(
            log_failures(self.store.client, self.store.keys, shard_count=config.shard_count,
                         history_size=config.history_size,
                         clock_skew_warn_s=config.clock_skew_warn_s),
            name="shardmon-doctor",
        )  # fmt: skip
        if sample:
            self._sampling.spawn(self.sampler.run(self._stopping), name="shardmon-sampling")
        if self.config.leader_eligible:
            self._campaigning = True
            self._leading.spawn(self.election.run(self._stopping), name="shardmon-election")
            self._leading.spawn(self.judge.run(self._stopping), name="shardmon-judge")
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
        if self._campaigning:  # only what was started is stopped: a second stop costs nothing
            self._campaigning = False
            await self._leading.wait(self.election.timing.call_timeout_s * 2)
            await self.alerter.close()
            await self.election.release()
        await self._sampling.cancel()
        await self._checking.cancel()
        await self.sampler.flush()


def build_monitor(
    config: MonitorConfig,
    client: aioredis.Redis,
    *,
    gateway: GatewayProvider | None = None,
    collector: Collector | None = None,
    sinks: Sequence[Sink] | None = None,
    rules: Sequence[Rule] = DEFAULT_RULES,
    session_limits: SessionLimitSource | None = None,
) -> SystemMonitor:
    """A process's monitor, wired: its store on `client`, its sampler, the leader's duties and,
    with `config.health_port`, a health server.

    Args:
        config: deployment, shards and limits (see `MonitorConfig`).
        client: asyncio Redis client from `shardmon.connection.create_redis`.
        gateway: shard id -> its `GatewayStats`; the cog passes one reading the bot.
        collector: the metrics source; a `Collector` of the journal's filesystem by default.
        sinks: where this process's alerts go when it leads (the log by default).
        rules: what the leader judges (`DEFAULT_RULES`).
        session_limits: reads the bot's session start limit from Discord when this process
            leads (the cog passes one through discord.py); without it, none is read.
    """
    store = Store(client, Keys(config.deployment), config.history_size)
    sampler = Sampler(config, store, gateway=gateway, collector=collector)
    election = LeaderElection(store, config.node, LeaseTiming(config.leader_lease_s))
    alerter = Alerter(
        store,
        config.node,
        sinks if sinks is not None else [LogSink()],
        dedupe_s=config.alert_dedupe_s,
    )
    judge = FleetJudge(store, election, alerter, config.limits, rules=rules,
                       shard_count=config.shard_count, session_limits=session_limits)  # fmt: skip
    health = None
    if config.health_port is not None:
        from shardmon.health import HealthServer  # aiohttp only where a port is asked for

        health = HealthServer(
            lambda: sampler.last_tick, time.monotonic(), config.sample_interval_s,
            client.ping, config.health_port,
        )  # fmt: skip
    return SystemMonitor(sampler, election, judge, health)
