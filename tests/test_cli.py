"""The shardmon command against a real Redis holding a fleet written by real monitors."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
from pathlib import Path

import pytest
import redis

from shardmon.cli import main, watch
from shardmon.connection import create_redis
from shardmon.keys import Keys
from shardmon.monitor import GatewayStats, build_monitor
from shardmon.settings import load_settings
from shardmon.store import Store


async def _write_fleet(redis_url: str, tmp_path: Path) -> None:
    client = create_redis(redis_url)
    base = load_settings().monitor_config()
    for shard in range(3):
        config = dataclasses.replace(
            base, shard_ids=(shard,), node=f"host:{shard}", journal_path=tmp_path / f"{shard}.log"
        )
        monitor = build_monitor(
            config, client, gateway=lambda s: GatewayStats(50.0, 10 * (s + 1), 100)
        )
        await monitor.sample_once()
        await monitor.log_restart("startup")
        if shard == 2:
            for _ in range(3):
                await monitor.log_restart("crash", {"error": "boom"})
    await client.aclose()


async def _lead(redis_url: str) -> None:
    client = create_redis(redis_url)
    try:
        assert await Store(client, Keys("clifleet")).acquire_leadership("host:0", 60_000)
    finally:
        await client.aclose()


@pytest.fixture
def fleet(redis_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Keys:
    """Three shards in three real monitors; shard 2 crash-loops. The CLI runs its own loop,
    so the tests that call it are plain functions."""
    monkeypatch.setenv("SHARDMON_REDIS_URL", redis_url)
    monkeypatch.setenv("SHARDMON_DEPLOYMENT", "clifleet")
    monkeypatch.setenv("SHARDMON_SHARD_COUNT", "3")
    asyncio.run(_write_fleet(redis_url, tmp_path))
    return Keys("clifleet")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_status_restarts_stats_and_performance_agree_with_redis(
    fleet: Keys, capsys: pytest.CaptureFixture[str], redis_url: str
) -> None:
    code, out, _ = run(capsys, "status")
    assert "🟢 3 up, 🔌 0 disconnected, 🔴 0 offline (3 configured)" in out
    assert code == 1 and "needs attention: no leader" in out  # for cron: exit code 1
    asyncio.run(_lead(redis_url))
    code, out, _ = run(capsys, "status", "--json")
    assert code == 0 and json.loads(out)["healthy"] is True
    code, out, _ = run(capsys, "status")
    assert code == 0 and "🟢 healthy" in out
    assert "servers   60   users 300" in out
    code, out, _ = run(capsys, "restarts", "--type", "crash", "--limit", "2")
    assert code == 0 and out.count("crash") == 2 and "boom" in out
    code, out, _ = run(capsys, "restarts", "--shard", "0", "--json")
    assert [e["type"] for e in json.loads(out)] == ["startup"]
    code, out, _ = run(capsys, "stats")
    assert "total 6; last hour 6" in out and "🚨 restart storm (3+ in 3600 s): shard 2 (4)" in out
    code, out, _ = run(capsys, "performance", "--json")
    assert json.loads(out)["samples"] == 3
    code, out, _ = run(capsys, "keys", "--json")
    counts = {k["key"]: k["count"] for k in json.loads(out)}
    with redis.Redis.from_url(redis_url) as client:
        assert counts["restarts"] == client.zcard(fleet.restarts) == 6
        assert counts["samples:<shard>"] == 3 and counts["latest"] == client.hlen(fleet.latest)


def test_thresholds_are_validated_and_stored(
    fleet: Keys, capsys: pytest.CaptureFixture[str], redis_url: str
) -> None:
    assert run(capsys, "thresholds", "set", "memory", "90")[0] == 0
    assert run(capsys, "thresholds", "set", "cpu", "95", "--shard", "2")[0] == 0
    code, _, err = run(capsys, "thresholds", "set", "memory", "150")
    assert code == 1 and "memory takes percent from 1 to 100, not 150" in err
    code, _, err = run(capsys, "thresholds", "set", "disk", "50")
    assert code == 1 and "unknown rule 'disk'" in err
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        assert client.hgetall(fleet.thresholds) == {"memory": "90.0", "cpu:2": "95.0"}
    assert run(capsys, "thresholds", "unset", "memory")[0] == 0
    code, out, _ = run(capsys, "thresholds", "--json")
    assert json.loads(out)["overrides"] == {"cpu:2": "95.0"}


def test_log_restart_with_redis_down_journals_and_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("SHARDMON_REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens there
    code, out, _ = run(capsys, "log-restart", "deployment", "--version", "2.1.0",
                       "--changelog", "fixes", "--meta", "by=ci", "--meta", "sha=abc")  # fmt: skip
    assert code == 0 and "journaled; Redis unreachable" in out
    [line] = (tmp_path / "logs" / "system_restarts.log").read_text().splitlines()
    event = json.loads(line)
    assert event["version"] == "2.1.0"
    assert event["metadata"] == {"by": "ci", "sha": "abc", "changelog": "fixes"}


def test_log_restart_with_redis_up(fleet: Keys, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "log-restart", "manual")
    assert code == 0 and "journaled and recorded in Redis" in out


def test_a_wrong_redis_url_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SHARDMON_REDIS_URL", "redis://:hunter2@127.0.0.1:1/0")
    code, _, err = run(capsys, "status")
    assert code == 1 and "could not reach Redis at redis://:***@127.0.0.1:1/0" in err
    assert "Traceback" not in err and "hunter2" not in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["restarts", "--limit", "0"], "outside 1..1000"),
        (["restarts", "--type", "reboot"], "invalid choice"),
        (["log-restart", "deployment", "--meta", "oops"], "not key=value"),
        (["watch", "--every", "x"], "duration"),
        (["demo", "--shards", "2"], "outside 3..64"),
        (["demo", "--duration", "5"], "outside 30..3600"),
        (["exporter", "--port", "70000"], "outside 1..65535"),
        (["prune"], "--older-than"),
        (["prune", "--older-than", "nan"], "not a duration"),
        (["prune", "--older-than", "infd"], "not a duration"),
    ],
)
def test_bad_arguments_get_a_clear_error(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


COMMANDS = ["status", "restarts", "stats", "performance", "alerts", "keys", "thresholds", "watch"]


@pytest.mark.parametrize(
    "command",
    [*COMMANDS, "prune", "log-restart", "exporter", "demo", "dashboard", "run", "restart"],
)
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0 and "usage: shardmon" in capsys.readouterr().out


def test_prune_drops_old_history_in_redis_and_archives_the_journal(
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import gzip
    import time

    from helpers import event

    monkeypatch.setenv("SHARDMON_REDIS_URL", redis_url)
    monkeypatch.setenv("SHARDMON_DEPLOYMENT", "pruned")
    now = time.time()
    old, recent = event("crash", shards=(1,), at=now - 100 * 86400), event("startup", at=now - 60)
    journal = tmp_path / "logs" / "system_restarts.log"
    journal.parent.mkdir()
    journal.write_text(f"{old.to_json()}\nnot an event\n{recent.to_json()}\n")
    keys = Keys("pruned")
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        for e in (old, recent):
            client.zadd(keys.restarts, {e.to_json(): e.ts})
            client.zadd(keys.shard_restarts(e.shard), {e.to_json(): e.ts})
        code, out, _ = run(capsys, "prune", "--older-than", "90d")
        assert code == 0 and "1 removed from Redis (1 from shard sets)" in out
        assert client.zrange(keys.restarts, 0, -1) == [recent.to_json()]
        assert client.zcard(keys.shard_restarts(1)) == 0
    assert journal.read_text().splitlines() == ["not an event", recent.to_json()]
    [archive] = journal.parent.glob("system_restarts.log.*.gz")
    with gzip.open(archive, "rt") as archived:
        assert archived.read().splitlines() == [old.to_json()]
    # A journal elsewhere that still has the old event does not bring it back.
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        store = Store(create_redis(redis_url), keys)
        assert asyncio.run(_replay(store, [old.to_json(), recent.to_json()])) == 0
        assert client.zrange(keys.restarts, 0, -1) == [recent.to_json()]


async def _replay(store: Store, lines: list[str]) -> int:
    try:
        return await store.replay_restarts(lines)
    finally:
        await store.client.aclose()


def test_garbage_alert_records_are_skipped_and_watch_json_works(
    fleet: Keys, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with redis.Redis.from_url(redis_url) as client:
        for bad in ('{"ts": "x"}', '{"ts": 1e999, "kind": "alert"}', "[1]", b"\xff"):
            client.lpush(fleet.alerts, bad)
    code, out, err = run(capsys, "alerts")
    assert code == 0 and out.strip() == "no alerts" and "Traceback" not in err


def test_watch_shows_the_status_view_until_stopped(
    fleet: Keys, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async def frames(as_json: bool) -> str:
        """What `watch` printed until it had shown two frames, then was stopped."""
        client = create_redis(redis_url)
        args = argparse.Namespace(json=as_json, every=0.01)
        task = asyncio.create_task(watch(Store(client, fleet), load_settings(), args))
        out = ""
        try:
            async with asyncio.timeout(30):  # a bound for a hang, not a measure
                while out.count("online" if as_json else "clifleet") < 2 and not task.done():
                    await asyncio.sleep(0.01)
                    out += capsys.readouterr().out
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await client.aclose()
        if not task.cancelled():  # it ended by itself: its error
            raise AssertionError(f"watch ended: {task.exception()!r}")
        return out

    assert "deployment clifleet: 🔴 needs attention: no leader" in asyncio.run(frames(False))
    first = asyncio.run(frames(True)).splitlines()[0]
    assert json.loads(first)["online"] == 3


def test_a_wrong_type_key_is_reported_as_such(
    fleet: Keys, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with redis.Redis.from_url(redis_url) as client:
        client.delete(fleet.latest)
        client.set(fleet.latest, "written by hand")
    code, _, err = run(capsys, "status")
    assert code == 1 and "Redis refused a command" in err and "WRONGTYPE" in err
