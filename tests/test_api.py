"""The seed's API as a user calls it: from a plain script, and from inside an event loop."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from helpers import wait_until
from redis_server import RedisServer

import shardmon
from shardmon import api
from shardmon.connection import create_redis
from shardmon.keys import Keys
from shardmon.settings import load_settings

SCRIPT = """
import shardmon
shardmon.log_bot_restart('startup')
shardmon.log_deployment(version='2.0.1', changelog='x')
shardmon.log_bot_crash(error='boom', traceback_str='...')
"""


def _run(script: str, redis_url: str, cwd: Path) -> float:
    env = {**os.environ, "SHARDMON_REDIS_URL": redis_url, "SHARDMON_DEPLOYMENT": "acme"}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=30
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    return elapsed


def test_plain_script_leaves_three_events_in_redis_and_journal(
    redis_url: str, tmp_path: Path
) -> None:
    _run(SCRIPT, redis_url, tmp_path)
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        members = client.zrange("shardmon:{acme}:restarts", 0, -1)
    lines = (tmp_path / "logs" / "system_restarts.log").read_text().splitlines()
    assert len(members) == 3 and sorted(members) == sorted(lines)
    events = {e["type"]: e for e in map(json.loads, lines)}
    assert events["deployment"]["version"] == "2.0.1"
    assert events["deployment"]["metadata"] == {"changelog": "x"}
    assert events["crash"]["metadata"] == {"error": "boom", "traceback": "..."}


@pytest.mark.parametrize("outage", ["stopped", "frozen"])
async def test_with_redis_down_the_crash_is_journaled_then_replayed_once(
    own_redis: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outage: str
) -> None:
    if outage == "stopped":
        own_redis.kill()
    else:
        own_redis.freeze()
    # A real interpreter returns (the subprocess has a 30 s limit); how it is bounded is
    # asserted by test_the_log_helpers_try_redis_once_with_a_one_second_bound.
    _run("import shardmon; shardmon.log_bot_crash('boom', 'tb')", own_redis.url, tmp_path)
    journal = (tmp_path / "logs" / "system_restarts.log").read_text().splitlines()
    assert len(journal) == 1

    if outage == "stopped":
        own_redis.start()
    else:
        own_redis.thaw()
    monkeypatch.setenv("SHARDMON_REDIS_URL", own_redis.url)
    monkeypatch.setenv("SHARDMON_DEPLOYMENT", "acme")
    settings = load_settings()
    client = create_redis(own_redis.url)
    for _ in range(2):  # two monitors start: the event still lands once
        monitor = shardmon.build_monitor(settings.monitor_config(), client)
        await monitor.start()
        await monitor.stop()
    assert await client.zrange(Keys("acme").restarts, 0, -1) == journal
    await client.aclose()


async def test_inside_an_event_loop_the_write_happens_off_the_loop(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, client: aioredis.Redis
) -> None:
    monkeypatch.setenv("SHARDMON_REDIS_URL", redis_url)
    monkeypatch.setenv("SHARDMON_DEPLOYMENT", "inloop")
    threads: list[str] = []
    persist = api._persist

    def recording_persist(*args: Any) -> tuple[bool, bool]:
        threads.append(threading.current_thread().name)
        return persist(*args)

    monkeypatch.setattr(api, "_persist", recording_persist)
    event = shardmon.log_bot_restart("scheduled", {"reason": "nightly"})
    assert event is not None and event.metadata == {"reason": "nightly"}

    async def written() -> bool:
        return bool(await client.zcard(Keys("inloop").restarts))

    await wait_until(written)
    assert await client.zrange(Keys("inloop").restarts, 0, -1) == [event.to_json()]
    [thread] = threads  # journaled and written once, in the writer thread, not the loop's
    assert thread.startswith("shardmon-restart-log") and thread != threading.current_thread().name


def test_log_functions_never_raise(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert shardmon.log_bot_restart("reboot") is None  # not a restart type: logged, not raised
    monkeypatch.setenv("SHARDMON_MEMORY_CRITICAL", "150")
    api._settings.cache_clear()
    assert shardmon.log_bot_crash("boom", "tb") is None  # invalid settings: logged, not raised
    monkeypatch.delenv("SHARDMON_MEMORY_CRITICAL")
    api._settings.cache_clear()
    (tmp_path / "logs").write_text("a file where the journal folder should be")
    monkeypatch.setenv("SHARDMON_REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens
    assert shardmon.log_deployment("3.0.0") is not None


def test_get_system_monitor_is_one_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api, "_monitor", None)
    monkeypatch.setenv("SHARDMON_SHARD_COUNT", "2")
    monkeypatch.setenv("SHARDMON_SHARD_IDS", "1")
    monitor = shardmon.get_system_monitor()
    assert monitor is shardmon.get_system_monitor()
    assert monitor.config.shard_ids == (1,)


MAINTENANCE_SCRIPT = """
import shardmon
shardmon.log_bot_restart('startup')
shardmon.log_bot_crash(error='boom', traceback_str='...')
history = shardmon.get_restart_history(limit=100)
print(len(history), history[0]['type'], history[1]['type'])
"""


@pytest.mark.parametrize("redis_up", [True, False], ids=["redis", "journal"])
def test_the_seeds_maintenance_snippet_runs_as_written(
    redis_url: str, tmp_path: Path, redis_up: bool
) -> None:
    """`monitor.get_restart_history(limit=100)` was synchronous in the seed: a plain script
    gets a list from `shardmon.get_restart_history`, from Redis, or this host's journal."""
    url = redis_url if redis_up else "redis://127.0.0.1:1/0"  # nothing listens on port 1
    env = {**os.environ, "SHARDMON_REDIS_URL": url, "SHARDMON_DEPLOYMENT": f"maint{redis_up}"}
    done = subprocess.run([sys.executable, "-c", MAINTENANCE_SCRIPT], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "crash", "startup"]  # newest first
    assert ("restart history from the journal" in done.stderr) is not redis_up


async def test_get_restart_history_refuses_to_block_a_running_loop() -> None:
    with pytest.raises(RuntimeError, match="await get_system_monitor"):
        shardmon.get_restart_history(10)


@pytest.mark.parametrize("outage", ["stopped", "frozen"])
def test_the_log_helpers_try_redis_once_with_a_one_second_bound(
    own_redis: RedisServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, outage: str
) -> None:
    """The seed's promise, "never block longer than a short timeout", asserted on what the
    helper builds, with Redis stopped (connect refused) or frozen (connect accepted, no reply):
    a client whose connect and reads wait 1 s at most, and that does not retry."""
    if outage == "stopped":
        own_redis.kill()
    else:
        own_redis.freeze()
    built: list[redis.Redis] = []
    create = api.create_sync_redis

    def recording_create(*args: object, **kwargs: object) -> redis.Redis:
        client = create(*args, **kwargs)  # type: ignore[arg-type]
        built.append(client)
        return client

    monkeypatch.setattr(api, "create_sync_redis", recording_create)
    monkeypatch.setenv("SHARDMON_REDIS_URL", own_redis.url)
    event = shardmon.log_bot_crash("boom", "tb")  # no running loop: written right here
    assert event is not None  # it returned, and did not raise
    [client] = built  # one client: one try
    options = client.connection_pool.connection_kwargs
    assert (options["socket_timeout"], options["socket_connect_timeout"]) == (1.0, 1.0)
    assert options["retry"].get_retries() == 0
    assert client.get_retry() is options["retry"]  # the retry its commands use
    journal = (tmp_path / "logs" / "system_restarts.log").read_text().splitlines()
    assert [json.loads(line)["id"] for line in journal] == [event.id]
