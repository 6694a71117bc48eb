"""`shardmon dashboard` over HTTP, against a real Redis holding real monitors' data: what each
audience is answered, the token, the binding, garbage in Redis and a Redis that is gone."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestServer
from redis_server import RedisServer
from yarl import URL

from shardmon import cli
from shardmon.connection import create_redis
from shardmon.keys import Keys
from shardmon.models import GatewayState
from shardmon.monitor import GatewayStats, MonitorConfig, SystemMonitor, build_monitor
from shardmon.rules import Limits
from shardmon.web import BoardSettings, check_binding, make_app
from shardmon.web import app as web_app
from shardmon.web.app import BindingRefused
from shardmon.web.payloads import PUBLIC_FIELDS

SHARDS = 4
TOKEN = "correct horse battery staple"
LIMITS = Limits({"memory_critical": 85.0})
#: A server that Discord routes to shard 2 of 4: ((id >> 22) % 4 == 2).
SERVER_ON_SHARD_2 = str((2 + 4 * 1_000_000_000) << 22)
#: What no public answer may hold: node names, the version, crash errors, figures' fields.
PRIVATE = ("dashhost", "7.7.7", "MemoryError", "Traceback", "cpu", "memory", "rss", "version")


def board(shard_count: int = SHARDS) -> BoardSettings:
    return BoardSettings(
        deployment="dash", system_name="Test Bot", shard_count=shard_count, limits=LIMITS,
        warn_level=70.0, clock_skew_warn_s=2.0, refresh_s=1.0,
    )  # fmt: skip


async def _fleet(config: MonitorConfig, client: aioredis.Redis, tmp_path: Path) -> SystemMonitor:
    """Shards 0-2 reporting from two nodes (shard 1 above 85% memory, shard 2's gateway down
    for 5 minutes), a crash of shard 0 with its traceback, and a leader that judged them."""
    gateways = {
        0: GatewayState(connected=True, since_s=60, last_connect=1.0, dispatch_age_s=1.0),
        1: GatewayState(connected=True, since_s=60, last_connect=1.0, dispatch_age_s=1.0),
        2: GatewayState(connected=False, since_s=300, last_connect=1.0, dispatch_age_s=300),
    }
    monitors = {}
    for shard in range(3):
        monitor = build_monitor(
            dataclasses.replace(config, shard_ids=(shard,), node=f"dashhost-{shard // 2}:1{shard}",
                                journal_path=tmp_path / f"{shard}.log", version="7.7.7",
                                sample_interval_s=60),
            client, gateway=lambda s: GatewayStats(40.0 + s, 100, 5000, gateways[s]),
        )  # fmt: skip
        monitors[shard] = monitor
        await monitor.sample_once()
    await monitors[0].log_restart(
        "crash", {"error": "MemoryError: at /srv/dashhost/bot.py", "traceback": "Traceback: x"}
    )
    keys = Keys(config.deployment)
    sample = json.loads(await client.hget(keys.latest, "1"))
    await client.hset(keys.latest, "1", json.dumps(sample | {"memory": 97.0}))
    leader = monitors[0]
    assert leader.election and leader.judge
    assert await leader.election.campaign_once()
    leader.judge.limits = LIMITS
    assert await leader.judge.tick()
    await leader.alerter.wait_for_deliveries()
    return leader


Serve = Callable[..., Awaitable[str]]


@pytest.fixture
async def serve(client: aioredis.Redis, keys: Keys) -> AsyncIterator[Serve]:
    servers: list[TestServer] = []

    async def serve(
        token: str | None = None, status_page_only: bool = False, on: aioredis.Redis | None = None
    ) -> str:
        app = make_app(on or client, keys, board(), token=token, status_page_only=status_page_only)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return str(server.make_url("")).rstrip("/")

    yield serve
    for server in servers:
        await server.close()


async def _get(url: str, **headers: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        body = await response.text()
        kind = response.headers.get("Content-Type", "")
        return response.status, json.loads(body) if kind.startswith("application/json") else body


@pytest.fixture
def fleet_config(config: MonitorConfig) -> MonitorConfig:
    return dataclasses.replace(config, shard_count=SHARDS)


async def test_the_operator_sees_the_grid_the_leader_judged_and_every_figure(
    serve: Serve, client: aioredis.Redis, fleet_config: MonitorConfig, tmp_path: Path
) -> None:
    leader = await _fleet(fleet_config, client, tmp_path)
    base = await serve()
    status, fleet = await _get(f"{base}/api/fleet")
    assert status == 200
    # shard 1 above 85% memory, shard 2 disconnected for 300 s (past 120 s), shard 3 never seen
    assert fleet["states"] == "UWX."
    assert fleet["judged_at"] is not None  # the leader's grid, not one judged by the page
    assert fleet["nodes"] == [  # by first shard; the page groups shard 3, which no node ran
        {"node": "dashhost-0:10", "shards": "0"}, {"node": "dashhost-0:11", "shards": "1"},
        {"node": "dashhost-1:12", "shards": "2"},
    ]  # fmt: skip
    assert fleet["summary"]["up"] == 2 and fleet["summary"]["disconnected"] == 1
    assert fleet["leader"] == {"node": leader.config.node, "epoch": 1, "lease_ms": fleet[
        "leader"]["lease_ms"]} and fleet["leader"]["lease_ms"] > 0  # fmt: skip
    rules = {(a["rule"], a["kind"]) for a in fleet["alerts"]}
    assert ("memory", "alert") in rules and ("disconnected", "alert") in rules
    assert [i["title"] for i in fleet["incidents"]] == ["Gateway disconnected"]
    assert fleet["incidents"][0]["started"] < fleet["alerts"][0]["ts"] - 250  # when it began
    crash = next(r for r in fleet["restarts"] if r["type"] == "crash")
    assert crash["error"] == "MemoryError: at /srv/dashhost/bot.py"
    assert "traceback" not in crash  # no token here: nobody holds it
    assert not fleet["token_holder"]

    status, shard = await _get(f"{base}/api/shard/1")
    assert status == 200 and shard["memory"] == 97.0 and shard["node"] == "dashhost-0:11"
    assert shard["code"] == "U" and shard["gateway"] == "connected"
    status, missing = await _get(f"{base}/api/shard/9")
    assert status == 404 and missing["error"] == "no shard 9: the fleet has 4"

    status, history = await _get(f"{base}/api/history?span=hour")
    columns = history["columns"]
    assert status == 200 and len(columns["t"]) == 60 and history["bucket_s"] == 60
    assert columns["samples"][-1] == 3 and columns["memory_avg"][-1] is not None
    assert columns["latency_ms_peak"][-1] == 42.0 and columns["latency_ms_low"][-1] == 40.0
    assert columns["restarts"][-1] == 1 and sum(columns["restarts"]) == 1  # the crash, just now
    status, day = await _get(f"{base}/api/history?span=day")
    assert status == 200 and len(day["columns"]["t"]) == 24
    status, month = await _get(f"{base}/api/history?span=month")
    assert status == 200 and len(month["columns"]["t"]) == 720
    status, wrong = await _get(f"{base}/api/history?span=year")
    assert status == 400 and wrong["error"] == "span is one of hour, day, month"


def _fields(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {f for v in value.values() for f in _fields(v)}
    if isinstance(value, list):
        return {f for v in value for f in _fields(v)}
    return set()


async def test_the_status_page_says_what_anyone_may_know_and_nothing_more(
    serve: Serve, client: aioredis.Redis, fleet_config: MonitorConfig, tmp_path: Path
) -> None:
    await _fleet(fleet_config, client, tmp_path)
    base = await serve(status_page_only=True)
    status, public = await _get(f"{base}/api/status")
    assert status == 200
    assert public["states"] == "UWX." and public["up"] == {
        "up": 2, "degraded": 0, "down": 1, "unknown": 1}  # fmt: skip
    assert public["latency_ms"] == 41  # of the shards reporting (40, 41, 42 ms), as /shard says
    assert [i["title"] for i in public["incidents"]] == ["Gateway disconnected"]
    status, found = await _get(f"{base}/api/find?server={SERVER_ON_SHARD_2}")
    assert status == 200
    assert found == {"server": SERVER_ON_SHARD_2, "shard": 2, "shard_count": 4, "state": "down",
                     "latency_ms": None, "since": None}  # fmt: skip
    status, refused = await _get(f"{base}/api/find?server=12ab")
    assert status == 400 and "not a server id" in refused["error"]
    for answer in (public, found, refused):
        assert _fields(answer) <= PUBLIC_FIELDS, _fields(answer) - PUBLIC_FIELDS
        words = json.dumps(answer)
        assert not [private for private in PRIVATE if private in words]
    # the operators' routes do not exist on a status page server
    for path in ("/api/fleet", "/api/shard/1", "/api/history", "/login"):
        assert (await _get(f"{base}{path}"))[0] == 404
    status, page = await _get(f"{base}/")  # redirected to /status
    assert status == 200 and "Find my shard" in page


async def test_a_token_guards_the_operators_and_never_the_public(
    serve: Serve,
    client: aioredis.Redis,
    fleet_config: MonitorConfig,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(web_app, "WRONG_TOKEN_DELAY_S", 0.01)
    await _fleet(fleet_config, client, tmp_path)
    base = await serve(token=TOKEN)
    assert (await _get(f"{base}/api/fleet"))[0] == 401
    wrong = f"{base}/api/fleet"
    assert (await _get(wrong, Authorization="Bearer wrong")) == (
        401, {"error": "a dashboard token is needed (SHARDMON_DASHBOARD_TOKEN)"})  # fmt: skip
    status, page = await _get(f"{base}/")
    assert status == 401 and 'name="token"' in page and TOKEN not in page
    status, fleet = await _get(f"{base}/api/fleet", Authorization=f"Bearer {TOKEN}")
    assert status == 200 and fleet["token_holder"]
    crash = next(r for r in fleet["restarts"] if r["type"] == "crash")
    assert crash["traceback"] == "Traceback: x"  # to the token holder only
    assert (await _get(f"{base}/api/status"))[0] == 200  # the public needs no token
    assert (await _get(f"{base}/status"))[0] == 200

    # a person at the login form (a browser keeps cookies of an IP address; aiohttp, if asked)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with browser.post(f"{base}/login", data={"token": "guess"}) as response:
            assert response.status == 401 and "not the dashboard's token" in await response.text()
        assert not browser.cookie_jar.filter_cookies(URL(base))
        async with browser.post(
            f"{base}/login", data={"token": TOKEN}, allow_redirects=False
        ) as response:
            said = response.headers["Set-Cookie"]
            assert response.status == 303 and response.headers["Location"] == "/"
            assert "HttpOnly" in said and "SameSite=Strict" in said and TOKEN not in said
        async with browser.get(f"{base}/") as response:
            assert response.status == 200 and "shardmon dashboard" in await response.text()
        async with browser.get(f"{base}/api/fleet") as response:
            assert response.status == 200
            for header, value in web_app.SECURITY_HEADERS.items():
                assert response.headers[header] == value


def test_beyond_loopback_the_dashboard_needs_a_token_or_a_word(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for host in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"):
        check_binding(host, token=False, public=False, status_page_only=False)
    for host in ("0.0.0.0", "::", "10.0.0.5", "bot.example.com"):
        with pytest.raises(BindingRefused, match="SHARDMON_DASHBOARD_TOKEN"):
            check_binding(host, token=False, public=False, status_page_only=False)
        check_binding(host, token=True, public=False, status_page_only=False)
        check_binding(host, token=False, public=True, status_page_only=False)
        check_binding(host, token=False, public=False, status_page_only=True)
    # the command refuses at start, with the setting named and exit 2 (nothing served)
    assert cli.main(["dashboard", "--host", "0.0.0.0", "--port", "1"]) == 2
    said = capsys.readouterr().err
    assert "SHARDMON_DASHBOARD_TOKEN is not set" in said and "--status-page" in said
    monkeypatch.setenv("SHARDMON_DASHBOARD_TOKEN", "short")
    assert cli.main(["dashboard"]) == 2
    assert "SHARDMON_DASHBOARD_TOKEN" in capsys.readouterr().err


async def test_garbage_in_redis_is_skipped_counted_and_never_a_traceback(
    serve: Serve, client: aioredis.Redis, keys: Keys, fleet_config: MonitorConfig, tmp_path: Path
) -> None:
    await _fleet(fleet_config, client, tmp_path)
    await client.set(keys.shard_states, "UU?U")  # a hand wrote a character that is no state
    await client.hset(keys.shard_nodes, "evil", "0-999999999")
    await client.lpush(keys.alerts, "not json", json.dumps({"kind": "alert"}))
    base = await serve()
    status, fleet = await _get(f"{base}/api/fleet")
    assert status == 200
    assert fleet["judged_at"] is None and fleet["states"] == "UWX."  # judged by the read
    assert fleet["skipped"] == {keys.shard_states: 1, keys.alerts: 2}
    await client.set(keys.shard_states, "UWX.")  # a good grid, with a bad node beside it
    status, fleet = await _get(f"{base}/api/fleet")
    assert fleet["judged_at"] is not None and fleet["skipped"][keys.shard_nodes] == 1
    assert "evil" not in {n["node"] for n in fleet["nodes"]}

    await client.delete(keys.fleet)
    await client.set(keys.latest, "a string where a hash belongs")  # WRONGTYPE for HVALS
    status, said = await _get(f"{base}/api/fleet")
    assert status == 503 and said["error"].startswith("Redis refused a read: WRONGTYPE")
    status, public = await _get(f"{base}/api/status")
    assert status == 503 and public == {"error": "The status is unavailable right now."}
    assert "Traceback" not in json.dumps([said, public])


async def test_a_redis_that_is_gone_gives_pages_that_say_so(
    own_redis: RedisServer, serve: Serve
) -> None:
    gone = create_redis(own_redis.url, timeout_s=0.3)
    own_redis.kill()
    base = await serve(on=gone)
    status, said = await _get(f"{base}/api/fleet")
    assert status == 503 and re.match(r"Redis is unreachable \(.+\): retrying", said["error"])
    assert (await _get(f"{base}/api/status")) == (
        503, {"error": "The status is unavailable right now."})  # fmt: skip
    status, page = await _get(f"{base}/")  # the page itself loads, and says it from its JSON
    assert status == 200 and 'id="error"' in page
    await gone.aclose()


async def test_a_bug_shows_its_traceback_to_the_token_holder_alone(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug in a payload")

    monkeypatch.setattr(web_app, "fleet_payload", broken)
    for token in (None, TOKEN):
        base = await serve(token=token)
        status, said = await _get(f"{base}/api/fleet", Authorization=f"Bearer {TOKEN}")
        assert status == 500 and said["error"] == "internal error (logged by the dashboard)"
        assert ("traceback" in said) == (token is not None)
        if token:
            assert "RuntimeError: a bug in a payload" in said["traceback"]
