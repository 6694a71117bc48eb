"""The one place Redis clients are built: bounded timeouts and retries, strings decoded, and
one Redis server, a master found through Sentinel, or a Redis Cluster.

redis-py's defaults retry a failed command three times with backoff and wait on a socket without
a limit; a monitor must instead fail fast and let its own loops decide when to try again.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import redis
import redis.asyncio as aioredis
import redis.asyncio.cluster
import redis.asyncio.sentinel
import redis.cluster
import redis.sentinel
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.commands.core import AsyncScript
from redis.connection import parse_url
from redis.retry import Retry

from shardmon.failures import classify

__all__ = [
    "RECOMMENDED_SERVER_CONFIG",
    "RedisMode",
    "RedisTarget",
    "create_redis",
    "create_sync_redis",
    "redact_url",
    "run_script",
]

RedisMode = Literal["standalone", "sentinel", "cluster"]

#: The server settings shardmon's own Redis runs with (docker-compose, the demo's and the
#: benchmarks' redis-server): every list node but the one at each end compressed with LZF
#: (samples are pushed and trimmed at the ends; `benchmarks/redis_memory.py` measures the
#: saving), and nothing evicted (an allkeys-* policy may evict any key, the history too; a
#: volatile-* one the leader lease and the alert guards, which carry TTLs).
RECOMMENDED_SERVER_CONFIG = {"list-compress-depth": "1", "maxmemory-policy": "noeviction"}


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """Where shardmon's Redis is.

    - `standalone`: the server at `url`.
    - `sentinel`: the master named `sentinel_master`, asked of the `sentinels` (host, port);
      `url`, when given, supplies the master's credentials, TLS options and db (its host is
      not used); `sentinel_password` is the sentinels' own, if they require one.
    - `cluster`: a Redis Cluster, `url` being any of its nodes. Every key of a deployment
      carries the hash tag `{<deployment>}`, so all of them, and every script, use one slot.

    Its repr never shows a password.
    """

    url: str | None = None
    mode: RedisMode = "standalone"
    sentinels: tuple[tuple[str, int], ...] = ()
    sentinel_master: str = "mymaster"
    sentinel_password: str | None = None

    def __repr__(self) -> str:
        return f"RedisTarget({self.describe()})"

    def describe(self) -> str:
        """Where it points, for logs and errors, without any password."""
        url = redact_url(self.url) if self.url else None
        if self.mode == "sentinel":
            where = ",".join(f"{host}:{port}" for host, port in self.sentinels)
            return f"sentinel master {self.sentinel_master!r} via {where}" + (
                f" ({url})" if url else ""
            )
        return f"Redis Cluster {url}" if self.mode == "cluster" else str(url)


class _SentinelMaster(aioredis.Redis):
    """A Sentinel's master: closing it also closes the connections to the sentinels."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        manager = getattr(self.connection_pool, "sentinel_manager", None)
        for sentinel in getattr(manager, "sentinels", ()):
            await sentinel.aclose()


class _SyncSentinelMaster(redis.Redis):
    """The blocking twin of `_SentinelMaster`."""

    def close(self) -> None:
        super().close()
        manager = getattr(self.connection_pool, "sentinel_manager", None)
        for sentinel in getattr(manager, "sentinels", ()):
            sentinel.close()


def _target(target: str | RedisTarget) -> RedisTarget:
    return RedisTarget(url=target) if isinstance(target, str) else target


def _master_kwargs(target: RedisTarget) -> dict[str, Any]:
    """Connection options for a Sentinel's master: what its URL says, minus the address."""
    if target.url is None:
        return {}
    options = dict(parse_url(target.url))  # type: ignore[no-untyped-call]
    for name in ("host", "port", "path", "connection_class"):
        options.pop(name, None)
    if target.url.startswith("rediss://"):
        options["ssl"] = True
    return options


def create_redis(
    target: str | RedisTarget, *, timeout_s: float = 5.0, retries: int = 1
) -> aioredis.Redis:
    """Asyncio client for the monitor, the cog and the CLI (a URL means a standalone server).

    For a Cluster this is a `redis.asyncio.RedisCluster`, typed as `Redis`: shardmon only sends
    it commands and scripts of one slot, which both clients offer alike."""
    target = _target(target)
    options: dict[str, Any] = {
        "decode_responses": True,
        "encoding_errors": "replace",  # bytes written by hand become garbage to skip
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        # The asyncio Retry: redis-py's asyncio client awaits it, and silently never retries
        # with the blocking one (found by the connection-cut test). Only a dropped connection
        # is retried: a timeout is not (a frozen Redis would cost a timeout per try, and
        # redis-py also retries connects and health checks with it), so a call stays bounded.
        "retry": AsyncRetry(
            ExponentialBackoff(cap=0.5, base=0.05),
            retries,
            supported_errors=(redis.ConnectionError,),
        ),
    }
    if target.mode == "cluster":
        return cast(
            "aioredis.Redis",
            redis.asyncio.cluster.RedisCluster.from_url(_required_url(target), **options),
        )
    if target.mode == "sentinel":
        sentinel = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            list(target.sentinels),
            sentinel_kwargs=_sentinel_kwargs(target, timeout_s, AsyncRetry(NoBackoff(), 0)),
            **_master_kwargs(target),
        )
        master = sentinel.master_for(
            target.sentinel_master, redis_class=_SentinelMaster, health_check_interval=30, **options
        )
        return cast("aioredis.Redis", master)
    return aioredis.Redis.from_url(_required_url(target), health_check_interval=30, **options)


def create_sync_redis(target: str | RedisTarget, *, timeout_s: float = 1.0) -> redis.Redis:
    """Blocking client for the seed's log functions: one try, short timeouts."""
    target = _target(target)
    options: dict[str, Any] = {
        "decode_responses": True,
        "encoding_errors": "replace",
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "retry": Retry(ExponentialBackoff(), 0),
    }
    if target.mode == "cluster":
        return cast(
            "redis.Redis",
            redis.cluster.RedisCluster.from_url(_required_url(target), **options),
        )
    if target.mode == "sentinel":
        sentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            list(target.sentinels),
            sentinel_kwargs=_sentinel_kwargs(target, timeout_s, Retry(NoBackoff(), 0)),
            **_master_kwargs(target),
        )
        master = sentinel.master_for(  # type: ignore[no-untyped-call]
            target.sentinel_master, redis_class=_SyncSentinelMaster, **options
        )
        return cast("redis.Redis", master)
    return redis.Redis.from_url(_required_url(target), **options)


async def run_script(
    client: aioredis.Redis,
    script: AsyncScript,
    calls: Sequence[tuple[Sequence[str], Sequence[Any]]],
    *,
    return_exceptions: bool = False,
) -> list[Any]:
    """Run `script` once per (keys, args), in order, and return the results in order: in one
    pipeline (one round trip) on a server or a Sentinel master; one call after the other on a
    Cluster, whose redis-py pipelines refuse scripts. Every call runs even if one is refused;
    then the first refusal is raised, or with `return_exceptions` it takes that call's place."""
    results: list[Any]
    if isinstance(client, redis.asyncio.cluster.RedisCluster):
        results = []
        for keys, args in calls:
            try:
                results.append(await script(keys=keys, args=args))
            except redis.ResponseError as exc:
                if classify(exc).outage:
                    raise
                results.append(exc)
    else:
        async with client.pipeline(transaction=False) as pipe:
            for keys, args in calls:
                await script(keys=keys, args=args, client=pipe)
            results = list(await pipe.execute(raise_on_error=False))
    if not return_exceptions:
        for result in results:
            if isinstance(result, Exception):
                raise result
    return results


def _required_url(target: RedisTarget) -> str:
    if target.url is None:
        raise ValueError(f"a {target.mode} Redis needs a URL")
    return target.url


def _sentinel_kwargs(
    target: RedisTarget, timeout_s: float, retry: Retry | AsyncRetry
) -> dict[str, Any]:
    """The sentinels' own connections: bounded like the master's, and not retried (redis-py's
    default, 10 retries with backoff, would hold a crash hook for seconds per sentinel)."""
    options: dict[str, Any] = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "retry": retry,
    }
    if target.sentinel_password is not None:
        options["password"] = target.sentinel_password
    return options


def redact_url(url: str) -> str:
    """The URL with any password (in the userinfo, or a query such as `password=` or
    `ssl_password=`) shown as `***`."""
    url = re.sub(r"([?&][^=&]*password=)[^&]*", r"\1***", url, flags=re.IGNORECASE)
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0] if ":" in credentials else ""
    return f"{scheme}://{user}:***@{host}"
