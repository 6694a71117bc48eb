"""Sentinel and Cluster: settings select them, and a master failover loses no restart event."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import time
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
from helpers import wait_for, wait_until
from redis_server import ClusterSetup, SentinelSetup

from shardmon import cli
from shardmon.api import log_bot_restart, persist_restart
from shardmon.connection import create_redis, create_sync_redis
from shardmon.keys import Keys
from shardmon.monitor import MonitorConfig, build_monitor
from shardmon.settings import SettingsError, load_settings


def _wait_for_restarts(client: redis.Redis, count: int) -> None:
    """The seed's helpers write from a thread of their own: wait for it (10 s at most)."""
    deadline = time.monotonic() + 10
    while client.zcard(Keys("default").restarts) != count:
        assert time.monotonic() < deadline, "the restart event never reached Redis"
        time.sleep(0.02)


def test_settings_select_a_sentinel_master(
    sentinel_setup: SentinelSetup,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sentinel_setup.flush()
    monkeypatch.setenv("SHARDMON_REDIS_MODE", "sentinel")
    monkeypatch.setenv(
        "SHARDMON_REDIS_SENTINELS", ",".join(f"{h}:{p}" for h, p in sentinel_setup.addresses)
    )
    monkeypatch.setenv("SHARDMON_REDIS_SENTINEL_MASTER", sentinel_setup.MASTER)
    target = load_settings().redis_target()
    assert target == sentinel_setup.target
    assert log_bot_restart("manual") is not None  # the seed's blocking helper, through Sentinel
    with create_sync_redis(target) as client:
        _wait_for_restarts(client, 1)
        assert client.connection_pool.get_master_address()[1] == sentinel_setup.master_port()
    capsys.readouterr()
    assert cli.main(["keys"]) == 0  # redis-cli lines point at the master the sentinels name
    master = f"redis-cli -u redis://127.0.0.1:{sentinel_setup.master_port()}/0 "
    assert master in capsys.readouterr().out


def test_settings_select_a_cluster(
    cluster_setup: ClusterSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster_setup.flush()
    monkeypatch.setenv("SHARDMON_REDIS_MODE", "cluster")
    monkeypatch.setenv("SHARDMON_REDIS_URL", cluster_setup.url)
    target = load_settings().redis_target()
    assert target == cluster_setup.target
    assert log_bot_restart("crash") is not None
    with create_sync_redis(target) as client:
        _wait_for_restarts(client, 1)
        # Every key of the deployment hashes to one slot, on one of the three masters.
        slots = {client.keyslot(key) for key in client.scan_iter("shardmon:*")}
        assert len(slots) == 1


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"SHARDMON_REDIS_MODE": "sentinel"}, "SHARDMON_REDIS_SENTINELS"),
        ({"SHARDMON_REDIS_MODE": "sentinel", "SHARDMON_REDIS_SENTINELS": "a:1,b"}, "'b'"),
        ({"SHARDMON_REDIS_MODE": "sentinel", "SHARDMON_REDIS_SENTINELS": "a:0"}, "'a:0'"),
        ({"SHARDMON_REDIS_MODE": "cluster"}, "SHARDMON_REDIS_URL"),
        ({"SHARDMON_REDIS_MODE": "replicated"}, "SHARDMON_REDIS_MODE"),
    ],
)
def test_an_incomplete_topology_fails_at_start_naming_the_setting(
    env: dict[str, str], named: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=named):
        load_settings()


def test_the_sentinel_password_never_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHARDMON_REDIS_MODE", "sentinel")
    monkeypatch.setenv("SHARDMON_REDIS_SENTINELS", "10.0.0.1:26379")
    monkeypatch.setenv("SHARDMON_REDIS_SENTINEL_PASSWORD", "s3ntinel-secret")
    monkeypatch.setenv("SHARDMON_REDIS_URL", "redis://app:m4ster-secret@ignored:6379/0")
    settings = load_settings()
    shown = f"{settings!r} {settings.redis_target()!r} {settings.redis_target().describe()}"
    assert "s3ntinel-secret" not in shown and "m4ster-secret" not in shown
    assert "10.0.0.1:26379" in shown


# In about one run of ten, a connection to a sentinel, opened by the master's rediscovery during
# the failover and released back to its pool, is found by the garbage collector still open:
# its pool was not the one `aclose()` closed (how redis-py 8.1 comes to drop it is not known).
# Its finalizer closes the socket, and warns: that warning alone is let pass here, and the
# garbage is collected before the test ends, so that it cannot be reported in another test.
@pytest.mark.filterwarnings(
    r"ignore:Exception ignored in. <function (AbstractConnection|StreamWriter)\.__del__"
    ":pytest.PytestUnraisableExceptionWarning"
)
async def test_a_sentinel_failover_loses_no_restart_event_and_the_bot_runs_on(
    tmp_path: Path, config: MonitorConfig
) -> None:
    setup = SentinelSetup(tmp_path / "sentinel")
    client = monitor = None
    try:
        setup.start()
        client = create_redis(setup.target, timeout_s=0.5)
        keys = Keys(config.deployment)
        monitor = build_monitor(dataclasses.replace(config, sample_interval_s=0.1), client)
        await monitor.start()
        logged = []
        old_master = setup.master_port()
        killed_at = promoted_at = None
        for step in range(100):  # 0.05 s apart, the master killed after 1 s
            if step == 20:
                setup.master.kill()
                killed_at = time.monotonic()
            logged.append(await monitor.log_restart("manual", {"step": step}))
            if killed_at and not promoted_at and setup.master_port() != old_master:
                promoted_at = time.monotonic()
            await asyncio.sleep(0.05)  # the scenario's pace: restarts logged across the failover
        if promoted_at is None:  # a slow vote: wait for it
            wait_for(lambda: setup.master_port() != old_master, 30, "a new master")
            promoted_at = time.monotonic()
        assert killed_at is not None
        promoted_after = promoted_at - killed_at

        async def caught_up() -> bool:
            return (
                monitor is not None
                and monitor.sampler.redis_available
                and (await client.zcard(keys.restarts) == len(logged))
            )

        await wait_until(caught_up, 20)
        # Sampling goes on, on the new master: a sample newer than any so far is applied (the
        # sequence number, not the list's length, which LTRIM caps at history_size).
        applied_before = await _last_applied(client, keys)

        async def sampling_on_the_new_master() -> bool:
            return await _last_applied(client, keys) > applied_before

        await wait_until(sampling_on_the_new_master)
        members = await client.zrange(keys.restarts, 0, -1)
        ids = {e.id for e in logged}
        found = sum(1 for m in members if any(i in m for i in ids))
        print(
            f"sentinel failover: master {old_master} -> {setup.master_port()}, seen promoted "
            f"within {promoted_after:.1f} s; restart events logged {len(logged)}, found "
            f"{found}, lost {len(logged) - found}, duplicates {len(members) - found}; "
            f"sampling alive: {monitor.running}"
        )
        assert found == len(logged) and len(members) == len(logged)
        assert monitor.running
    finally:
        if monitor is not None:
            await monitor.stop()
        if client is not None:
            await client.aclose()
        setup.stop()
        monitor = client = None  # the closures above hold them too
        gc.collect()


async def _last_applied(client: aioredis.Redis, keys: Keys) -> int:
    """The sequence number of shard 0's last sample written to Redis."""
    return int(await client.hget(keys.seq, "0") or 0)


async def test_a_cluster_that_goes_down_is_an_outage_not_a_crash(
    tmp_path: Path, config: MonitorConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """redis-py raises RedisClusterException, not a RedisError, once no node answers."""
    setup = ClusterSetup(tmp_path / "cluster")
    client = None
    try:
        setup.start()
        client = create_redis(setup.target, timeout_s=0.5)
        monitor = build_monitor(dataclasses.replace(config, leader_lease_s=1), client)
        await monitor.sample_once()
        setup.stop()
        campaigns: list[bool] = []
        campaign_once, tick = monitor.election.campaign_once, monitor.judge.tick

        async def counted_campaign() -> bool:
            campaigns.append(await campaign_once())
            return campaigns[-1]

        ticks: list[bool] = []

        async def counted_tick() -> bool:
            ticks.append(await tick())
            return ticks[-1]

        monkeypatch.setattr(monitor.election, "campaign_once", counted_campaign)
        monkeypatch.setattr(monitor.judge, "tick", counted_tick)
        await monitor.start()  # never raises for an outage

        async def met_the_outage() -> bool:  # the election and judge loops, several times
            return len(campaigns) >= 3 and len(ticks) >= 3

        await wait_until(met_the_outage)
        assert not any(campaigns) and not any(ticks)  # nobody could lead: nothing judged
        event = await monitor.log_restart("crash")
        await monitor.sample_once()
        alive = {"shardmon-election", "shardmon-judge"} <= monitor.loops and monitor.running
        monkeypatch.setenv("SHARDMON_REDIS_MODE", "cluster")
        monkeypatch.setenv("SHARDMON_REDIS_URL", setup.url)
        monkeypatch.setenv("SHARDMON_JOURNAL_PATH", str(tmp_path / "helper.log"))
        journaled, in_redis = persist_restart(event)  # the seed helpers' path
        await monitor.stop()
        assert alive and not monitor.sampler.redis_available and monitor.sampler.pending
        assert event.id in monitor.sampler.journal.lines()[-1]
        assert (journaled, in_redis) == (True, False)
    finally:
        setup.stop()
        if client is not None:
            await client.aclose()
