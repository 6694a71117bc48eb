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

from redis_server import ClusterSetup, RedisServer, SentinelSetup

from shardmon import api
from shardmon.connection import RedisTarget, create_redis
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


@pytest.fixture(autouse=True)
def _fresh_api_settings() -> Iterator[None]:
    """The seed helpers read settings once a process: once a test, here."""
    api._settings.cache_clear()
    yield
    api._settings.cache_clear()


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


#: A test module with `TOPOLOGIES = ALL_TOPOLOGIES` runs each test that uses `client` or
#: `redis_target` against one server, a Sentinel-managed master and a 3-master Cluster.
ALL_TOPOLOGIES = ("standalone", "sentinel", "cluster")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    topologies = getattr(metafunc.module, "TOPOLOGIES", None)
    uses_redis = {"client", "redis_target"} & set(metafunc.fixturenames)
    if topologies and uses_redis:
        metafunc.parametrize("topology", topologies, indirect=True)


@pytest.fixture
def topology(request: pytest.FixtureRequest) -> str:
    return str(getattr(request, "param", "standalone"))


def _running(setup: SentinelSetup | ClusterSetup) -> Iterator[SentinelSetup | ClusterSetup]:
    try:
        setup.start()
        yield setup
    finally:
        setup.stop()  # also after a failed start: no server left behind


@pytest.fixture(scope="session")
def sentinel_setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSetup]:
    yield from _running(SentinelSetup(tmp_path_factory.mktemp("sentinel")))


@pytest.fixture(scope="session")
def cluster_setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterSetup]:
    yield from _running(ClusterSetup(tmp_path_factory.mktemp("cluster")))


@pytest.fixture
def redis_target(topology: str, request: pytest.FixtureRequest) -> RedisTarget:
    """An empty Redis of the test's topology (standalone unless the module asks for more)."""
    if topology == "standalone":
        return RedisTarget(url=request.getfixturevalue("redis_url"))
    setup: SentinelSetup | ClusterSetup = request.getfixturevalue(f"{topology}_setup")
    setup.flush()
    return setup.target


@pytest.fixture
async def client(redis_target: RedisTarget) -> AsyncIterator[aioredis.Redis]:
    client = create_redis(redis_target)
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
