"""docker-compose.yml parses, and every variable it or the example env file passes is a setting."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from shardmon.connection import RECOMMENDED_SERVER_CONFIG
from shardmon.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent


def _variables() -> dict[str, dict[str, str]]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return {name: service.get("environment", {}) for name, service in compose["services"].items()}


def _example() -> dict[str, str]:
    lines = (ROOT / ".env.example").read_text().splitlines()
    pairs = [line.partition("=") for line in lines if line.strip() and not line.startswith("#")]
    return {key: value for key, _, value in pairs}


def test_compose_runs_redis_with_persistence_two_shard_services_and_the_exporter() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert "--appendonly" in services["redis"]["command"] and "healthcheck" in services["redis"]
    shards = {n: s for n, s in services.items() if s.get("command", [])[-1:] == ["shardmon.bot"]}
    assert len(shards) >= 2
    ids = [s["environment"]["SHARDMON_SHARD_IDS"] for s in shards.values()]
    assert sorted(ids) == ["0,1", "2,3"] and all("healthcheck" in s for s in shards.values())
    assert services["exporter"]["command"][:2] == ["shardmon", "exporter"]


def test_compose_runs_redis_with_the_recommended_server_config() -> None:
    command = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["redis"][
        "command"
    ]
    given = dict(zip(command[1::2], command[2::2], strict=True))
    assert {f"--{name}": value for name, value in RECOMMENDED_SERVER_CONFIG.items()}.items() <= (
        given.items()
    )


def test_every_variable_is_a_real_setting_and_valid() -> None:
    fields = {f"SHARDMON_{name.upper()}" for name in Settings.model_fields}
    passed = set(_example())
    for environment in _variables().values():
        passed |= set(environment)
    assert passed and passed <= fields, passed - fields


@pytest.mark.parametrize("service", ["shard-0-1", "shard-2-3", "exporter"])
def test_each_service_starts_with_valid_settings(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {**_example(), **_variables()[service]}.items():
        monkeypatch.setenv(name, str(value))
    settings = load_settings()
    assert settings.deployment == "mybot"
