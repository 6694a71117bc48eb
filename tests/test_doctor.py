"""`shardmon doctor` against real redis-servers started with the settings that break a monitor,
an ACL user that may not run CONFIG, and a stand-in of Discord's GET /gateway/bot."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from aiohttp import web
from aiohttp.test_utils import TestServer
from helpers import sample, wait_until
from pydantic import SecretStr
from redis_server import RedisServer

from shardmon.cli import main
from shardmon.connection import RECOMMENDED_SERVER_CONFIG, RedisTarget, create_redis
from shardmon.doctor import (
    BYTES_PER_SAMPLE,
    CLIENT_COMMANDS,
    SCRIPT_COMMANDS,
    Finding,
    check_discord,
    gateway_bot_reader,
)
from shardmon.keys import Keys
from shardmon.monitor import MonitorConfig, build_monitor
from shardmon.store import Store, lua
from shardmon.store._base import SCRIPTS

SHARDS = 100
HISTORY = 1000


#: The command-line arguments of docker-compose's server (`RECOMMENDED_SERVER_CONFIG`).
RECOMMENDED = tuple(arg for name, value in RECOMMENDED_SERVER_CONFIG.items()
                    for arg in (f"--{name}", value))  # fmt: skip


def server_args(*args: str) -> pytest.MarkDecorator:
    """Run the test against a redis-server of its own started with these arguments."""
    return pytest.mark.parametrize("server", [args], indirect=True, ids=[" ".join(args)])


@pytest.fixture
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis", *request.param)
    server.start()
    yield server
    server.kill()


def doctor(
    server: RedisServer | None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    url: str | None = None,
    **env: str,
) -> tuple[int, dict[str, Finding], str]:
    """Run `shardmon doctor --json` and `shardmon doctor`: (exit code, finding by topic, text)."""
    settings = {"REDIS_URL": url or (server.url if server else "redis://127.0.0.1:1/0"),
                "SHARD_COUNT": str(SHARDS), "HISTORY_SIZE": str(HISTORY), **env}  # fmt: skip
    for name, value in settings.items():
        monkeypatch.setenv(f"SHARDMON_{name}", value)
    code = main(["doctor", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["exit_code"] == code
    findings = {f["topic"]: f for f in report["findings"]}
    assert main(["doctor"]) == code
    return code, findings, capsys.readouterr().out


def level(findings: dict[str, Any], topic: str) -> str:
    return str(findings[topic]["level"])


@server_args(*RECOMMENDED, "--appendonly", "yes")
def test_the_recommended_server_is_all_good(
    server: RedisServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, findings, text = doctor(server, monkeypatch, capsys)
    assert code == 0, text
    assert {f["level"] for f in findings.values()} == {"ok"}
    assert set(findings) == {
        "settings", "journal", "redis version", "persistence", "eviction",
        "list-compress-depth", "memory", "clock", "permissions", "discord",
    }  # fmt: skip
    assert text.splitlines()[-1] == "10 ok, 0 warning(s), 0 failure(s)"
    assert "✅ eviction: maxmemory-policy noeviction" in text


@pytest.mark.parametrize(
    ("policy", "evicts"),
    [("allkeys-lru", "any key when it reaches maxmemory"),
     ("volatile-lru", "keys with a TTL when it reaches maxmemory")],
)  # fmt: skip
def test_an_evicting_policy_fails(
    policy: str,
    evicts: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = RedisServer(tmp_path / "redis", "--maxmemory-policy", policy, "--maxmemory", "1gb")
    server.start()
    try:
        code, findings, text = doctor(server, monkeypatch, capsys)
    finally:
        server.kill()
    assert code == 2
    assert level(findings, "eviction") == "fail"
    assert f"maxmemory-policy {policy} (1,024.0 MiB): Redis evicts {evicts}" in text
    assert "fix: CONFIG SET maxmemory-policy noeviction" in text


@server_args("--maxmemory-policy", "allkeys-lfu")
def test_an_evicting_policy_fails_before_any_maxmemory_too(
    server: RedisServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, findings, _ = doctor(server, monkeypatch, capsys)
    assert code == 2 and level(findings, "eviction") == "fail"
    assert "once a maxmemory is set" in findings["eviction"]["text"]


@server_args("--list-compress-depth", "0")
def test_depth_0_warns_with_what_depth_1_would_save_for_this_fleet(
    server: RedisServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, findings, text = doctor(server, monkeypatch, capsys)
    assert code == 1
    depth = findings["list-compress-depth"]
    assert depth["level"] == "warn"
    raw, packed = (SHARDS * HISTORY * BYTES_PER_SAMPLE[d] / 2**20 for d in (0, 1))
    assert f"would take {packed:,.1f} MiB instead of {raw:,.1f} MiB" in depth["text"]
    assert "fix: CONFIG SET list-compress-depth 1" in text


@pytest.mark.parametrize(
    ("args", "said"),
    [(("--appendonly", "no", "--save", ""), "none (appendonly no, no snapshots)"),
     (("--appendonly", "no", "--save", "3600 1"), "snapshots only (save 3600 1)")],
)  # fmt: skip
def test_no_append_only_file_warns(
    args: tuple[str, ...],
    said: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = RedisServer(tmp_path / "redis", *RECOMMENDED, *args)
    server.start()
    try:
        code, findings, _ = doctor(server, monkeypatch, capsys)
    finally:
        server.kill()
    assert code == 1 and level(findings, "persistence") == "warn"
    assert findings["persistence"]["text"].startswith(said)
    assert {t for t, f in findings.items() if f["level"] != "ok"} == {"persistence"}


def _fill(server: RedisServer, shards: int, per_shard: int) -> None:
    """Samples of `shards` shards written as monitors write them."""

    async def write() -> None:
        client = create_redis(RedisTarget(url=server.url))
        store = Store(client, Keys("default"), history_size=HISTORY)
        seq = 0
        for _ in range(per_shard):
            batch = []
            for shard in range(shards):
                seq += 1
                batch.append((sample(shard, cpu=float(seq % 97)), seq))
            await store.push_samples(batch)
        await client.aclose()

    asyncio.run(write())


@server_args(*RECOMMENDED, "--appendonly", "yes", "--maxmemory", "8mb")
def test_a_history_that_will_not_fit_fails_at_the_measured_bytes_per_sample(
    server: RedisServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _fill(server, shards=5, per_shard=200)
    code, findings, text = doctor(server, monkeypatch, capsys)
    memory = findings["memory"]
    assert code == 2 and memory["level"] == "fail", text
    measured = re.search(r"x ([\d,]+) B \(measured in 5 sample list\(s\)\)", memory["text"])
    assert measured is not None, memory["text"]
    # Each sample's JSON is ~330 bytes; depth 1 packs it to well under that.
    assert 40 < int(measured[1].replace(",", "")) < BYTES_PER_SAMPLE[0]
    assert "the history will not fit" in memory["text"]
    # A fleet a tenth the size fits, but without the 2x margin: a warning.
    code, findings, _ = doctor(server, monkeypatch, capsys, SHARD_COUNT="30")
    assert findings["memory"]["level"] in {"warn", "ok"}
    fits = re.search(r"= ([\d.,]+) MiB, ([\d.,]+) MiB of it stored now: ([\d.,]+) MiB to come, "
                     r"([\d.,]+) MiB free", findings["memory"]["text"])  # fmt: skip
    assert fits is not None
    needed, stored, growth, free = (float(x.replace(",", "")) for x in fits.groups())
    assert stored > 0 and abs(needed - stored - growth) < 0.2
    assert findings["memory"]["level"] == ("warn" if growth * 2 > free else "ok")


def acl_user(server: RedisServer, *commands: str) -> str:
    """A user of the server allowed `commands` on shardmon's keys: its URL."""
    with redis.Redis(port=server.port) as admin:
        admin.acl_setuser("monitor", enabled=True, passwords=["+pw"], keys=["shardmon:*"],
                          commands=list(commands))  # fmt: skip
    return f"redis://monitor:pw@127.0.0.1:{server.port}/0"


@server_args(*RECOMMENDED, "--appendonly", "yes")
def test_a_user_without_config_or_info_is_told_what_could_not_be_checked(
    server: RedisServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = acl_user(server, "+@all", "-@admin", "-@dangerous")
    code, findings, text = doctor(server, monkeypatch, capsys, url=url)
    assert code == 1, text
    for topic in ("persistence", "eviction", "list-compress-depth"):
        assert findings[topic]["level"] == "warn"
        assert findings[topic]["text"].startswith("not checked: this user may not read it")
        assert "config|get" in findings[topic]["text"]
    assert "free memory not checked" in findings["memory"]["text"]
    # HELLO names the version where INFO is denied; every command shardmon sends is allowed.
    assert level(findings, "redis version") == "ok" and level(findings, "permissions") == "ok"
    assert "pw@" not in text  # the password is never printed


@server_args(*RECOMMENDED, "--appendonly", "yes")
def test_a_user_denied_a_command_shardmon_sends_fails_naming_it(
    server: RedisServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = acl_user(server, "+@all", "-lpos", "-multi", "-time")
    code, findings, _ = doctor(server, monkeypatch, capsys, url=url)
    assert code == 2
    permissions = findings["permissions"]
    assert permissions["level"] == "fail"
    scope = "shardmon:{default}:*"
    assert permissions["text"] == f"this user may not run LPOS, TIME, WATCH, MULTI, EXEC on {scope}"
    assert permissions["fix"] == f"ACL SETUSER <user> +lpos +time +watch +multi +exec ~{scope}"
    # Without TIME, the monitors fall back to their hosts' clocks: a failure of its own.
    assert level(findings, "clock") == "fail"
    assert findings["clock"]["fix"] == "ACL SETUSER <user> +time"
    with redis.Redis(port=server.port) as admin:
        assert admin.keys("shardmon:*") == []  # the scratch key is gone


def test_unreachable_redis_invalid_settings_and_an_unwritable_journal_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("not a folder")
    code, findings, _ = doctor(None, monkeypatch, capsys,
                               JOURNAL_PATH=str(tmp_path / "file" / "restarts.log"))  # fmt: skip
    assert code == 2
    assert level(findings, "redis") == "fail" and level(findings, "journal") == "fail"
    assert "is not writable" in findings["journal"]["text"]
    monkeypatch.setenv("SHARDMON_SHARD_COUNT", "0")
    assert main(["doctor", "--json"]) == 2
    report = json.loads(capsys.readouterr().out)
    assert [f["topic"] for f in report["findings"]] == ["settings"]
    assert "SHARDMON_SHARD_COUNT" in report["findings"][0]["text"]


def test_every_command_shardmon_sends_is_probed() -> None:
    """The probe's lists cover the scripts' commands and the store's own calls."""
    probed = set(CLIENT_COMMANDS) | set(SCRIPT_COMMANDS)
    call = re.compile(r"redis\.p?call\(\s*['\"]([A-Za-z]+)['\"]")
    scripted = {name.upper() for script in SCRIPTS for name in call.findall(lua(script))}
    assert scripted <= probed, scripted - probed
    store = Path(__file__).parent.parent / "shardmon" / "store"
    renamed = {"DELETE": "DEL"}  # redis-py's name -> the command's
    called = {
        renamed.get(name.upper(), name.upper().removesuffix("_ITER"))
        for module in store.glob("*.py")
        for name in re.findall(r"(?:client|pipe)\.([a-z_]+)\(", module.read_text())
    } - {"PIPELINE", "EXECUTE", "REGISTER_SCRIPT", "WATCH", "MULTI"}  # a transaction: probed
    assert called <= probed, called - probed


# -- Discord --------------------------------------------------------------------------------


def _gateway_bot(shards: int, remaining: int, max_concurrency: int = 1) -> dict[str, Any]:
    limit = {"total": 1000, "remaining": remaining, "reset_after": 3_600_000,
             "max_concurrency": max_concurrency}  # fmt: skip
    return {"url": "wss://gateway.discord.gg", "shards": shards, "session_start_limit": limit}


async def _discord(reply: tuple[int, Any], shard_count: int) -> tuple[list[Finding], list[str]]:
    """check_discord against a local stand-in of Discord's API: (findings, tokens it got)."""
    seen: list[str] = []

    async def gateway_bot(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.json_response(reply[1], status=reply[0])

    app = web.Application()
    app.router.add_get("/api/v10/gateway/bot", gateway_bot)
    async with TestServer(app) as stand_in:
        read = gateway_bot_reader(str(stand_in.make_url("/api/v10")), SecretStr("tok.en"))
        return await check_discord(read, shard_count, now=0.0), seen


@pytest.mark.parametrize(
    ("reply", "shard_count", "expected"),
    [((200, _gateway_bot(16, 900, 16)), 16, {"session starts": "ok", "shard count": "ok"}),
     ((200, _gateway_bot(16, 10)), 16, {"session starts": "fail", "shard count": "ok"}),
     ((200, _gateway_bot(16, 20)), 16, {"session starts": "warn", "shard count": "ok"}),
     ((200, _gateway_bot(24, 900)), 16, {"session starts": "ok", "shard count": "warn"}),
     ((200, _gateway_bot(16, 900, 16)), 20, {"session starts": "ok", "shard count": "warn"}),
     ((401, {"message": "401: Unauthorized"}), 16, {"discord": "fail"}),
     ((429, {"retry_after": 5}), 16, {"discord": "warn"})],
)  # fmt: skip
async def test_the_session_start_limit_and_the_shard_count_are_judged(
    reply: tuple[int, Any], shard_count: int, expected: dict[str, str]
) -> None:
    findings, seen = await _discord(reply, shard_count)
    assert {f.topic: f.level.name.lower() for f in findings} == expected
    assert seen == ["Bot tok.en"]
    assert all("tok.en" not in f.line() for f in findings)


async def test_discord_unreachable_is_a_warning() -> None:
    read = gateway_bot_reader("http://127.0.0.1:1/api/v10", SecretStr("t"))
    findings = await check_discord(read, 1, now=0.0)
    assert [(f.topic, f.level.name) for f in findings] == [("discord", "WARN")]
    assert findings[0].text.startswith("not checked: Discord's API did not answer")


# -- a monitor's start ----------------------------------------------------------------------


@server_args("--maxmemory-policy", "allkeys-lru")
async def test_a_monitor_logs_the_failures_once_at_start(
    server: RedisServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = create_redis(RedisTarget(url=server.url))
    config = MonitorConfig(deployment="startcheck", journal_path=tmp_path / "j.log",
                           sample_interval_s=0.05, leader_eligible=False)  # fmt: skip
    monitor = build_monitor(config, client)
    with caplog.at_level(logging.ERROR, logger="shardmon.doctor"):
        await monitor.start()

        async def logged() -> bool:
            return any("shardmon doctor: eviction" in r.getMessage() for r in caplog.records)

        await wait_until(logged)
        await asyncio.sleep(0.3)  # several sampling ticks: still said once
        await monitor.stop()
    said = [r for r in caplog.records if r.name == "shardmon.doctor"]
    assert len(said) == 1 and "allkeys-lru" in said[0].getMessage()
    await client.aclose()


@server_args(*RECOMMENDED, "--appendonly", "no")
def test_a_user_without_config_but_with_info_is_checked_from_info(
    server: RedisServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = acl_user(server, "+@all", "-config")
    code, findings, text = doctor(server, monkeypatch, capsys, url=url)
    assert code == 1, text
    assert level(findings, "eviction") == "ok"  # maxmemory_policy, from INFO memory
    assert findings["persistence"]["text"].startswith("appendonly no (snapshots not checked")
    assert findings["list-compress-depth"]["text"].startswith("not checked")
    assert "MiB free under the host's memory" in findings["memory"]["text"]
