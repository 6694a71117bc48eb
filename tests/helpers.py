"""Builders of realistic samples and events for the tests."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from shardmon.models import RestartEvent, Sample, new_event


def artifacts() -> Path:
    """Where tests leave what a person should look at (screenshots, charts): test-artifacts/
    at the top of the tree, or $SHARDMON_TEST_ARTIFACTS."""
    root = Path(__file__).resolve().parent.parent
    folder = Path(os.environ.get("SHARDMON_TEST_ARTIFACTS", root / "test-artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def sample(shard: int = 0, ts: float | None = None, **fields: Any) -> Sample:
    values: dict[str, Any] = {
        "ts": time.time() if ts is None else ts,
        "shard": shard,
        "cpu": 20.0,
        "memory": 40.0,
        "memory_used_mb": 800.0,
        "memory_total_mb": 2000.0,
        "disk": 50.0,
        "cores": 2.0,
        "rss_mb": 120.0,
        "latency_ms": 45.0,
        "guilds": 100,
        "users": 5000,
        "node": "testhost:1",
    }
    values.update(fields)
    return Sample(**values)


def event(
    restart_type: str = "startup",
    shards: tuple[int, ...] = (0,),
    at: float | None = None,
    **meta: Any,
) -> RestartEvent:
    now = datetime.fromtimestamp(time.time() if at is None else at, UTC)
    return new_event(
        restart_type,
        shards=shards,
        node="testhost:1",
        system="Test Bot",
        environment="Test",
        version="1.0.0",
        metadata=meta,
        now=now,
    )


async def wait_until(condition: Callable[[], Awaitable[bool]], seconds: float = 10) -> None:
    """Poll a condition that another task or process makes true; give up after `seconds`."""
    async with asyncio.timeout(seconds):
        while not await condition():  # noqa: ASYNC110 - the state lives in Redis, not in an Event
            await asyncio.sleep(0.02)


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> float:
    """Poll a condition that another process makes true (a Redis error counts as "not yet");
    returns how long it took, and fails naming `what` after `seconds`."""
    started = time.monotonic()
    while True:
        try:
            if condition():
                return time.monotonic() - started
        except redis.RedisError:
            pass
        if time.monotonic() - started > seconds:
            raise AssertionError(f"not within {seconds:.1f} s: {what}")
        time.sleep(0.02)
