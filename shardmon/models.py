"""The data shardmon writes to Redis and to the journal, and their strict parsing.

Whatever is read back goes through `parse_sample` / `parse_event`: a value someone wrote by hand
raises `MalformedData`, which readers skip and count instead of crashing.
"""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = [
    "CRASH_ERROR_LIMIT",
    "CRASH_TRACEBACK_LIMIT",
    "MalformedData",
    "ProcessMetrics",
    "RestartEvent",
    "RestartType",
    "Sample",
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
    """A value in Redis or in the journal that is not what shardmon writes."""


class RestartType(StrEnum):
    STARTUP = "startup"
    MANUAL = "manual"
    CRASH = "crash"
    DEPLOYMENT = "deployment"
    SCHEDULED = "scheduled"


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)


class ProcessMetrics(_Strict):
    """What one process measures of itself and its machine (or container) at `ts`."""

    ts: float
    cpu: float = Field(ge=0, le=100)
    memory: float = Field(ge=0, le=100)
    memory_used_mb: float = Field(ge=0)
    memory_total_mb: float = Field(ge=0)
    disk: float = Field(ge=0, le=100)
    cores: float = Field(gt=0)
    rss_mb: float = Field(ge=0)


class Sample(ProcessMetrics):
    """One shard's sample: its process's metrics plus its own gateway figures."""

    shard: int = Field(ge=0)
    latency_ms: float | None = Field(default=None, ge=0)
    guilds: int = Field(default=0, ge=0)
    users: int = Field(default=0, ge=0)
    node: str = ""
    started_at: float | None = None  # when its process started: uptime without another read

    def to_json(self) -> str:
        return self.model_dump_json()


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
        """Event time as Unix epoch seconds: the score in the restart sets."""
        return datetime.fromisoformat(self.timestamp).timestamp()

    def to_json(self) -> str:
        """The one serialisation, used both in the journal and as the Redis member."""
        return json.dumps(self.model_dump(mode="json"), ensure_ascii=False)


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


def parse_sample(raw: str | bytes) -> Sample:
    try:
        sample = Sample.model_validate_json(raw)
    except ValidationError as exc:
        raise MalformedData(f"not a sample: {exc.error_count()} error(s)") from None
    if not math.isfinite(sample.ts):
        raise MalformedData("not a sample: ts is not finite")
    return sample


def parse_event(raw: str | bytes) -> RestartEvent:
    try:
        return RestartEvent.model_validate_json(raw)
    except ValidationError as exc:
        raise MalformedData(f"not a restart event: {exc.error_count()} error(s)") from None
