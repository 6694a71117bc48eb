from __future__ import annotations

from pathlib import Path

import pytest

from shardmon.rules import MemoryRule
from shardmon.settings import Settings, SettingsError, load_settings


def test_defaults_are_the_documented_ones() -> None:
    settings = load_settings()
    assert settings.deployment == "default"
    assert settings.shard_ids == [0]
    assert (settings.sample_interval_s, settings.history_size) == (60, 1000)
    assert (settings.memory_critical, settings.cpu_critical, settings.warn_level) == (85, 85, 70)
    assert settings.restart_alert_threshold == 3
    assert (settings.restart_window_s, settings.alert_dedupe_s, settings.leader_lease_s) == (
        3600,
        300,
        15,
    )
    assert settings.journal_path == Path("logs/system_restarts.log")
    assert settings.alert_channel_names == ["dev-logs", "admin-logs", "system-logs", "bot-logs"]
    assert settings.redis_url is None


def test_reads_environment_and_env_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("SHARDMON_DEPLOYMENT=acme\nSHARDMON_SHARD_COUNT=8\n")
    monkeypatch.setenv("SHARDMON_SHARD_IDS", "2-4,7")
    monkeypatch.setenv("SHARDMON_ALERT_CHANNEL_NAMES", "#ops, alerts")
    settings = load_settings()
    assert settings.deployment == "acme"
    assert settings.shard_ids == [2, 3, 4, 7]
    assert settings.alert_channel_names == ["ops", "alerts"]


@pytest.mark.parametrize("raw", ["[0, 1]", "0,1", "0-1"])
def test_shard_ids_accept_list_csv_and_range(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("SHARDMON_SHARD_COUNT", "2")
    monkeypatch.setenv("SHARDMON_SHARD_IDS", raw)
    assert load_settings().shard_ids == [0, 1]


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("SHARDMON_MEMORY_CRITICAL", "150", "SHARDMON_MEMORY_CRITICAL"),
        ("SHARDMON_CPU_CRITICAL", "-1", "SHARDMON_CPU_CRITICAL"),
        ("SHARDMON_SAMPLE_INTERVAL_S", "0", "SHARDMON_SAMPLE_INTERVAL_S"),
        ("SHARDMON_HISTORY_SIZE", "many", "SHARDMON_HISTORY_SIZE"),
        ("SHARDMON_DEPLOYMENT", "my bot", "SHARDMON_DEPLOYMENT"),
        ("SHARDMON_DEPLOYMENT", "a{b}", "SHARDMON_DEPLOYMENT"),
        ("SHARDMON_DEPLOYMENT", "a:b", "SHARDMON_DEPLOYMENT"),
        ("SHARDMON_SHARD_IDS", "0,x", "SHARDMON_SHARD_IDS"),
        ("SHARDMON_SHARD_IDS", "5", "SHARDMON_SHARD_IDS: \\[5\\] outside"),
        ("SHARDMON_SHARD_IDS", "0,0", "SHARDMON_SHARD_IDS: a shard id is listed twice"),
        ("SHARDMON_WARN_LEVEL", "90", "SHARDMON_WARN_LEVEL: 90.0 must be below"),
        ("SHARDMON_RESTART_ALERT_THRESHOLD", "0", "SHARDMON_RESTART_ALERT_THRESHOLD"),
        ("SHARDMON_REDIS_URL", "http://example", "SHARDMON_REDIS_URL: must start"),
        ("SHARDMON_REDIS_URL", "redis://host:abc/0", "SHARDMON_REDIS_URL: not a valid"),
    ],
)
def test_invalid_values_fail_at_start_naming_the_field(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, named: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=named):
        load_settings()


def test_redis_password_never_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHARDMON_REDIS_URL", "redis://:hunter2@127.0.0.1:1/0")
    settings = load_settings()
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings.model_dump())
    assert settings.redis_url_or_default() == "redis://:hunter2@127.0.0.1:1/0"


def test_invalid_url_error_does_not_echo_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHARDMON_REDIS_URL", "http://:hunter2@host")
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert "hunter2" not in str(error.value)


def test_monitor_config_carries_plain_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHARDMON_SHARD_COUNT", "4")
    monkeypatch.setenv("SHARDMON_SHARD_IDS", "2,3")
    monkeypatch.setenv("SHARDMON_MEMORY_CRITICAL", "90")
    config = Settings().monitor_config()
    assert config.shard_ids == (2, 3)
    assert config.rule_settings["memory_critical"] == 90
    assert config.limits.threshold(MemoryRule()) == 90
    assert config.node.endswith(f":{__import__('os').getpid()}")
