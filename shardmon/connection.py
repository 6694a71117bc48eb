"""The one place Redis clients are built: bounded timeouts and retries, strings decoded.

redis-py's defaults retry a failed command three times with backoff and wait on a socket without
a limit; a monitor must instead fail fast and let its own loops decide when to try again.
"""

from __future__ import annotations

import re

import redis
import redis.asyncio as aioredis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

__all__ = ["REDIS_ERRORS", "create_redis", "create_sync_redis", "redact_url"]

#: What a Redis outage raises; every caller that must survive one catches exactly these.
REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)


def create_redis(url: str, *, timeout_s: float = 5.0, retries: int = 1) -> aioredis.Redis:
    """Asyncio client for the monitor, the cog and the CLI."""
    return aioredis.Redis.from_url(
        url,
        decode_responses=True,
        encoding_errors="replace",  # bytes written by hand become garbage to skip, not a crash
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries),
        health_check_interval=30,
    )


def create_sync_redis(url: str, *, timeout_s: float = 1.0) -> redis.Redis:
    """Blocking client for the seed's log functions: one try, short timeouts."""
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        encoding_errors="replace",
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(ExponentialBackoff(), 0),
    )


def redact_url(url: str) -> str:
    """The URL with any password (in the userinfo or a `password=` query) shown as `***`."""
    url = re.sub(r"([?&]password=)[^&]*", r"\1***", url)
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0] if ":" in credentials else ""
    return f"{scheme}://{user}:***@{host}"
