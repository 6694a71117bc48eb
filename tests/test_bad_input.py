"""Bad input everywhere it can come from: keys of the wrong type, garbage values, user text in
embeds and alerts, odd numbers, and deployment names that would break the key layout. Nothing
crashes: every answer is an answer or one clear refusal.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fnmatch
import logging
import math
import time
from pathlib import Path

import discord
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shardmon.cli import main
from shardmon.connection import create_redis
from shardmon.discordpy.embeds import DESCRIPTION_LIMIT, restarts_embed
from shardmon.keys import Keys
from shardmon.models import MalformedData, RestartType, crash_metadata, new_event
from shardmon.monitor import GatewayStats, MonitorConfig, build_monitor
from shardmon.render import defuse_mentions, format_uptime, sparkline
from shardmon.settings import Settings, SettingsError, load_settings
from shardmon.stats import parse_fleet_fields

ZWSP = "\u200b"
DEPLOYMENT = "badinput"
KEYS = Keys(DEPLOYMENT)


# -- keys of the wrong type ----------------------------------------------------------------


async def _fleet(redis_url: str, tmp_path: Path) -> None:
    """Two shards sampled, restarts logged (one a crash loop), one leader tick: every key."""
    client = create_redis(redis_url)
    config = MonitorConfig(deployment=DEPLOYMENT, shard_ids=(0, 1), shard_count=2,
                           journal_path=tmp_path / "j.log",
                           rule_settings={"memory_critical": 1, "cpu_critical": 1})  # fmt: skip
    monitor = build_monitor(config, client, gateway=lambda s: GatewayStats(40.0, 10, 100))
    await monitor.sample_once()
    for kind in ("startup", "crash", "crash", "crash"):
        await monitor.log_restart(kind, {"error": "boom"})
    await monitor.store.record_gateway_event(0, "identify")
    assert await monitor.election.campaign_once() and await monitor.judge.tick()
    await monitor.alerter.wait_for_deliveries()
    await client.aclose()


def _one_of_each() -> list[str]:
    """Every single key of the layout, and one key of each family."""
    families = {
        "samples:<shard>": KEYS.samples(0),
        "shard:<shard>": KEYS.shard_info(0),
        "restarts:<shard>": KEYS.shard_restarts(0),
        "gateway:<shard>:identify": KEYS.gateway_identify(0),
        "gateway:<shard>:resume": KEYS.gateway_resume(0),
        "alert:<rule>[:<shard>]": KEYS.alert("memory", 0),
        "resolved:<rule>:<shard>": KEYS.resolution("memory", 0),
        "rollup:<minute>": "rollup:<this minute>",
        "rollup:h:<hour>": "rollup:h:<this hour>",
    }
    return [families.get(info.name, info.key) for info in KEYS.layout() if "*" not in (
        families.get(info.name, info.key))]  # fmt: skip


def _declared_type(key: str) -> str:
    """The type `Keys.layout()` declares for a key (or the family it belongs to)."""
    for info in KEYS.layout():
        pattern = info.key.replace("[0-9]*", "*")
        if fnmatch.fnmatchcase(key, pattern) and (info.family or key == info.key):
            if info.name == "rollup:<minute>" and ":h:" in key:
                continue
            return info.type
    raise AssertionError(f"{key} is not in the layout")


READS = [["status"], ["restarts"], ["restarts", "--shard", "0"], ["stats"], ["performance"],
         ["performance", "--shard", "0"], ["alerts"], ["keys"], ["thresholds"]]  # fmt: skip


@pytest.mark.parametrize("key", _one_of_each(), ids=lambda k: k.split("}:", 1)[-1])
def test_a_key_of_the_wrong_type_gets_one_clear_refusal_from_every_command(
    key: str,
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    asyncio.run(_fleet(redis_url, tmp_path))
    now = int(time.time())
    if key == "rollup:<this minute>":
        key = KEYS.rollup_minute(now // 60 * 60)
    elif key == "rollup:h:<this hour>":
        key = KEYS.rollup_hour(now // 3600 * 3600)
    declared = _declared_type(key)
    with redis.Redis.from_url(redis_url) as raw:
        raw.delete(key)
        if declared == "string":
            raw.rpush(key, "a list written by hand")
        else:
            raw.set(key, "a string written by hand")
        assert raw.type(key).decode() != declared
    monkeypatch.setenv("SHARDMON_REDIS_URL", redis_url)
    monkeypatch.setenv("SHARDMON_DEPLOYMENT", DEPLOYMENT)
    monkeypatch.setenv("SHARDMON_SHARD_COUNT", "2")
    outcomes = []
    for argv in READS:
        code = main(argv)
        out, err = capsys.readouterr()
        assert "Traceback" not in out + err, argv
        assert code == 0 or (code == 1 and "Redis refused a command" in err and "WRONGTYPE" in err)
        outcomes.append(code)
    print(f"{key}: {outcomes.count(0)} of {len(READS)} commands answered, "
          f"{outcomes.count(1)} refused clearly")  # fmt: skip


async def test_the_leader_and_the_sampler_outlive_a_key_of_the_wrong_type(
    redis_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await _fleet(redis_url, tmp_path)
    client = create_redis(redis_url)
    config = MonitorConfig(deployment=DEPLOYMENT, shard_ids=(0, 1), shard_count=2,
                           journal_path=tmp_path / "j2.log", sample_interval_s=0.05,
                           leader_lease_s=1)  # fmt: skip
    election = {KEYS.leader, KEYS.leader_epoch}  # left alone, so that this monitor can lead
    for key in _one_of_each():
        if key not in election and not key.startswith("rollup:<"):
            await client.delete(key)
            await client.set(key, "written by hand")
    await client.delete(KEYS.leader)
    monitor = build_monitor(config, client)
    with caplog.at_level(logging.INFO):
        await monitor.start()
        await asyncio.sleep(1.0)  # twenty sampling ticks; the election and some judging
        alive = monitor.running and {"shardmon-election", "shardmon-judge"} <= monitor.loops
        led = monitor.election.is_leader
        await monitor.stop()
    await client.aclose()
    assert alive and led
    assert "Redis refused a write" in caplog.text  # the sampler, told clearly
    assert "leader tick skipped, Redis refused: WRONGTYPE" in caplog.text  # the judge, too


# -- deployment names ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["my bot", "a{b}", "a}b", "a:b", "", "x" * 65, "bot\n", "é"])
def test_a_deployment_name_that_would_break_the_keys_is_refused_at_start(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHARDMON_DEPLOYMENT", name)
    with pytest.raises(SettingsError, match="SHARDMON_DEPLOYMENT"):
        load_settings()
    with pytest.raises(ValueError, match="deployment"):  # the library refuses it too
        Keys(name)
    with pytest.raises(ValueError, match="deployment"):
        build_monitor(MonitorConfig(deployment=name), create_redis("redis://127.0.0.1:1/0"))


@given(st.text(max_size=80))
def test_any_deployment_name_is_either_safe_in_a_key_or_refused(name: str) -> None:
    try:
        keys = Keys(name)
    except ValueError:
        return
    assert keys.restarts.count("{") == 1 and keys.restarts.count("}") == 1
    assert keys.restarts.split(":")[1] == f"{{{name}}}" and " " not in keys.prefix


# -- user text in what Discord shows -------------------------------------------------------

_TOKENS = ["@everyone", "@here", "<@&123>", "<@!45>", "@", "é", "🚀", "\n", "`", "*", "a",
           " ", "\u202e", "\x00", "x" * 500]  # fmt: skip
_errors = st.lists(st.sampled_from(_TOKENS), max_size=60).map("".join) | st.text(max_size=200)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    errors=st.lists(_errors, min_size=1, max_size=60),
    limit=st.integers(min_value=1, max_value=50),
    version=st.text(min_size=1, max_size=50),
)
def test_restarts_embed_stays_within_discord_limits_and_never_pings(
    errors: list[str], limit: int, version: str
) -> None:
    events = [
        new_event(RestartType.CRASH, shards=(i % 7, i % 5), node="h:1", system="s",
                  environment="e", version=version, metadata={"error": error})
        for i, error in enumerate(errors)
    ]  # fmt: skip
    embed = restarts_embed(events, limit, show_errors=True)
    text = (embed.description or "") + "".join(f.value or "" for f in embed.fields)
    assert len(embed) <= 6000 and len(embed.description or "") <= DESCRIPTION_LIMIT
    assert all(text[i + 1 : i + 2] == ZWSP for i, c in enumerate(text) if c == "@")
    assert isinstance(embed.to_dict(), dict)


@given(st.text(max_size=2000))
def test_defused_text_cannot_ping_and_reads_the_same(text: str) -> None:
    defused = defuse_mentions(text)
    assert "@everyone" not in defused and "@here" not in defused and "<@" not in defused
    assert defused.replace("@" + ZWSP, "@") == text


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_format_uptime_answers_for_any_number(seconds: float) -> None:
    text = format_uptime(seconds)
    assert 0 < len(text) <= 40


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=200))
def test_a_sparkline_of_any_numbers_fits_its_width(values: list[float]) -> None:
    line = sparkline(values)
    assert len(line) <= 30 and len(line) <= sum(math.isfinite(v) for v in values)


@given(st.dictionaries(st.sampled_from(["ts", "online", "offline", "guilds", "users",
                                        "memory_average", "memory_peak", "memory_low",
                                        "oldest_start", "x"]),
                       st.text(max_size=30) | st.floats().map(repr), max_size=10))  # fmt: skip
def test_the_fleet_hash_parses_or_is_refused_as_malformed(raw: dict[str, str]) -> None:
    try:
        summary = parse_fleet_fields(raw)
    except MalformedData:
        return
    assert summary.online >= 0 and summary.measured_at is not None
    assert math.isfinite(summary.measured_at)


def test_a_one_megabyte_traceback_is_bounded_in_redis_and_in_the_embed() -> None:

    metadata = crash_metadata(
        "E" * 1_000_000 + " @everyone", "x" * 1_000_000 + "\nValueError: @here"
    )
    event = new_event("crash", shards=(0,), node="h:1", system="s", environment="e",
                      version="1", metadata=metadata)  # fmt: skip
    assert len(event.to_json()) < 20_000
    embed = restarts_embed([event], 10, show_errors=True)
    assert len(embed) <= 6000 and isinstance(embed, discord.Embed)


def test_every_invalid_setting_fails_at_start_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    invalid = {
        "REDIS_URL": "http://example", "REDIS_MODE": "replicated", "REDIS_SENTINELS": "a",
        "REDIS_SENTINEL_MASTER": "", "DEPLOYMENT": "a b", "SYSTEM_NAME": "", "ENVIRONMENT": "",
        "VERSION": "", "SHARD_IDS": "x", "SHARD_COUNT": "0", "SAMPLE_INTERVAL_S": "0",
        "HISTORY_SIZE": "5", "SAMPLE_BUFFER_SIZE": "0", "MEMORY_CRITICAL": "101",
        "CPU_CRITICAL": "-1", "WARN_LEVEL": "0", "RESTART_ALERT_THRESHOLD": "0",
        "RESTART_WINDOW_S": "1", "IDENTIFY_ALERT_THRESHOLD": "0", "ALERT_DEDUPE_S": "0",
        "LEADER_LEASE_S": "0.5", "LEADER_ELIGIBLE": "maybe",
        "ALERT_WEBHOOK_URL": "https://example.com/hook", "ALERT_CHANNEL_ID": "0",
        "ALERT_GUILD_IDS": "x", "HEALTH_PORT": "70000", "OPERATOR_COMMANDS_HIDDEN": "maybe",
        "OPERATOR_GUILD_IDS": "1,x", "OPERATOR_CHECK": "role:abc",
        "DISCONNECTED_AFTER_S": "5", "ZOMBIE_AFTER_S": "-1", "LOOP_STALL_THRESHOLD": "0",
        "IDENTIFY_BUDGET_WARN": "101", "OUTAGE_FRACTION": "1.5",
        "CLOCK_SKEW_WARN_S": "0", "DISCORD_API_URL": "discord.com",
        "DASHBOARD_TOKEN": "too short", "RUN_BACKOFF_S": "0", "RUN_BACKOFF_MAX_S": "0.001",
        "RUN_BACKOFF_RESET_S": "0", "RUN_MAX_RESTARTS": "0", "RUN_STOP_TIMEOUT_S": "-1",
        "RUN_RESTART_ON_EXIT_0": "maybe", "RUN_IDENTIFY_FLOOR": "-2", "RUN_SCHEDULE": "25:00",
    }  # fmt: skip
    fields = {name.upper() for name in Settings.model_fields}
    untested = (
        fields
        - set(invalid)
        - {
            "REDIS_SENTINEL_PASSWORD",
            "BOT_TOKEN",
            "JOURNAL_PATH",
            "ALERT_CHANNEL_NAMES",
            "RUN_VERSION_FILE",
        }
    )  # any text is valid there
    assert not untested, f"add an invalid value for {untested}"
    for name, value in invalid.items():
        with monkeypatch.context() as env:
            env.setenv(f"SHARDMON_{name}", value)
            with pytest.raises(SettingsError, match=f"SHARDMON_{name}"):
                load_settings()


def test_a_renamed_setting_fails_at_start_naming_what_replaces_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Who may run the commands must not change without a word: the old switch is refused,
    from the environment or from .env."""
    monkeypatch.setenv("SHARDMON_COMMANDS_REQUIRE_MANAGE_GUILD", "false")
    with pytest.raises(SettingsError, match="REQUIRE_MANAGE_GUILD: renamed, use SHARDMON_OP"):
        load_settings()
    monkeypatch.delenv("SHARDMON_COMMANDS_REQUIRE_MANAGE_GUILD")
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("SHARDMON_COMMANDS_REQUIRE_MANAGE_GUILD=true\n")
    with pytest.raises(SettingsError, match="SHARDMON_OPERATOR_CHECK"):
        load_settings()
    (tmp_path / ".env").write_text("SHARDMON_OPERATOR_CHECK=manage_guild\n")
    assert load_settings().operator_check == "manage_guild"


def test_a_monitor_config_with_a_bad_deployment_fails_before_any_redis_call() -> None:
    config = dataclasses.replace(MonitorConfig(), deployment="a:b")
    with pytest.raises(ValueError, match="'a:b'"):
        build_monitor(config, create_redis("redis://127.0.0.1:1/0"))
