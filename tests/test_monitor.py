from __future__ import annotations

import asyncio
import dataclasses
import logging

import pytest
import redis.asyncio as aioredis
from helpers import wait_until
from redis_server import RedisServer

from shardmon.collector import Collector
from shardmon.connection import create_redis
from shardmon.keys import Keys
from shardmon.models import ProcessMetrics
from shardmon.monitor import GatewayStats, MonitorConfig, SystemMonitor, build_monitor


def _gateway(shard: int) -> GatewayStats:
    return GatewayStats(latency_ms=40.0 + shard, guilds=100 * (shard + 1), users=1000)


async def test_loop_samples_every_shard_and_stops_cleanly(
    config: MonitorConfig, client: aioredis.Redis, keys: Keys
) -> None:
    monitor = build_monitor(config, client, gateway=_gateway)
    await monitor.start()
    assert monitor.running

    async def three_each() -> bool:
        return all([await client.llen(keys.samples(s)) >= 3 for s in (0, 1)])

    await wait_until(three_each)
    await monitor.stop()
    assert not monitor.running
    latest = await monitor.store.latest_samples()
    assert latest[1].guilds == 200 and latest[1].latency_ms == 41
    info = await monitor.store.shard_info(1)
    assert info is not None and info.node == "testhost:4242" and info.shard_count == 4
    assert len(monitor.metrics_history) >= 3
    stats = monitor.get_metrics_stats()
    assert stats["samples"] == len(monitor.metrics_history)
    assert stats["memory"]["low"] <= stats["memory"]["average"] <= stats["memory"]["peak"]


async def test_monitor_uptime_has_the_seed_fields(
    config: MonitorConfig, client: aioredis.Redis
) -> None:
    monitor = build_monitor(config, client, gateway=_gateway)
    uptime = await monitor.monitor_uptime()
    for name in ("uptime_seconds", "uptime_formatted", "memory_usage", "cpu_usage", "disk_usage"):
        assert name in uptime
    assert uptime["active_servers"] == 300 and uptime["unique_users"] == 2000
    assert monitor.MEMORY_CRITICAL == 85 and monitor.CPU_CRITICAL == 85
    assert SystemMonitor.RESTART_ALERT_THRESHOLD == 3


async def test_metrics_history_is_capped(config: MonitorConfig, client: aioredis.Redis) -> None:
    monitor = build_monitor(dataclasses.replace(config, history_size=10), client)
    for _ in range(15):
        await monitor.sample_once()
    assert len(monitor.metrics_history) == 10


async def test_restart_history_and_log_restart(
    config: MonitorConfig, client: aioredis.Redis
) -> None:
    monitor = build_monitor(config, client)
    first = await monitor.log_restart("startup")
    second = await monitor.log_restart("deployment", {"changelog": "x"}, version="2.0.1")
    history = await monitor.get_restart_history(limit=5)
    assert [h["id"] for h in history] == [second.id, first.id]
    assert history[0]["version"] == "2.0.1" and history[0]["shards"] == [0, 1]
    assert len(monitor.sampler.journal.lines()) == 2


@pytest.mark.parametrize("persistent", [False, True], ids=["no-persistence", "appendonly"])
async def test_redis_killed_and_restarted_loses_and_doubles_nothing(
    config: MonitorConfig,
    own_redis: RedisServer,
    persistent: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    if persistent:
        own_redis.extra_args = ("--appendonly", "yes", "--appendfsync", "always")
        own_redis.restart()
    client = create_redis(own_redis.url, timeout_s=0.5)
    keys = Keys(config.deployment)
    # A buffer of 20 samples is 10 ticks of 2 shards; the loop ticks once, at start.
    monitor = build_monitor(dataclasses.replace(config, sample_interval_s=3600), client)
    await monitor.start()
    logged = [await monitor.log_restart("startup")]

    async def first_tick_written() -> bool:
        return bool(await client.llen(keys.samples(1)))

    await wait_until(first_tick_written)

    own_redis.kill()
    with caplog.at_level(logging.WARNING):
        logged.append(await monitor.log_restart("crash", {"error": "boom"}))
        for _ in range(12):
            await monitor.sample_once()
    assert not monitor.sampler.redis_available
    assert len(monitor.sampler.pending) == 20 and monitor.sampler.dropped_samples == 4
    assert "sample buffer full" in caplog.text and "kept in the journal" in caplog.text

    own_redis.start()
    logged.append(await monitor.log_restart("manual"))
    await monitor.sample_once()
    await monitor.stop()
    assert monitor.sampler.redis_available and not monitor.sampler.pending

    members = await client.zrange(keys.restarts, 0, -1)
    print(f"restart events logged {len(logged)}, in Redis {len(members)}")
    assert sorted(m for m in members) == sorted(e.to_json() for e in logged)
    assert await client.zcard(keys.shard_restarts(1)) == len(logged)
    # 12 ticks in the outage and 1 at recovery made 26 samples for a buffer of 20: the 6 oldest
    # were dropped (and counted), the newest 20 (10 a shard) reached Redis, each once. With
    # persistence, so did the tick from before the outage.
    assert monitor.sampler.dropped_samples == 6
    assert await client.llen(keys.samples(0)) == 10 + (1 if persistent else 0)
    await client.aclose()


async def test_start_with_redis_down_retries_until_it_is_back(
    config: MonitorConfig, own_redis: RedisServer
) -> None:
    own_redis.kill()
    client = create_redis(own_redis.url, timeout_s=0.3)
    monitor = build_monitor(config, client)
    await monitor.start()  # must not raise
    event = await monitor.log_restart("startup")
    assert not monitor.sampler.redis_available
    own_redis.start()

    async def recovered() -> bool:
        return bool(await client.zcard(Keys(config.deployment).restarts))

    await wait_until(recovered)
    await monitor.stop()
    assert await client.zrange(Keys(config.deployment).restarts, 0, -1) == [event.to_json()]
    assert await monitor.store.shard_info(0) is not None
    await client.aclose()


async def test_history_falls_back_to_the_journal_while_redis_is_down(
    config: MonitorConfig, own_redis: RedisServer
) -> None:
    client = create_redis(own_redis.url, timeout_s=0.3)
    monitor = build_monitor(config, client)
    event = await monitor.log_restart("crash")
    own_redis.kill()
    history = await monitor.get_restart_history(limit=3)
    assert [h["id"] for h in history] == [event.id]
    await client.aclose()


async def test_a_key_of_the_wrong_type_is_reported_and_nothing_is_lost(
    config: MonitorConfig, client: aioredis.Redis, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    await client.set(keys.latest, "someone wrote a string here")
    monitor = build_monitor(config, client)
    with caplog.at_level(logging.ERROR):
        await monitor.sample_once()
        await monitor.sample_once()
    assert caplog.text.count("Redis refused a write") == 1
    assert "WRONGTYPE" in caplog.text
    assert len(monitor.sampler.pending) == 4 and monitor.sampler.redis_available

    await client.delete(keys.latest)
    await monitor.sample_once()
    assert not monitor.sampler.pending
    assert await client.llen(keys.samples(0)) == 3


class _CancellationSwallowingCollector(Collector):
    """Behaves like a library that catches CancelledError (seen in the wild on Python 3.11).
    Each reading waits until cancelled, swallows the cancel, and returns a reading."""

    def __init__(self) -> None:
        super().__init__()
        self.collecting = asyncio.Event()
        self.swallowed = 0

    async def collect_async(self) -> ProcessMetrics:
        self.collecting.set()
        try:
            await asyncio.sleep(3600)  # only a cancel ends it
        except asyncio.CancelledError:  # the misbehaviour under test
            self.swallowed += 1
        return self.collect()


async def test_stop_ends_the_loop_even_if_a_tick_swallows_the_cancel(
    config: MonitorConfig, client: aioredis.Redis
) -> None:
    collector = _CancellationSwallowingCollector()
    monitor = build_monitor(config, client, collector=collector)
    await monitor.start()
    await collector.collecting.wait()  # inside the first tick's collect
    await monitor.stop()
    assert collector.swallowed == 1  # the stop's cancel reached the collect, which ate it
    assert not monitor.running


async def test_redis_restarted_empty_between_two_ticks_is_noticed_and_refilled(
    config: MonitorConfig, own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """redis-py reconnects quietly, so no tick sees an outage: the write script's answer
    (the first sample of a shard that this process had written before) gives it away."""
    client = create_redis(own_redis.url)
    keys = Keys(config.deployment)
    monitor = build_monitor(config, client)
    event = await monitor.log_restart("startup")
    await monitor.sample_once()
    own_redis.restart()  # empty: no persistence
    with caplog.at_level(logging.WARNING):
        await monitor.sample_once()
    assert "Redis has lost shardmon's data" in caplog.text
    assert monitor.sampler.redis_available and not monitor.sampler.pending
    assert await client.zrange(keys.restarts, 0, -1) == [event.to_json()]
    assert await client.hget(keys.shard_info(0), "node") == config.node
    await client.aclose()
