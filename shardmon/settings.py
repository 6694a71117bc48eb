"""shardmon's only configuration source: `SHARDMON_*` environment variables and a `.env` file.

The library core never reads settings; the edges (the seed API, the CLI, the cog, the reference
bot) build a `Settings` once and hand plain values to the core through `monitor_config()`. The
rules' settings (`SHARDMON_MEMORY_CRITICAL`, `SHARDMON_RESTART_WINDOW_S`, ...) are not written
here: each rule's `Limit` declares its name, default and bounds, and becomes a field.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from dotenv import dotenv_values
from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from redis.connection import parse_url

from shardmon.clock import CLOCK_SKEW_WARN_S
from shardmon.config import MonitorConfig
from shardmon.connection import RedisTarget
from shardmon.keys import DEPLOYMENT_PATTERN, DEPLOYMENT_RULE
from shardmon.rules import DEFAULT_RULES, Limit, Limits, RestartStormRule, rule_limits
from shardmon.sinks import LogSink, Sink
from shardmon.states import parse_shard_range
from shardmon.supervisor import RunPolicy

__all__ = ["DEFAULT_REDIS_URL", "DISCORD_API_URL", "Settings", "SettingsError", "load_settings"]

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
#: Discord's REST API, where `shardmon doctor` reads the token's session start limit.
DISCORD_API_URL = "https://discord.com/api/v10"
T = TypeVar("T")
Percent = Annotated[float, Field(gt=0, le=100)]


class SettingsError(ValueError):
    """Invalid settings, with every offending `SHARDMON_*` variable named in the message."""


class _Settings(BaseSettings):
    """Every shardmon setting; each is read from `SHARDMON_<NAME>` or from `.env`. The rules'
    own settings are added to these fields from `DEFAULT_RULES` (see `Settings` below)."""

    model_config = SettingsConfigDict(
        env_prefix="SHARDMON_", env_file=".env", extra="ignore", validate_default=True
    )

    redis_url: SecretStr | None = Field(
        default=None, description="redis:// or rediss:// URL; may hold a password, so it is secret"
    )
    redis_mode: Literal["standalone", "sentinel", "cluster"] = Field(
        default="standalone", description="one server, a master found through Sentinel, a Cluster"
    )
    redis_sentinels: Annotated[list[tuple[str, int]], NoDecode] = Field(
        default_factory=list, description="sentinel mode: host:port,host:port"
    )
    redis_sentinel_master: str = Field(
        default="mymaster", min_length=1, max_length=100, description="sentinel mode: master name"
    )
    redis_sentinel_password: SecretStr | None = Field(
        default=None, description="sentinel mode: the sentinels' own password, if they need one"
    )
    deployment: str = Field(default="default", description="bot name in every Redis key")
    system_name: str = Field(default="Discord Bot", min_length=1, max_length=100)
    environment: str = Field(default="Production", min_length=1, max_length=50)
    version: str = Field(default="0.0.0", min_length=1, max_length=50)
    shard_ids: Annotated[list[int], NoDecode] = Field(default_factory=lambda: [0])
    shard_count: int = Field(default=1, ge=1, le=100_000)
    sample_interval_s: float = Field(default=60, ge=0.1, le=3600)
    history_size: int = Field(default=1000, ge=10, le=100_000)
    sample_buffer_size: int = Field(default=1000, ge=1, le=1_000_000)
    warn_level: Percent = Field(default=70, description="below this percent a figure is 🟢")
    alert_dedupe_s: int = Field(default=300, ge=1, le=86400)
    leader_lease_s: float = Field(default=15, ge=1, le=600)
    leader_eligible: bool = Field(default=True, description="False: this process never leads")
    alert_webhook_url: SecretStr | None = Field(
        default=None, description="Discord webhook that receives alerts; secret"
    )
    journal_path: Path = Path("logs/system_restarts.log")
    alert_channel_id: int | None = Field(default=None, ge=1, description="channel for alerts")
    alert_guild_ids: Annotated[list[int], NoDecode] = Field(
        default_factory=list,
        description="guilds whose channels may receive alerts; [] = the operator guilds",
    )
    operator_guild_ids: Annotated[list[int], NoDecode] = Field(
        default_factory=list,
        description="your servers: infrastructure commands are registered there only; [] = global",
    )
    operator_check: str = Field(
        default="owner",
        description="who may run them: owner (or team), manage_guild, or role:<role id>",
    )
    health_port: int | None = Field(
        default=None, ge=1, le=65535, description="serve /healthz of this process on this port"
    )
    bot_token: SecretStr | None = Field(default=None, description="the reference bot's token")
    run_backoff_s: float = Field(
        default=10, ge=0.01, le=3600,
        description="shardmon run: the wait before restarting a child that crashed; doubled "
        "for each crash in a row",
    )  # fmt: skip
    run_backoff_max_s: float = Field(default=300, ge=0.01, le=86400, description="its longest")
    run_backoff_reset_s: float = Field(
        default=600, ge=1, le=7 * 86400,
        description="a child that ran this long before crashing starts the back-off over",
    )  # fmt: skip
    run_max_restarts: int | None = Field(
        default=None, ge=1, le=10_000,
        description="crashes in the storm window that pause restarts (the storm threshold)",
    )  # fmt: skip
    run_stop_timeout_s: float = Field(
        default=30, ge=0.1, le=3600, description="SIGTERM to the child, then this, then SIGKILL"
    )
    run_restart_on_exit_0: bool = Field(
        default=False, description="restart a child that exited with code 0 (else stop too)"
    )
    run_identify_floor: int | None = Field(
        default=None, ge=0, le=1_000_000,
        description="session starts that must be left to (re)start: twice the shards by default",
    )  # fmt: skip
    run_version_file: Path | None = Field(
        default=None, description="a file holding the child's version: a change is a deployment"
    )
    run_schedule: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="times of day, UTC HH:MM, to restart the child"
    )
    dashboard_token: SecretStr | None = Field(
        default=None, min_length=16,
        description="what shardmon dashboard asks of its operators; secret, 16 characters or more",
    )  # fmt: skip
    operator_commands_hidden: bool = Field(
        default=True, description="hide infrastructure commands from members who lack the rights"
    )
    alert_channel_names: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["dev-logs", "admin-logs", "system-logs", "bot-logs"]
    )
    clock_skew_warn_s: float = Field(
        default=CLOCK_SKEW_WARN_S, gt=0, le=86400,
        description="a host clock off Redis's by more than this many seconds is logged and shown",
    )  # fmt: skip
    discord_api_url: str = Field(
        default=DISCORD_API_URL, pattern=r"^https?://\S+$",
        description="Discord's REST API (or a proxy of it), for the session start limit",
    )  # fmt: skip

    @field_validator("deployment")
    @classmethod
    def _deployment_is_key_safe(cls, value: str) -> str:
        if not DEPLOYMENT_PATTERN.fullmatch(value):
            raise ValueError(DEPLOYMENT_RULE)
        return value

    @field_validator("alert_webhook_url")
    @classmethod
    def _discord_webhook(cls, value: SecretStr | None) -> SecretStr | None:
        pattern = r"https://(?:\w+\.)?discord(?:app)?\.com/api/webhooks/\d{17,20}/[\w.-]{60,}"
        if value is not None and not re.fullmatch(pattern, value.get_secret_value()):
            raise ValueError(
                "not a Discord webhook URL (https://discord.com/api/webhooks/ID/TOKEN)"
            )
        return value

    @field_validator("operator_check")
    @classmethod
    def _known_check(cls, value: str) -> str:
        if value in ("owner", "manage_guild") or re.fullmatch(r"role:\d{15,20}", value):
            return value
        raise ValueError(f"{value!r} is not owner, manage_guild or role:<a role id>")

    @field_validator("shard_ids", mode="before")
    @classmethod
    def _parse_shard_ids(cls, value: object) -> object:
        """Accept `0,1,2`, `0-3` and `[0, 1]` as well as a list."""
        return _comma_list(value, parse_shard_range, brackets=True)

    @field_validator("redis_sentinels", mode="before")
    @classmethod
    def _parse_sentinels(cls, value: object) -> object:
        """Accept `host:port,host:port` (a port 1-65535 each; an IPv6 host in brackets)."""
        return _comma_list(value, _sentinel, skip_empty=False)

    @field_validator("alert_guild_ids", "operator_guild_ids", mode="before")
    @classmethod
    def _parse_guild_ids(cls, value: object) -> object:
        return _comma_list(value, lambda part: [part], brackets=True)

    @field_validator("run_schedule", mode="before")
    @classmethod
    def _parse_schedule(cls, value: object) -> object:
        """`04:00,16:30`: times of day in UTC."""
        return _comma_list(value, _time_of_day)

    @field_validator("alert_channel_names", mode="before")
    @classmethod
    def _parse_channel_names(cls, value: object) -> object:
        return _comma_list(value, lambda part: [part.lstrip("#")])

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if not self.shard_ids:
            raise ValueError("shard_ids: give at least one shard id")
        if len(set(self.shard_ids)) != len(self.shard_ids):
            raise ValueError("shard_ids: a shard id is listed twice")
        bad = [i for i in self.shard_ids if not 0 <= i < self.shard_count]
        if bad:
            raise ValueError(f"shard_ids: {bad} outside 0..{self.shard_count - 1} (shard_count)")
        low = min(self.rule_setting(limit) for limit in _percent_limits())
        if self.warn_level >= low:
            raise ValueError(f"warn_level: {self.warn_level} must be below the critical {low}")
        if self.run_backoff_max_s < self.run_backoff_s:
            raise ValueError(f"run_backoff_max_s: {self.run_backoff_max_s:g} is below "
                             f"run_backoff_s ({self.run_backoff_s:g})")  # fmt: skip
        if self.redis_mode == "sentinel" and not self.redis_sentinels:
            raise ValueError("redis_sentinels: sentinel mode needs host:port of the sentinels")
        if self.redis_mode == "cluster" and self.redis_url is None:
            raise ValueError("redis_url: cluster mode needs the URL of one of its nodes")
        if self.redis_url is not None:
            url = self.redis_url.get_secret_value()
            if not url.startswith(("redis://", "rediss://", "unix://")):
                raise ValueError("redis_url: must start with redis://, rediss:// or unix://")
            try:
                parse_url(url)  # type: ignore[no-untyped-call]
            except ValueError:  # its message may quote the URL, password included
                raise ValueError("redis_url: not a valid Redis URL (check port and db)") from None
        return self

    def alert_guilds(self) -> list[int]:
        """The servers whose channels may be detected as the alert channel: those of
        `SHARDMON_ALERT_GUILD_IDS` if any (the older name), else the operator guilds."""
        return self.alert_guild_ids or self.operator_guild_ids

    def redis_url_or_default(self) -> str:
        """The configured Redis URL, else a local Redis on 6379."""
        return self.redis_url.get_secret_value() if self.redis_url else DEFAULT_REDIS_URL

    def redis_target(self) -> RedisTarget:
        """Where Redis is, for `create_redis` (a local Redis on 6379 by default)."""
        password = self.redis_sentinel_password
        if self.redis_mode == "sentinel":
            url = self.redis_url.get_secret_value() if self.redis_url else None
        else:
            url = self.redis_url_or_default()
        return RedisTarget(
            url=url,
            mode=self.redis_mode,
            sentinels=tuple(self.redis_sentinels),
            sentinel_master=self.redis_sentinel_master,
            sentinel_password=password.get_secret_value() if password else None,
        )

    def alert_sinks(self) -> list[Sink]:
        """The log, plus the webhook when one is set."""
        sinks: list[Sink] = [LogSink()]
        if self.alert_webhook_url is not None:
            from shardmon.discordpy.sinks import WebhookSink  # only Discord users pay the import

            sinks.append(WebhookSink(self.alert_webhook_url.get_secret_value()))
        return sinks

    def rule_setting(self, limit: Limit) -> float:
        """The value of one of the rules' settings (a field made from its `Limit`): an int
        for a count."""
        value = getattr(self, str(limit.setting))
        return int(value) if limit.whole else float(value)

    @property
    def limits(self) -> Limits:
        """What the rules judge by, before the runtime overrides."""
        return Limits(self._rule_settings(), self.sample_interval_s)

    def _rule_settings(self) -> dict[str, float]:
        return {
            str(limit.setting): self.rule_setting(limit) for limit in rule_limits(DEFAULT_RULES)
        }

    def run_policy(self) -> RunPolicy:
        """How `shardmon run` restarts its child, for this process's shards."""
        return RunPolicy(
            backoff_s=self.run_backoff_s,
            backoff_max_s=self.run_backoff_max_s,
            backoff_reset_s=self.run_backoff_reset_s,
            max_restarts=self.run_max_restarts or int(self.limits.threshold(RestartStormRule())),
            window_s=self.limits.restart_window_s,
            stop_timeout_s=self.run_stop_timeout_s,
            restart_on_exit_0=self.run_restart_on_exit_0,
            identify_floor=(2 * len(self.shard_ids) if self.run_identify_floor is None
                            else self.run_identify_floor),
            version_file=self.run_version_file,
            schedule=tuple(self.run_schedule),
        )  # fmt: skip

    def monitor_config(self) -> MonitorConfig:
        """The plain values the library core takes."""
        return MonitorConfig(
            deployment=self.deployment,
            shard_ids=tuple(self.shard_ids),
            shard_count=self.shard_count,
            system_name=self.system_name,
            environment=self.environment,
            version=self.version,
            sample_interval_s=self.sample_interval_s,
            history_size=self.history_size,
            sample_buffer_size=self.sample_buffer_size,
            rule_settings=self._rule_settings(),
            journal_path=self.journal_path,
            leader_eligible=self.leader_eligible,
            leader_lease_s=self.leader_lease_s,
            alert_dedupe_s=self.alert_dedupe_s,
            health_port=self.health_port,
            clock_skew_warn_s=self.clock_skew_warn_s,
        )


def _comma_list(
    value: object,
    parse: Callable[[str], list[T]],
    *,
    brackets: bool = False,
    skip_empty: bool = True,
) -> object:
    """A string `a, b, c` (in `[...]` with `brackets`) as its parts, each through `parse`
    (an empty part too, unless `skip_empty`); anything else (a list from code) as it is, for
    pydantic to check."""
    if not isinstance(value, str):
        return value
    text = value.strip().strip("[]") if brackets else value
    parts = [part.strip() for part in text.split(",")]
    return [item for part in parts if part or not skip_empty for item in parse(part)]


def _time_of_day(part: str) -> list[str]:
    hours, colon, minutes = part.partition(":")
    digits = colon and hours.isdigit() and minutes.isdigit() and len(minutes) == 2
    if digits and int(hours) < 24 and int(minutes) < 60:
        return [f"{int(hours):02d}:{minutes}"]
    raise ValueError(f"{part!r} is not a time of day like 04:30 (UTC)")


def _sentinel(part: str) -> list[tuple[str, int]]:
    host, colon, port = part.rpartition(":")
    if not (colon and host and port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"{part!r} is not host:port")
    return [(host.strip("[]"), int(port))]


def _percent_limits() -> list[Limit]:
    return [limit for limit in rule_limits(DEFAULT_RULES) if limit.unit == "percent"]


def _rule_field(limit: Limit) -> tuple[Any, Any]:
    """The pydantic field of one of the rules' settings: its type, default and bounds."""
    kind = int if limit.whole else float
    return kind, Field(
        default=kind(limit.default), ge=limit.low, le=limit.high, description=limit.unit
    )


if TYPE_CHECKING:
    Settings = _Settings
else:
    Settings = create_model(
        "Settings",
        __base__=_Settings,
        __module__=__name__,
        __doc__=_Settings.__doc__,
        **{str(limit.setting): _rule_field(limit) for limit in rule_limits(DEFAULT_RULES)},
    )


#: Settings that were renamed, with what replaces them: set, they stop the start, so that
#: nobody's commands change who may use them without a word.
RENAMED = {
    "SHARDMON_COMMANDS_REQUIRE_MANAGE_GUILD": (
        "SHARDMON_OPERATOR_CHECK (manage_guild is the old rule; owner the default) and "
        "SHARDMON_OPERATOR_COMMANDS_HIDDEN"
    ),
}


def load_settings(**overrides: object) -> Settings:
    """Read settings, turning a validation failure into one readable `SettingsError`."""
    env_file = Path(str(Settings.model_config["env_file"]))
    given = {name.upper() for name in os.environ}  # as pydantic-settings: any case
    if env_file.is_file():
        given |= {name.upper() for name in dotenv_values(env_file)}
    renamed = [f"{old}: renamed, use {new}" for old, new in RENAMED.items() if old in given]
    if renamed:
        raise _invalid(renamed)
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            named, colon, rest = message.partition(": ")
            if not field and colon and named in Settings.model_fields:  # a cross-field check
                field, message = named, rest
            name = f"SHARDMON_{field.upper()}" if field else "settings"
            lines.append(f"{name}: {message}")
        raise _invalid(lines) from None


def _invalid(lines: list[str]) -> SettingsError:
    return SettingsError("invalid shardmon settings:\n  " + "\n  ".join(lines))
