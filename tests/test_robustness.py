"""What the review found: bad keys, bad bytes, bad clocks and bad disks lose nothing."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
from helpers import sample
from redis_server import RedisServer

from shardmon.connection import create_redis, redact_url
from shardmon.keys import Keys
from shardmon.monitor import GatewayStats, MonitorConfig, build_monitor
from shardmon.rules import Limits
from shardmon.store import Store


async def test_a_wrong_type_key_fails_the_whole_sample_write_and_keeps_the_sample(
    config: MonitorConfig, client: aioredis.Redis, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    await client.set(keys.samples(1), "written by hand")
    monitor = build_monitor(config, client)
    with caplog.at_level(logging.ERROR):
        await monitor.sample_once()
    assert f"WRONGTYPE {keys.samples(1)} is a string, not a list" in caplog.text
    # Shard 1's write stopped before its sequence number, the list or the rollup changed (only
    # `latest` and the heartbeat, which a retry rewrites harmlessly, may have). Both samples stay
    # pending; shard 0's was applied, and its sequence number makes the retry a no-op.
    assert await client.hget(keys.seq, "1") is None
    rollups = [await client.hgetall(key) for key in await client.keys(keys.rollup_minute_pattern)]
    assert sum(int(r["n"]) for r in rollups) == 1
    assert [s.shard for s, _ in monitor.sampler.pending] == [0, 1]
    await client.delete(keys.samples(1))
    await monitor.sample_once()
    assert not monitor.sampler.pending
    assert await client.llen(keys.samples(0)) == 2 and await client.llen(keys.samples(1)) == 2
    rollups = [await client.hgetall(key) for key in await client.keys(keys.rollup_minute_pattern)]
    assert sum(int(r["n"]) for r in rollups) == 4


async def test_a_refused_journal_replay_does_not_hold_up_the_samples(
    config: MonitorConfig, client: aioredis.Redis, keys: Keys
) -> None:
    await client.set(keys.shard_restarts(1), "written by hand")
    monitor = build_monitor(config, client)
    event = await monitor.log_restart("crash")  # refused: kept in the journal
    await monitor.sample_once()
    assert not monitor.sampler.pending and await client.llen(keys.samples(0)) == 1
    await client.delete(keys.shard_restarts(1))
    await monitor.sample_once()
    assert await client.zrange(keys.shard_restarts(1), 0, -1) == [event.to_json()]


async def test_bytes_that_are_not_utf8_are_skipped(
    redis_url: str, client: aioredis.Redis, keys: Keys
) -> None:
    store = Store(client, keys)
    await store.push_samples([(sample(0), 1)])
    with redis.Redis.from_url(redis_url) as raw:
        raw.hset(keys.latest, "7", b"\xff\xfe\x00garbage")
        raw.zadd(keys.restarts, {b"\xff\xfe": time.time()})
    assert set(await store.latest_samples()) == {0}
    view = await store.leader_view(Limits(), shard_count=1)
    assert set(view.fleet.latest) == {0}
    assert (await store.restart_stats()).skipped == 1


async def test_an_unwritable_journal_still_leaves_the_event_in_redis(
    config: MonitorConfig, client: aioredis.Redis, keys: Keys, tmp_path: Path
) -> None:
    (tmp_path / "blocker").write_text("a file where a folder should be")
    monitor = build_monitor(
        dataclasses.replace(config, journal_path=tmp_path / "blocker" / "j.log"), client
    )
    event = await monitor.log_restart("crash", {"error": "disk \udcff full"})  # a lone surrogate
    assert event.metadata == {"error": "disk ? full"}
    assert await client.zrange(keys.restarts, 0, -1) == [event.to_json()]


async def test_an_infinite_gateway_latency_is_recorded_as_unknown(
    config: MonitorConfig, client: aioredis.Redis
) -> None:
    monitor = build_monitor(config, client, gateway=lambda shard: GatewayStats(float("inf"), 5, 9))
    samples = await monitor.sample_once()
    assert [s.latency_ms for s in samples] == [None, None] and samples[0].guilds == 5


async def test_sequence_numbers_go_on_from_redis_whatever_the_clock(
    config: MonitorConfig, client: aioredis.Redis, keys: Keys
) -> None:
    future = (int(time.time()) + 86400) * 1_000_000  # a previous host's clock ran a day ahead
    await client.hset(keys.seq, mapping={"0": future, "1": future})
    monitor = build_monitor(dataclasses.replace(config, leader_eligible=False), client)
    await monitor.start(sample=False)
    await monitor.sample_once()
    await monitor.stop()
    assert await client.llen(keys.samples(0)) == 1
    assert int(await client.hget(keys.seq, "0")) > future


async def test_threshold_overrides_that_are_not_finite_or_negative_are_skipped(
    client: aioredis.Redis, keys: Keys
) -> None:
    await client.hset(keys.thresholds, mapping={"memory": "nan", "cpu": "-5", "offline": "inf",
                                                "memory:3": "90"})  # fmt: skip
    store = Store(client, keys)
    overrides = (await store.leader_view(Limits(), shard_count=1)).overrides
    assert overrides == {"memory:3": 90.0} and store.skipped[keys.thresholds] == 3


def test_redact_url_hides_every_password() -> None:
    assert redact_url("redis://:hunter2@host:6379/0") == "redis://:***@host:6379/0"
    assert redact_url("rediss://bot:hunter2@host/0") == "rediss://bot:***@host/0"
    assert redact_url("redis://host/0?password=hunter2&db=1") == "redis://host/0?password=***&db=1"
    assert redact_url("redis://host:6379/0") == "redis://host:6379/0"


async def test_a_rollup_field_written_by_hand_starts_over_and_the_sample_lands(
    client: aioredis.Redis, keys: Keys
) -> None:
    store = Store(client, keys)
    first = sample(0, ts=1_800_000_000.0, cpu=30.0)
    rollup = keys.rollup_minute(1_800_000_000 // 60 * 60)
    await client.hset(rollup, mapping={"n": "x", "cpu_max": "garbage", "mem_sum": "1e999"})
    assert (await store.push_samples([(first, 1)])).applied == 1
    assert (await store.push_samples([(sample(0, ts=1_800_000_001.0, cpu=10.0), 2)])).applied == 1
    fields = await client.hgetall(rollup)
    assert {k: fields[k] for k in ("n", "cpu_sum", "cpu_min", "cpu_max", "mem_sum")} == {
        "n": "2", "cpu_sum": "4000", "cpu_min": "1000", "cpu_max": "3000", "mem_sum": "8000"
    }  # fmt: skip
    assert await client.ttl(rollup) > 0


async def test_a_refusal_other_than_a_wrong_type_keeps_redis_own_words(
    config: MonitorConfig, own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Out of memory (or a read-only replica) is not "a key written by hand"."""
    client = create_redis(own_redis.url)
    await client.config_set("maxmemory", "1")
    await client.config_set("maxmemory-policy", "noeviction")
    monitor = build_monitor(config, client)
    with caplog.at_level(logging.ERROR):
        await monitor.sample_once()
    assert "not allowed when used memory > 'maxmemory'" in caplog.text
    assert "WRONGTYPE" not in caplog.text
    assert len(monitor.sampler.pending) == 2
    await client.config_set("maxmemory", "0")
    await monitor.sample_once()
    assert not monitor.sampler.pending
    await client.aclose()


async def test_an_unreadable_journal_is_not_a_redis_outage(
    config: MonitorConfig,
    client: aioredis.Redis,
    keys: Keys,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    folder = tmp_path / "a-folder-where-the-journal-should-be"
    folder.mkdir()
    monitor = build_monitor(dataclasses.replace(config, journal_path=folder), client)
    with caplog.at_level(logging.ERROR):
        await monitor.sample_once()
        await monitor.sample_once()
    assert monitor.sampler.redis_available and not monitor.sampler.pending
    assert await client.llen(keys.samples(0)) == 2
    assert caplog.text.count("replay retried next tick") == 1  # said once, not every tick
