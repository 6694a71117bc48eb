"""The README's first command: the demo, on a configured Redis or an embedded one."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import redis

from shardmon.cli import main
from shardmon.connection import RECOMMENDED_SERVER_CONFIG, create_redis
from shardmon.demo.embedded import embedded_redis
from shardmon.keys import Keys
from shardmon.rules import Limits
from shardmon.store import Store

SCENARIO = [
    "📡 shard 0's gateway drops; its process keeps running",
    "🔌 Shard Gateway Disconnected (shard 0",
    "✅ Resolved: shard 0 gateway connected",
    "⏳ shard 2's supervisor: exited with code 1; crash 1 in a row: restarting in 1 s",
    "⏳ shard 2's supervisor: exited with code 1; crash 2 in a row: restarting in 2 s",
    "⏸️  shard 2's supervisor: 3 crashes within 1h 0m: restarts paused",
    "🚨 Restart Storm Detected (shard 2",
    "⏸️ Restarts Held by shardmon run (shard 2",
    "🩹 shard 2 mended: `shardmon run --resume --shards 2`",
    "✅ Resolved: restarts of shard 2",
    "⚠️ High Resource Usage Detected (shard 1",
    "✅ Resolved: MEMORY on shard 1",
    "🔪 SIGKILL to the leader",
    "👑 new leader",
    "duplicate alerts: 0",
    "== shardmon status ==",
    "(synthetic: the demo's, not Discord's)",
    "== shardmon restarts ==",
    "== shardmon stats ==",
    "== shardmon performance ==",
]


def test_demo_against_the_configured_redis_leaves_what_it_prints(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SHARDMON_REDIS_URL", redis_url)
    assert main(["demo", "--shards", "3", "--duration", "30"]) == 0
    out = capsys.readouterr().out
    assert "using Redis at" in out
    for step in SCENARIO:
        assert step in out
    keys = Keys("demo")
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        assert client.hlen(keys.latest) == 3
        restarts = client.zrange(keys.restarts, 0, -1)
        # the crash loop's three (a leading demo node SIGKILLed would be one more crash)
        assert sum('"exit_code": 1,' in r for r in restarts) == 3
        # At least the planned failover; more if the crash-looping shard led for a while.
        assert client.llen(keys.alerts) >= 3 and int(client.get(keys.leader_epoch) or 0) >= 2
    # The views agree with Redis: the stats line counts what ZCARD counts.
    assert f"total {len(restarts)}; last hour {len(restarts)}" in out


def test_demo_falls_back_to_fakeredis_without_redis_server(tmp_path: Path) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if key != "PATH" and not key.startswith("SHARDMON_")
    }
    env["PATH"] = str(Path(sys.executable).parent)  # the venv only: no redis-server there
    demo = subprocess.Popen(
        [sys.executable, "-m", "shardmon.cli", "demo", "--shards", "3", "--duration", "30"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert demo.stdout is not None
        lines = [demo.stdout.readline(), demo.stdout.readline()]
        # the dashboard is served before the fleet starts, and answers while it runs
        found = re.search(r"dashboard: (http://127\.0\.0\.1:\d+/)", lines[1])
        assert found, lines
        time.sleep(3)
        with urllib.request.urlopen(f"{found[1]}api/fleet", timeout=10) as answer:
            fleet = json.load(answer)
        assert fleet["deployment"] == "demo" and len(fleet["states"]) == 3
        with urllib.request.urlopen(f"{found[1]}status", timeout=10) as answer:
            assert answer.status == 200 and b"Find my shard" in answer.read()
        out, err = demo.communicate(timeout=120)
    finally:
        demo.kill()
    assert demo.returncode == 0, err
    assert "using an embedded fakeredis" in lines[0]
    for step in SCENARIO:
        assert step in out


@pytest.mark.parametrize("prefer_server", [True, False], ids=["redis-server", "fakeredis"])
def test_embedded_redis_runs_every_store_script(prefer_server: bool) -> None:
    from helpers import event, sample

    async def exercise(url: str) -> None:
        client = create_redis(url)
        store = Store(client, Keys("embedded"))
        assert (await store.push_samples([(sample(0), 1), (sample(1), 2)])).applied == 2
        assert await store.record_restart(event("crash", shards=(1,)))
        assert (await store.fleet_performance()).samples == 2
        assert (await store.restart_storms(Limits(), shard_count=2)).restarts == {1: 1}
        await store.record_gateway_event(0, "identify")
        assert (await store.leader_view(Limits(), shard_count=2)).fleet.identifies_1h == 1
        assert await store.acquire_leadership("n:1", 5000) == 1
        assert await store.renew_leadership("n:1", 5000)
        assert await store.claim_alerts("memory", [0], "n:1", 60, "1:a") == [1]
        await store.owe_resolutions("memory", [0], {"since": 1.0})
        assert await store.claim_resolution("memory", 0, "n:1", "1:b")
        await store.record_alert({"id": "a", "ts": 1.0}, "memory:alert")
        assert await store.alert_counts() == {("memory", "alert"): 1}
        await store.release_leadership("n:1")
        assert (await store.leader()).node is None
        await client.aclose()

    with embedded_redis(prefer_server) as embedded:
        assert embedded.kind.startswith("redis-server" if prefer_server else "fakeredis")
        asyncio.run(exercise(embedded.url))
        if prefer_server:  # the demo's and the benchmarks' redis-server: our own settings
            with redis.Redis.from_url(embedded.url, decode_responses=True) as running:
                for name, value in RECOMMENDED_SERVER_CONFIG.items():
                    assert running.config_get(name) == {name: value}
    with pytest.raises(redis.ConnectionError), redis.Redis.from_url(embedded.url) as gone:
        gone.ping()


def test_cli_reports_invalid_settings_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SHARDMON_MEMORY_CRITICAL", "150")
    assert main(["demo"]) == 2
    err = capsys.readouterr().err
    assert "SHARDMON_MEMORY_CRITICAL" in err and "Traceback" not in err
