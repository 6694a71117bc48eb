"""The data shardmon writes to Redis and to the journal, and their strict parsing.

Whatever is read back goes through `parse_sample` / `parse_event`: a value someone wrote by hand
raises `MalformedData`, which readers skip and count instead of crashing.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, Self, cast

import msgspec
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = [
    "CRASH_ERROR_LIMIT",
    "CRASH_TRACEBACK_LIMIT",
    "GatewayState",
    "MalformedData",
    "ProcessMetrics",
    "RestartEvent",
    "RestartType",
    "RunRequest",
    "RunState",
    "Sample",
    "SessionStartLimit",
    "crash_metadata",
    "new_event",
    "parse_event",
    "parse_sample",
]

#: A crash event keeps this much of the error text: enough to recognise it in /restarts.
CRASH_ERROR_LIMIT = 2_000
#: ... and the last this-many characters of its traceback, where the failing frame is.
CRASH_TRACEBACK_LIMIT = 8_000


class MalformedData(ValueError):
    """A value in Redis or in the journal that is not what shardmon writes. `salvaged` is what
    could still be read of it (a sample whose `gateway` part alone is bad), or None."""

    def __init__(self, message: str, salvaged: object = None) -> None:
        super().__init__(message)
        self.salvaged = salvaged


class RestartType(StrEnum):
    STARTUP = "startup"
    MANUAL = "manual"
    CRASH = "crash"
    DEPLOYMENT = "deployment"
    SCHEDULED = "scheduled"


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)


# Samples are msgspec Structs, not pydantic models: the leader reads every shard's sample each
# tick, and decoding one into a Struct, constraints checked, costs an eighth of a pydantic model
# (2 µs against 15 µs here: 40 ms against 300 ms at 20,000 shards). A Struct checks its
# constraints when decoded or converted, not when constructed: what shardmon writes is made
# with `checked()`.
Percent = Annotated[float, msgspec.Meta(ge=0, le=100)]
Amount = Annotated[float, msgspec.Meta(ge=0, le=1e15)]  # a finite figure: no inf, no nan
Count = Annotated[int, msgspec.Meta(ge=0)]
Skew = Annotated[float, msgspec.Meta(ge=-1e9, le=1e9)]  # seconds either way, finite

#: A restart event carries its fleet time (`fleet_ts`) only when it differs from its host's own
#: timestamp by this much: below it, the host's time is the fleet's to the second.
FLEET_TS_MIN_SKEW_S = 1.0


class _Record(msgspec.Struct, frozen=True, kw_only=True):
    """A record shardmon writes as JSON (unknown fields are ignored when read)."""

    @classmethod
    def checked(cls, **fields: Any) -> Self:
        """A record made from `fields`, its constraints checked (msgspec.ValidationError)."""
        return msgspec.convert(fields, cls)

    def to_dict(self) -> dict[str, Any]:
        return cast("dict[str, Any]", msgspec.to_builtins(self))

    def to_json(self) -> str:
        return msgspec.json.encode(self).decode()


class ProcessMetrics(_Record, frozen=True, kw_only=True):
    """What one process measures of itself and its machine (or container) at `ts`."""

    ts: Amount
    cpu: Percent
    memory: Percent
    memory_used_mb: Amount
    memory_total_mb: Amount
    disk: Percent
    cores: Annotated[float, msgspec.Meta(gt=0, le=1e6)]
    rss_mb: Amount


class GatewayState(_Record, frozen=True, kw_only=True, omit_defaults=True):
    """A shard's gateway connection as its process sees it, from discord.py's own events.

    Durations (`since_s`, `dispatch_age_s`) are measured on the process's monotonic clock, so
    that judging them does not depend on any host's wall clock; the `last_*` times are epoch
    seconds for people (fleet time where the cog tracks them, see `FleetClock`). Counts of
    the last hour are a sliding window. A field at its default (a time never seen, a count
    of 0) is left out of the JSON: the leader reads every shard's each tick, so bytes count.
    """

    connected: bool
    since_s: Amount  # seconds since the shard last connected or disconnected
    last_connect: Amount | None = None
    last_disconnect: Amount | None = None
    last_ready: Amount | None = None
    last_resume: Amount | None = None
    disconnects_1h: Count = 0
    disconnects_total: Count = 0  # since the process started: a counter
    dispatch_age_s: Amount | None = None  # None: not measurable here
    stalls_1h: Count = 0  # heartbeat-blocked and can't-keep-up warnings
    stalls_total: Count = 0


class Sample(ProcessMetrics, frozen=True, kw_only=True):
    """One shard's sample: its process's metrics plus its own gateway figures.

    `gateway` is an addition to DESIGN.md's fields: None in samples of older monitors and of
    processes that know no gateway (the node sidecar), which are judged by their process alone.
    """

    shard: Count
    latency_ms: Amount | None = None
    guilds: Count = 0
    users: Count = 0
    node: str = ""
    started_at: Amount | None = None  # when its process started: uptime without another read
    gateway: GatewayState | None = None
    clock_skew_s: Skew | None = None  # its host's wall clock minus Redis's; None: not measured


class SessionStartLimit(_Strict):
    """The bot's session start limit (Discord's IDENTIFY budget, from GET /gateway/bot) as the
    leader last read it, kept in the `session_start_limit` hash (readable with redis-cli)."""

    total: int = Field(ge=1)
    remaining: int = Field(ge=0)
    reset_after_ms: int = Field(ge=0)
    max_concurrency: int = Field(ge=1)  # IDENTIFYs allowed per 5 seconds
    read_at: float = Field(ge=0, allow_inf_nan=False)
    synthetic: bool = False  # made up (the demo): every view says so

    @property
    def resets_at(self) -> float:
        return self.read_at + self.reset_after_ms / 1000

    def full_restart_s(self, shards: int) -> float:
        """How long IDENTIFYing `shards` shards takes at `max_concurrency` per 5 seconds."""
        return math.ceil(shards / self.max_concurrency) * 5.0

    @classmethod
    def from_discord(cls, payload: object, read_at: float) -> SessionStartLimit:
        """Discord's `session_start_limit` object; MalformedData for anything else."""
        if not isinstance(payload, dict):
            raise MalformedData(f"not a session start limit: {type(payload).__name__}")
        try:
            return cls(
                total=payload["total"],
                remaining=payload["remaining"],
                reset_after_ms=payload["reset_after"],
                max_concurrency=payload["max_concurrency"],
                read_at=read_at,
            )
        except (KeyError, ValidationError) as exc:
            raise MalformedData(f"not a session start limit: {exc!s:.200}") from None

    def fields(self) -> dict[str, str]:
        """As the `session_start_limit` hash holds it."""
        return {name: str(int(value) if isinstance(value, bool) else value)
                for name, value in self.model_dump().items()}  # fmt: skip

    @classmethod
    def from_fields(cls, raw: Mapping[str, str]) -> SessionStartLimit:
        try:
            return cls.model_validate(dict(raw))
        except ValidationError as exc:
            raise MalformedData(
                f"not a session start limit: {exc.error_count()} error(s)"
            ) from None


class RunState(_Strict):
    """What a supervisor (`shardmon run`) is doing with its child, as the `supervisors` hash
    holds it under the supervisor's node: `state` is `running`, `backoff` (waiting `until` to
    restart a child that crashed), `held` (waiting `until` Discord's session start limit
    resets), `paused` (a restart storm: waiting for `shardmon run --resume`) or `stopped`;
    `reason` says why in words; `failures` counts the crashes in a row."""

    node: str = Field(min_length=1, max_length=300)
    shards: tuple[int, ...]
    state: Literal["running", "backoff", "held", "paused", "stopped"]
    since: float = Field(ge=0, allow_inf_nan=False)
    until: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    reason: str = Field(default="", max_length=500)
    failures: int = Field(default=0, ge=0)
    pid: int | None = Field(default=None, ge=1)
    seen: float = Field(ge=0, allow_inf_nan=False)

    @property
    def holding(self) -> bool:
        """Holding its child back until something lifts it (the IDENTIFY budget's reset, a
        resume): what `restarts_held` alerts and `shardmon status` needs attention for. A
        back-off ends by itself."""
        return self.state in ("held", "paused")

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def parse(cls, raw: str | bytes) -> RunState:
        try:
            return cls.model_validate_json(raw)
        except ValidationError:
            raise MalformedData("not a supervisor's state") from None


class RunRequest(_Strict):
    """What an operator asks of the supervisor of a shard (`run_requests`): `restart` its
    child, or `resume` restarts paused by a storm; `by` is who asked, `reason` why."""

    id: str = Field(min_length=1, max_length=64)
    action: Literal["restart", "resume"]
    reason: str = Field(default="", max_length=500)
    by: str = Field(default="", max_length=200)
    ts: float = Field(ge=0, allow_inf_nan=False)

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def parse(cls, raw: str | bytes) -> RunRequest:
        try:
            return cls.model_validate_json(raw)
        except ValidationError:
            raise MalformedData("not a request to a supervisor") from None


class RestartEvent(_Strict):
    """One restart of a process (and so of each of its shards), the seed's log line extended."""

    id: str = Field(min_length=1, max_length=64)
    timestamp: str
    type: RestartType
    shard: int = Field(ge=0)
    shards: tuple[int, ...]
    node: str
    system: str
    environment: str
    version: str
    metadata: dict[str, Any]
    #: The fleet's (Redis's) time of the event, where the host's clock was off by a second or
    #: more; `timestamp` stays the host's own, for people.
    fleet_ts: float | None = Field(default=None, ge=0)

    @field_validator("timestamp")
    @classmethod
    def _aware_iso(cls, value: str) -> str:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            raise ValueError("timestamp needs a UTC offset")
        return value

    @field_validator("shards")
    @classmethod
    def _shards_not_empty(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(shard < 0 for shard in value):
            raise ValueError("shards must list at least one shard id >= 0")
        return value

    @property
    def ts(self) -> float:
        """Event time in fleet epoch seconds: the score in the restart sets."""
        return self.host_ts if self.fleet_ts is None else self.fleet_ts

    @property
    def host_ts(self) -> float:
        """`timestamp` as epoch seconds: the time by its host's own clock."""
        return datetime.fromisoformat(self.timestamp).timestamp()

    def with_fleet_time(self, fleet_now: float) -> RestartEvent:
        """The event with its fleet time (Redis's, see `FleetClock`), kept where it differs
        from the host's `timestamp` by `FLEET_TS_MIN_SKEW_S` or more."""
        if abs(fleet_now - self.host_ts) < FLEET_TS_MIN_SKEW_S:
            return self.model_copy(update={"fleet_ts": None})
        return self.model_copy(update={"fleet_ts": round(fleet_now, 6)})

    def to_json(self) -> str:
        """The one serialisation, used both in the journal and as the Redis member."""
        unset = {"fleet_ts"} if self.fleet_ts is None else None
        return json.dumps(self.model_dump(mode="json", exclude=unset), ensure_ascii=False)


def _truncate_head(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… [{len(text) - limit} chars cut]"


def _truncate_tail(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"[{len(text) - limit} chars cut] …{text[-limit:]}"


def crash_metadata(error: str, traceback_str: str) -> dict[str, str]:
    """`metadata` of a crash: error and traceback bounded, keeping the traceback's tail."""
    return {
        "error": _truncate_head(str(error), CRASH_ERROR_LIMIT),
        "traceback": _truncate_tail(str(traceback_str), CRASH_TRACEBACK_LIMIT),
    }


def new_event(
    type: RestartType | str,
    *,
    shards: tuple[int, ...],
    node: str,
    system: str,
    environment: str,
    version: str,
    metadata: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> RestartEvent:
    """A fresh restart event with a unique id; `type` must be one of `RestartType`."""
    try:
        restart_type = RestartType(type)
    except ValueError:
        allowed = ", ".join(t.value for t in RestartType)
        raise ValueError(f"restart type {type!r} is not one of {allowed}") from None
    text = json.dumps(
        dict(metadata or {}), ensure_ascii=False
    )  # fails here on what JSON can't hold
    # Lone surrogates (from bytes decoded with surrogateescape) cannot be written as UTF-8, to
    # the journal or to Redis: they become "?".
    metadata = json.loads(text.encode("utf-8", "replace").decode("utf-8", "replace"))
    return RestartEvent(
        id=uuid.uuid4().hex,
        timestamp=(now or datetime.now(UTC)).isoformat(),
        type=restart_type,
        shard=shards[0],
        shards=shards,
        node=node,
        system=system,
        environment=environment,
        version=version,
        metadata=metadata,
    )


_SAMPLES = msgspec.json.Decoder(Sample)


def parse_sample(raw: str | bytes) -> Sample:
    """A sample read back, or MalformedData. One whose only fault is its `gateway` part is
    still MalformedData (to be counted), with the rest `salvaged`: a bad gateway field never
    hides a shard's process."""
    try:
        return _SAMPLES.decode(raw)
    except msgspec.ValidationError as exc:
        if "at `$.gateway" not in str(exc):
            raise MalformedData(f"not a sample: {exc}") from None
        data = msgspec.json.decode(raw)
        data["gateway"] = None
        try:
            salvaged = msgspec.convert(data, Sample)
        except msgspec.ValidationError:  # the same fields passed above; never expected
            raise MalformedData(f"not a sample: {exc}") from None
        raise MalformedData(f"gateway part dropped: {exc}", salvaged=salvaged) from None
    except msgspec.DecodeError as exc:
        raise MalformedData(f"not JSON: {exc}") from None


def parse_event(raw: str | bytes) -> RestartEvent:
    try:
        return RestartEvent.model_validate_json(raw)
    except ValidationError as exc:
        raise MalformedData(f"not a restart event: {exc.error_count()} error(s)") from None
