"""The fleet's clock is Redis's: three real node processes on one Redis, two of them on hosts
whose clocks are wrong (libfaketime), and what the fleet makes of them."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import redis
from helpers import event, wait_for
from redis_server import RedisServer

from shardmon.cli import main
from shardmon.clock import FleetClock
from shardmon.connection import RedisTarget, create_redis
from shardmon.keys import Keys
from shardmon.models import FLEET_TS_MIN_SKEW_S, parse_event
from shardmon.monitor import MonitorConfig, build_monitor
from shardmon.supervisor import die_with_parent

INTERVAL_S = 0.5
#: The hosts: node name -> (its shard, its clock's offset for libfaketime).
HOSTS = {"right": (0, None), "behind": (1, "-10m"), "ahead": (2, "+1h")}
SKEW_S = {"right": 0, "behind": -600, "ahead": 3600}


def test_the_clock_follows_redis_from_the_best_round_trip() -> None:
    clock = FleetClock()
    assert not clock.measured and clock.due and clock.skew_s is None
    replies = iter([(1000, 0), (1000, 500_000), (1001, 0)])

    def redis_time() -> tuple[int, int]:
        reply = next(replies)
        if reply != (1000, 500_000):
            time.sleep(0.2)  # a slow round trip: its reading is the least exact
        return reply

    reading = clock.measure_sync(redis_time)
    assert reading.redis_s == 1000.5 and reading.round_trip_s < 0.2
    assert not clock.due
    # A host whose wall clock is years ahead of Redis's: the skew says so, now() is Redis's.
    assert clock.skew_s is not None and clock.skew_s > 1e9
    assert 1000 <= clock.now() < 1002


def test_a_restart_event_keeps_its_host_time_and_adds_the_fleet_time_where_they_differ() -> None:
    made = event("crash", at=2_000_000_000.0)
    assert made.with_fleet_time(2_000_000_000.0 + FLEET_TS_MIN_SKEW_S / 2).fleet_ts is None
    moved = made.with_fleet_time(2_000_000_600.0)
    assert moved.timestamp == made.timestamp and moved.ts == 2_000_000_600.0
    assert "fleet_ts" not in made.to_json() and parse_event(moved.to_json()) == moved


@pytest.fixture
def faketime() -> str:
    binary = shutil.which("faketime")
    assert binary is not None, "faketime is missing: `make test` installs Debian's package"
    return binary


@pytest.fixture
def fleet(
    faketime: str, redis_url: str, deployment: str, tmp_path: Path
) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """The three node processes; only the right host's may lead, so that the leader judges
    the skewed hosts' heartbeats rather than its own."""
    processes = {}
    for name, (shard, offset) in HOSTS.items():
        env = os.environ | {
            "SHARDMON_REDIS_URL": redis_url,
            "SHARDMON_DEPLOYMENT": deployment,
            "SHARDMON_SHARD_IDS": str(shard),
            "SHARDMON_SHARD_COUNT": "3",
            "SHARDMON_SAMPLE_INTERVAL_S": str(INTERVAL_S),
            "SHARDMON_JOURNAL_PATH": str(tmp_path / f"{name}.log"),
            "SHARDMON_LEADER_ELIGIBLE": str(name == "right").lower(),
        }
        command = [sys.executable, "-m", "shardmon.node"]
        if offset is not None:
            command = [faketime, "-f", offset, *command]
        with (tmp_path / f"{name}.out").open("wb") as out:
            # faketime runs the node as its child: a process group holds both, to signal both.
            processes[name] = subprocess.Popen(
                command, env=env, stdout=out, stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent, start_new_session=True,
            )  # fmt: skip
    yield processes
    for process in processes.values():
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes.values():
        process.wait(10)


def _offline_alerts(client: redis.Redis, keys: Keys, shard: int) -> list[dict[str, object]]:
    records = [json.loads(raw) for raw in client.lrange(keys.alerts, 0, -1)]
    return [r for r in records if r["rule"] == "offline" and shard in r["shards"]]


def _redis_now(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return float(seconds) + micros / 1e6


def test_hosts_with_wrong_clocks_are_judged_on_redis_time(
    fleet: dict[str, subprocess.Popen[bytes]],
    redis_url: str,
    keys: Keys,
    tmp_path: Path,
    faketime: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    wait_for(lambda: client.zcard(keys.heartbeats) == 3, 30, "every node's first heartbeat")
    wait_for(lambda: client.get(keys.leader) is not None, 30, "a leader")

    # Every heartbeat is Redis's now, whatever the writing host's clock says.
    now = _redis_now(client)
    for shard in (0, 1, 2):
        seen = client.zscore(keys.heartbeats, str(shard))
        assert seen is not None and abs(seen - now) < 5, (shard, seen, now)

    # The host 10 minutes behind is alive: 20 intervals, and never alerted offline.
    time.sleep(20 * INTERVAL_S)
    assert fleet["behind"].poll() is None
    assert _offline_alerts(client, keys, 1) == []

    # Both skews are logged by their hosts, with the host and the offset...
    out = {name: (tmp_path / f"{name}.out").read_text() for name in HOSTS}
    assert "600.0 s behind Redis's" in out["behind"], out["behind"]
    assert "3600.0 s ahead of Redis's" in out["ahead"], out["ahead"]
    assert "Redis's (more than" not in out["right"]
    # ... and shown per node by `shardmon status`.
    monkeypatch.setenv("SHARDMON_REDIS_URL", redis_url)
    monkeypatch.setenv("SHARDMON_DEPLOYMENT", keys.deployment)
    monkeypatch.setenv("SHARDMON_SHARD_COUNT", "3")
    monkeypatch.setenv("SHARDMON_SAMPLE_INTERVAL_S", str(INTERVAL_S))
    capsys.readouterr()
    assert main(["status", "--json"]) == 0
    skews = json.loads(capsys.readouterr().out)["clock_skew_s"]
    nodes = {
        name: client.hget(keys.shard_info(shard), "node") for name, (shard, _) in HOSTS.items()
    }
    for name, node in nodes.items():
        assert abs(skews[node] - SKEW_S[name]) < 5, (name, skews)
    main(["status"])
    shown = capsys.readouterr().out
    assert "2 of 3 node(s) off by over 2 s" in shown
    assert f"{nodes['ahead']} +3600." in shown and f"{nodes['behind']} -600." in shown

    # Restarts logged on the skewed hosts (deploy scripts: the seed's helpers, through the
    # command line) are scored in Redis's time: a storm window of a minute counts them all.
    for name in ("behind", "ahead"):
        shard, offset = HOSTS[name]
        env = os.environ | {
            "SHARDMON_REDIS_URL": redis_url,
            "SHARDMON_DEPLOYMENT": keys.deployment,
            "SHARDMON_SHARD_IDS": str(shard),
            "SHARDMON_JOURNAL_PATH": str(tmp_path / f"{name}.log"),
        }
        for _ in range(3):
            subprocess.run(
                [faketime, "-f", str(offset), sys.executable, "-m", "shardmon.cli",
                 "log-restart", "crash"],
                env=env, check=True, capture_output=True,
            )  # fmt: skip
    now = _redis_now(client)
    for name in ("behind", "ahead"):
        shard = HOSTS[name][0]
        scored = client.zrange(keys.shard_restarts(shard), 0, -1, withscores=True)
        assert len(scored) == 4  # the node's startup and three crashes
        for member, score in scored:
            written = parse_event(member)
            assert abs(score - now) < 60, (name, score - now)
            # The host's own time stays in `timestamp`, for people; the fleet's is added.
            assert written.fleet_ts == pytest.approx(score)
            host_ts = datetime.fromisoformat(written.timestamp).timestamp()
            assert abs(host_ts - score - SKEW_S[name]) < 60, (name, host_ts - score)
    window = {str(s): int(n) for s, n in _storm_counts(client, keys, now - 60).items()}
    assert window == {"0": 1, "1": 4, "2": 4}

    # Every sample went to the rollup minute of Redis's clock (none 10 minutes back, none an
    # hour ahead), and the leader rolled up Redis's hours.
    rollups = list(client.scan_iter(keys.rollup_minute_pattern))
    minutes = [int(key.rsplit(":", 1)[1]) for key in rollups if ":h:" not in key]
    hours = [int(key.rsplit(":", 1)[1]) for key in rollups if ":h:" in key]
    assert minutes and all(now - 180 <= minute <= now + 60 for minute in minutes), minutes
    assert hours and all(now - 7200 <= hour <= now for hour in hours), hours

    # The host an hour ahead dies: it is alerted offline within a few intervals, not in an hour.
    os.killpg(fleet["ahead"].pid, signal.SIGKILL)
    fleet["ahead"].wait(10)
    took = wait_for(lambda: _offline_alerts(client, keys, 2) != [], 30, "shard 2 alerted offline")
    print(f"offline alert {took:.1f} s after the death of a host 1 h ahead")
    assert _offline_alerts(client, keys, 1) == []  # the host behind, alive all along
    client.close()


def _storm_counts(client: redis.Redis, keys: Keys, since: float) -> dict[str, int]:
    """Shard -> restarts since `since`, as the storm rule counts them (`recent_restarts`)."""
    counts: dict[str, int] = {}
    for member in client.zrangebyscore(keys.recent_restarts, since, "+inf"):
        shard = str(member).partition(":")[0]
        counts[shard] = counts.get(shard, 0) + 1
    return counts


async def test_a_user_denied_time_samples_on_its_host_clock_and_says_so_once(
    redis_server: RedisServer, config: MonitorConfig, caplog: pytest.LogCaptureFixture
) -> None:
    with redis.Redis(port=redis_server.port) as admin:
        admin.acl_setuser("notime", enabled=True, passwords=["+pw"], keys=["shardmon:*"],
                          commands=["+@all", "-time"])  # fmt: skip
    client = create_redis(RedisTarget(url=f"redis://notime:pw@127.0.0.1:{redis_server.port}/0"))
    monitor = build_monitor(dataclasses.replace(config, leader_eligible=False), client)
    try:
        with caplog.at_level(logging.ERROR):
            for _ in range(5):
                await monitor.sample_once()
        said = [r.getMessage() for r in caplog.records if "refused TIME" in r.getMessage()]
        assert len(said) == 1 and "ACL +time" in said[0]
        assert not monitor.store.clock.measured
        assert monitor.sampler.redis_available and not monitor.sampler.pending
        latest = await monitor.store.latest_samples()
        assert set(latest) == set(config.shard_ids)
        assert all(s.clock_skew_s is None for s in latest.values())
    finally:
        await client.aclose()
        with redis.Redis(port=redis_server.port) as admin:
            admin.acl_deluser("notime")


def test_log_restart_by_a_user_denied_time_still_records_the_event(
    redis_server: RedisServer,
    keys: Keys,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with redis.Redis(port=redis_server.port) as admin:
        admin.acl_setuser("notime", enabled=True, passwords=["+pw"], keys=["shardmon:*"],
                          commands=["+@all", "-time"])  # fmt: skip
    try:
        url = f"redis://notime:pw@127.0.0.1:{redis_server.port}/0"
        monkeypatch.setenv("SHARDMON_REDIS_URL", url)
        monkeypatch.setenv("SHARDMON_DEPLOYMENT", keys.deployment)
        assert main(["log-restart", "deployment", "--version", "2.0"]) == 0
        assert "journaled and recorded in Redis" in capsys.readouterr().out
        with redis.Redis(port=redis_server.port, decode_responses=True) as admin:
            [member] = admin.zrange(keys.restarts, 0, -1)
        assert parse_event(member).fleet_ts is None  # this host's time: nothing to measure with
    finally:
        with redis.Redis(port=redis_server.port) as admin:
            admin.acl_deluser("notime")
