from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from conftest import ALL_TOPOLOGIES
from helpers import event, sample

from shardmon.connection import RedisTarget, create_sync_redis
from shardmon.keys import Keys
from shardmon.models import parse_sample
from shardmon.rules import Limits
from shardmon.store import ShardInfo, Store, record_restart_sync
from shardmon.store import restarts as restart_store

TOPOLOGIES = ALL_TOPOLOGIES  # standalone, Sentinel and Cluster alike


@pytest.fixture
def store(client: aioredis.Redis, keys: Keys) -> Store:
    return Store(client, keys, history_size=1000)


async def test_1100_pushes_leave_the_newest_1000_newest_first(
    store: Store, client: aioredis.Redis, keys: Keys
) -> None:
    base = time.time() - 2000
    for i in range(1100):
        await store.push_samples([(sample(0, ts=base + i, guilds=i), i + 1)])
    raw = await client.lrange(keys.samples(0), 0, -1)
    assert len(raw) == 1000
    guilds = [parse_sample(r).guilds for r in raw]
    assert guilds == list(range(1099, 99, -1))
    assert parse_sample(await client.hget(keys.latest, "0")).guilds == 1099


async def test_a_retried_sample_is_applied_once(
    store: Store, client: aioredis.Redis, keys: Keys
) -> None:
    s = sample(0)
    assert (await store.push_samples([(s, 10)])).applied == 1
    assert (await store.push_samples([(s, 10)])).applied == 0  # redis-py retried after a timeout
    assert (await store.push_samples([(sample(0), 9)])).applied == 0  # older than applied
    assert await client.llen(keys.samples(0)) == 1
    rollup = await client.hgetall(keys.rollup_minute(int(s.ts // 60 * 60)))
    assert rollup["n"] == "1"


async def test_sample_updates_latest_heartbeat_and_minute_rollup(
    store: Store, client: aioredis.Redis, keys: Keys
) -> None:
    now = time.time()
    batch = [
        (sample(0, ts=now, cpu=10, memory=30, latency_ms=40), 1),
        (sample(1, ts=now, cpu=30, memory=50, latency_ms=None), 2),
        (sample(2, ts=now, cpu=20.555, memory=40, latency_ms=60), 3),
    ]
    assert (await store.push_samples(batch)).applied == 3
    assert set(await store.latest_samples()) == {0, 1, 2}
    beats = await store.heartbeats()
    assert beats[1] == pytest.approx(now)
    rollup_key = keys.rollup_minute(int(now // 60 * 60))
    rollup = await client.hgetall(rollup_key)
    assert rollup["n"] == "3" and rollup["lat_n"] == "2"
    assert (rollup["cpu_min"], rollup["cpu_max"], rollup["cpu_sum"]) == ("1000", "3000", "6056")
    assert 0 < await client.ttl(rollup_key) <= 2 * 86400
    fleet = await store.fleet_performance(window_s=300, now=now)
    assert fleet.samples == 3
    assert fleet.cpu is not None and fleet.cpu.average == pytest.approx(20.1867, abs=1e-3)
    assert (fleet.memory.peak, fleet.memory.low) == (50, 30)  # type: ignore[union-attr]
    assert fleet.latency_ms is not None and fleet.latency_ms.average == 50


async def test_fleet_performance_reads_only_the_window(store: Store) -> None:
    now = time.time()
    await store.push_samples([(sample(0, ts=now - 7200, cpu=90), 1)])
    await store.push_samples([(sample(0, ts=now, cpu=10), 2)])
    fleet = await store.fleet_performance(window_s=3600, now=now)
    assert fleet.samples == 1 and fleet.cpu is not None and fleet.cpu.peak == 10


async def test_restart_is_recorded_once_in_fleet_and_shard_sets(
    store: Store, client: aioredis.Redis, keys: Keys
) -> None:
    e = event("startup", shards=(0, 1))
    assert await store.record_restart(e) is True
    assert await store.record_restart(e) is False
    assert await client.zcard(keys.restarts) == 1
    assert await client.zcard(keys.shard_restarts(0)) == 1
    assert await client.zcard(keys.shard_restarts(1)) == 1
    assert await client.zscore(keys.restarts, e.to_json()) == pytest.approx(e.ts)


async def test_history_is_newest_first_with_limit_and_per_shard(store: Store) -> None:
    now = time.time()
    events = [event("startup", shards=(i % 2,), at=now - 100 + i) for i in range(15)]
    for e in events:
        await store.record_restart(e)
    history = await store.restart_history(limit=10)
    assert [e.id for e in history] == [e.id for e in reversed(events)][:10]
    shard1 = await store.restart_history(limit=50, shard=1)
    assert len(shard1) == 7 and all(e.shards == (1,) for e in shard1)
    assert await store.restart_history(limit=0) == []


async def test_storm_counts_agree_with_the_zcounts_and_read_no_shard_set(
    store: Store, client: aioredis.Redis, keys: Keys
) -> None:
    """DESIGN.md: the per-shard storm count is a ZCOUNT of `restarts:<shard>`. The leader and
    every view take the same counts from `recent_restarts`, in one read whose size follows
    the restarts, whatever the shard count."""
    now = time.time()
    for ago in (10, 300, 3000, 4000, 90000):
        await store.record_restart(event("crash", shards=(3,), at=now - ago))
    await store.record_restart(event("crash", shards=(4, 5), at=now - 5))
    counts = await store.restarts_in_window(3600, now)
    assert counts == {3: 3, 4: 1, 5: 1}
    for shard, count in counts.items():  # what an operator's ZCOUNT says
        assert await client.zcount(keys.shard_restarts(shard), now - 3600, "+inf") == count
    assert await store.restarts_in_window(60, now) == {3: 1, 4: 1, 5: 1}
    assert await store.restarts_in_window(8, now) == {4: 1, 5: 1}
    before = await _command_calls(client)
    report = await store.restart_storms(Limits(), shard_count=10, now=now)
    after = await _command_calls(client)
    assert (report.storms, report.threshold, report.window) == ({3: 3}, 3, "the last hour")
    assert report.restarts == {3: 3, 4: 1, 5: 1}
    if before is not None and after is not None:  # one server: its stats say what was sent
        sent = {name: n - before.get(name, 0) for name, n in after.items()}
        assert sent.get("zrangebyscore") == 1 and not sent.get("zcount") and not sent.get("evalsha")
    # A shard beyond the configured count, with no heartbeat (it crash-loops before its first
    # sample), is counted too: it has restarted.
    for ago in (20, 30, 40):
        await store.record_restart(event("crash", shards=(42,), at=now - ago))
    assert (await store.restart_storms(Limits(), shard_count=10, now=now)).storms == {3: 3, 42: 3}
    view = await store.leader_view(Limits(), shard_count=10, now=now)
    assert view.fleet.restarts_in_window[42] == 3
    await client.hset(keys.thresholds, mapping={"restart_storm": "1", "restart_storm:4": "5"})
    report = await store.restart_storms(Limits({"restart_window_s": 600}), 10, now=now)
    assert (report.storms, report.threshold, report.window) == (
        {3: 2, 5: 1, 42: 3}, 1, "the last 10 minutes"
    )  # fmt: skip


async def test_a_deployment_without_the_restart_index_gets_it_from_its_events(
    store: Store, client: aioredis.Redis, keys: Keys
) -> None:
    """Restarts recorded before `recent_restarts` existed still count: the first read builds
    the index from the last 7 days of `restarts`."""
    now = time.time()
    for ago in (10, 20, 30, 8 * 86400):
        await store.record_restart(event("crash", shards=(7, 8), at=now - ago))
    await client.delete(keys.recent_restarts)  # as an older monitor left it
    assert await store.restarts_in_window(3600, now) == {7: 3, 8: 3}
    assert await client.zcard(keys.recent_restarts) == 6  # the 8-day-old event is not kept
    await client.zadd(keys.recent_restarts, {"written by hand": now})
    assert await store.restarts_in_window(3600, now) == {7: 3, 8: 3}
    assert store.skipped[keys.recent_restarts] == 1
    await store.prune_restarts(now - 15)
    assert await store.restarts_in_window(3600, now) == {7: 1, 8: 1}


async def test_restart_stats(store: Store) -> None:
    now = time.time()
    kinds = ["startup", "crash", "crash", "deployment", "manual", "scheduled"]
    ages = [10 * 86400, 2 * 86400, 7200, 1800, 60, 30]
    for kind, ago in zip(kinds, ages, strict=True):
        await store.record_restart(event(kind, at=now - ago))
    stats = await store.restart_stats(now=now)
    assert stats.total == 6
    assert stats.by_type == {
        "crash": 2, "startup": 1, "deployment": 1, "manual": 1, "scheduled": 1,
    }  # fmt: skip
    assert stats.last_hour == 3 and stats.last_24h == 4
    assert stats.per_day == pytest.approx(0.6)
    assert stats.per_month == pytest.approx(18)


async def test_restart_stats_read_counts_kept_by_the_writes_not_the_whole_set(
    store: Store, client: aioredis.Redis, keys: Keys
) -> None:
    now = time.time()
    for kind, ago in [("startup", 3 * 86400), ("crash", 7200), ("crash", 60)]:
        await store.record_restart(event(kind, at=now - ago))
    replayed = event("crash", at=now - 30)
    await store.record_restart(replayed)
    await store.record_restart(replayed)  # a journal replay: not counted twice
    assert await client.hgetall(keys.restart_types) == {"startup": "1", "crash": "3"}
    stats = await store.restart_stats(now=now)
    assert (stats.total, stats.by_type, stats.first_at) == (
        4, {"crash": 3, "startup": 1}, pytest.approx(now - 3 * 86400)
    )  # fmt: skip

    # A prune drops the counts; the next read rebuilds them from what is left.
    assert (await store.prune_restarts(now - 86400)).fleet_removed == 1
    assert await client.exists(keys.restart_types) == 0
    assert (await store.restart_stats(now=now)).by_type == {"crash": 3}
    assert await client.hgetall(keys.restart_types) == {"crash": "3", "malformed": "0"}

    # Counts that disagree with the set (an older version, a hand edit) are rebuilt too.
    await client.hset(keys.restart_types, mapping={"crash": "40", "manual": "x"})
    assert (await store.restart_stats(now=now)).by_type == {"crash": 3}
    await client.zadd(keys.restarts, {"written by hand": now, "older garbage": 0})
    stats = await store.restart_stats(now=now)
    assert (stats.total, stats.skipped) == (3, 2)
    assert stats.first_at == pytest.approx(now - 7200)  # the oldest event, not the garbage


async def test_a_restart_is_refused_whole_when_one_of_its_keys_has_the_wrong_type(
    store: Store, client: aioredis.Redis, keys: Keys
) -> None:
    for key in (keys.restart_types, keys.shard_restarts(3)):
        await client.set(key, "written by hand")
        crash = event("crash", shards=(2, 3))
        with pytest.raises(redis.ResponseError, match=f"WRONGTYPE {re.escape(key)}"):
            await store.record_restart(crash)
        assert (
            await client.zcard(keys.restarts) == 0
            and await client.zcard(keys.shard_restarts(2)) == 0
        )
        await client.delete(key)
        assert await store.record_restart(crash)  # the journal's replay, once the key is fixed
        assert await client.hgetall(keys.restart_counts) == {"2:crash": "1", "3:crash": "1"}
        await client.flushall()


async def test_shard_performance(store: Store) -> None:
    for i, (cpu, mem) in enumerate([(10, 50), (30, 70), (20, 60)]):
        await store.push_samples([(sample(5, cpu=cpu, memory=mem), i + 1)])
    perf = await store.shard_performance(5)
    assert perf.samples == 3
    assert perf.cpu is not None and (perf.cpu.average, perf.cpu.peak, perf.cpu.low) == (20, 30, 10)
    assert perf.memory is not None and perf.memory.average == 60


async def test_garbage_written_by_hand_is_skipped_and_counted(
    store: Store, client: aioredis.Redis, keys: Keys
) -> None:
    now = time.time()
    await store.push_samples([(sample(0, ts=now), 1)])
    await store.record_restart(event("startup", at=now))
    await client.lpush(keys.samples(0), "garbage", json.dumps({"ts": 1}))
    await client.hset(keys.latest, mapping={"7": "{not json", "8": '{"shard": 8}'})
    await client.zadd(keys.restarts, {"oops": now + 1, '{"id": 1}': now + 2})
    await client.zadd(keys.heartbeats, {"not-a-shard": now})
    await client.hset(keys.rollup_minute(int(now // 60 * 60)), "cpu_sum", "NaN")

    assert (await store.shard_performance(0)).samples == 1
    assert set(await store.latest_samples()) == {0}
    assert len(await store.restart_history(limit=1)) == 1  # garbage never shortens the page
    stats = await store.restart_stats(now=now)
    assert stats.total == 1 and stats.skipped == 2
    assert set(await store.heartbeats()) == {0}
    assert (await store.fleet_performance(now=now)).skipped == 1
    assert store.skipped[keys.samples(0)] == 2
    assert store.skipped[keys.latest] == 2
    assert store.skipped[keys.restarts] >= 2
    assert store.skipped[keys.heartbeats] == 1


async def test_shard_info_round_trips(store: Store) -> None:
    info = ShardInfo(started_at=123.5, host="h", pid=7, version="1.0", shard_count=4, node="h:7")
    await store.write_shard_info([2], info)
    assert await store.shard_info(2) == info
    assert await store.shard_info(3) is None


async def test_replay_adds_only_missing_events_and_skips_bad_lines(
    store: Store, client: aioredis.Redis, keys: Keys
) -> None:
    first, second = event("startup"), event("crash")
    await store.record_restart(first)
    lines = [first.to_json(), "torn {li", second.to_json()]
    assert await store.replay_restarts(lines) == 1
    assert await store.replay_restarts(lines) == 0
    assert await client.zcard(keys.restarts) == 2
    assert store.skipped["journal"] == 2


async def test_hourly_rollups_merge_the_minutes_and_live_30_days(
    store: Store, client: aioredis.Redis, keys: Keys
) -> None:
    hour = int(time.time() // 3600 * 3600) - 7200  # a complete hour, two hours ago
    batch = [
        (sample(0, ts=hour + 30, cpu=10, memory=40, latency_ms=20), 1),
        (sample(1, ts=hour + 90, cpu=30, memory=60, latency_ms=None), 2),
        (sample(0, ts=hour + 3599, cpu=20, memory=50, latency_ms=40), 3),
    ]
    await store.push_samples(batch)
    assert await store.roll_up_hour(hour) == 3
    assert await store.roll_up_hour(hour) == 3  # idempotent: the leader runs it every tick
    bucket = await client.hgetall(keys.rollup_hour(hour))
    assert bucket["n"] == "3" and bucket["lat_n"] == "2"
    assert (bucket["cpu_sum"], bucket["cpu_min"], bucket["cpu_max"]) == ("6000", "1000", "3000")
    assert 29 * 86400 < await client.ttl(keys.rollup_hour(hour)) <= 30 * 86400
    perf = await store.fleet_performance_hours(3, now=hour + 7200 + 10)
    assert perf.samples == 3 and perf.cpu is not None and perf.cpu.average == 20
    assert perf.latency_ms is not None and perf.latency_ms.peak == 40
    assert await store.roll_up_hour(hour - 3600) == 0  # an empty hour writes nothing
    assert not await client.exists(keys.rollup_hour(hour - 3600))


async def test_an_event_recorded_during_a_rebuild_is_never_lost_from_the_counts(
    store: Store,
    client: aioredis.Redis,
    keys: Keys,
    redis_target: RedisTarget,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = time.time()
    await store.record_restart(event("crash", at=now - 60))
    await client.delete(keys.restart_types)  # as after an upgrade
    parse_all = restart_store.parse_all

    def parse_then_race(*args: Any) -> Any:  # another process records between read and write
        with create_sync_redis(redis_target) as other:
            record_restart_sync(other, keys, event("manual", at=now))
        return parse_all(*args)

    monkeypatch.setattr(restart_store, "parse_all", parse_then_race)
    assert (await store.restart_stats(now=now)).by_type == {"crash": 1}  # what it had read
    monkeypatch.undo()
    # The rebuild lost its WATCH to the racing write and stored nothing; this read rebuilds.
    assert await client.hgetall(keys.restart_types) == {"manual": "1"}
    assert (await store.restart_stats(now=now)).by_type == {"crash": 1, "manual": 1}


async def _command_calls(client: aioredis.Redis) -> dict[str, int] | None:
    """Calls per command since the server started (None on a Cluster: one node's stats)."""
    if isinstance(client, redis.asyncio.cluster.RedisCluster):
        return None
    stats = await client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(entry["calls"]) for name, entry in stats.items()}


async def test_identify_counts_of_the_whole_fleet_come_in_one_read(
    store: Store, client: aioredis.Redis, keys: Keys
) -> None:
    now = time.time()
    for shard, ages in {0: [10, 20, 30], 2: [60], 3: [2 * 86400]}.items():
        for ago in ages:
            await store.record_gateway_event(shard, "identify", now=now - ago)
    await client.zadd(keys.identifies, {"written by hand": now})
    before = await _command_calls(client)
    counts = await store.identify_counts(now=now)
    after = await _command_calls(client)
    assert counts == {0: 3, 2: 1}  # shard 3's IDENTIFY is older than 24 h
    if before is not None and after is not None:  # one server: its stats say what was sent
        sent = {name: n - before.get(name, 0) for name, n in after.items()}
        assert sent.get("zrangebyscore") == 1 and not sent.get("zcount")
    assert store.skipped[keys.identifies] == 1
    for shard, count in counts.items():  # what an operator's ZCOUNT of the shard's set says
        assert await client.zcount(keys.gateway_identify(shard), now - 86400, "+inf") == count
    gateway = await store.gateway_counts([0, 2, 3], now=now)
    assert {s: c.identifies for s, c in gateway.items()} == {0: 3, 2: 1, 3: 0}
    view = await store.leader_view(Limits(), shard_count=3, now=now)
    # The leader gets back only the shards that may fire (25 a day by default) ...
    assert view.fleet.identifies_24h == {} and view.fleet.identifies_1h == 4
    await client.hset(keys.thresholds, mapping={"identify_storm": "30", "identify_storm:0": "3"})
    view = await store.leader_view(Limits(), shard_count=3, now=now)
    assert view.fleet.identifies_24h == {0: 3}  # ... with the overrides
    await client.hset(keys.active_alerts, "identify_storm:2", '{"since": 1}')
    view = await store.leader_view(Limits(), shard_count=3, now=now)
    assert view.fleet.identifies_24h == {0: 3, 2: 1}  # ... and those whose resolution is owed
    assert store.skipped[keys.identifies] == 4  # the member written by hand, at each read
