"""Fixtures: a real redis-server started by the test session on a free loopback port."""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import hypothesis  # noqa: F401 - imported before any test: see the note below
import pytest
import redis
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).parent))

from redis_server import RedisServer

from shardmon.connection import create_redis
from shardmon.keys import Keys
from shardmon.monitor import MonitorConfig

# CPython 3.11.7 can leave its AST recursion counter off after discord.py evaluates command
# annotations (fixed in 3.11.8); a module that pytest first rewrites after that fails with
# "SystemError: AST constructor recursion depth mismatch". Hypothesis's plugin imports hypothesis
# lazily at the end of the session, so it is imported here, at the start.

_deployments = itertools.count()


@pytest.fixture(autouse=True)
def _no_shardmon_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests see only the SHARDMON_* variables they set, and no stray .env file."""
    for name in list(os.environ):
        if name.startswith("SHARDMON_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.kill()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A server of this test alone, for tests that kill, freeze or restart it."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    if server.process:
        server.thaw()  # a test may have left it frozen
    server.kill()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    with redis.Redis(port=redis_server.port) as client:
        client.flushall()
    return redis_server.url


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = create_redis(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def deployment() -> str:
    return f"test{next(_deployments)}"


@pytest.fixture
def keys(deployment: str) -> Keys:
    return Keys(deployment)


@pytest.fixture
def config(deployment: str, tmp_path: Path) -> MonitorConfig:
    return MonitorConfig(
        deployment=deployment,
        shard_ids=(0, 1),
        shard_count=4,
        system_name="Test Bot",
        environment="Test",
        version="1.2.3",
        node="testhost:4242",
        sample_interval_s=0.05,
        history_size=50,
        sample_buffer_size=20,
        journal_path=tmp_path / "logs" / "system_restarts.log",
    )
