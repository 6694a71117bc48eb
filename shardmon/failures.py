"""What counts as a Redis failure, and whether it is an outage or a refusal: the one place
every handler asks.

Catch `REDIS_FAILURES`, then `classify()` the error: an **outage** (Redis did not answer: down,
unreachable, failing over, a Cluster without a slot's master) is retried by the loops and waited
out by readers; a **refusal** (Redis answered no: a key of the wrong type written by hand, out of
memory, a read-only replica) is reported in Redis's own words, since retrying will not help.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import redis
from redis.exceptions import ClusterDownError, RedisClusterException, TryAgainError

__all__ = ["REDIS_CLIENT_ERRORS", "REDIS_FAILURES", "RedisFailure", "classify"]

#: What redis-py itself raises: its errors, and an unreachable Cluster's RedisClusterException,
#: which is not a RedisError. Enough where every bound is redis-py's (the command line).
REDIS_CLIENT_ERRORS: tuple[type[Exception], ...] = (redis.RedisError, RedisClusterException)
#: Everything a failed Redis call raises in the core: redis-py's errors and the OSErrors of
#: sockets and of our own time bounds (`asyncio.timeout` raises TimeoutError, an OSError).
REDIS_FAILURES: tuple[type[Exception], ...] = (*REDIS_CLIENT_ERRORS, OSError)

#: The failures that mean Redis did not answer. A Cluster's CLUSTERDOWN and TRYAGAIN are
#: ResponseErrors, yet outages: they pass once the cluster has failed over.
_OUTAGES = (
    redis.ConnectionError,
    redis.TimeoutError,
    OSError,
    RedisClusterException,
    ClusterDownError,
    TryAgainError,
)

_PIPELINE_ERROR = re.compile(
    r"Command # \d+ \((?P<command>.+?)\) of pipeline caused error: \('?(?P<error>.+?)'?,?\)$", re.S
)


@dataclass(frozen=True, slots=True)
class RedisFailure:
    """A Redis failure in words: `outage` or not (then a refusal), and one line to log or show,
    without credentials: `ConnectionError: ...` for an outage, Redis's own answer for a refusal
    (`WRONGTYPE ... (HGETALL <key>)`)."""

    outage: bool
    text: str

    @property
    def kind(self) -> str:
        return "outage" if self.outage else "refusal"

    def __str__(self) -> str:
        return self.text


def classify(exc: BaseException) -> RedisFailure:
    """Outage or refusal, worded. Anything but a refusal is an outage: a WatchError raised for
    a connection lost meanwhile, an AuthenticationError, a timeout of our own bounds."""
    if isinstance(exc, redis.ResponseError) and not isinstance(exc, _OUTAGES):
        return RedisFailure(outage=False, text=_refusal_text(exc))
    return RedisFailure(outage=True, text=_outage_text(exc))


def _refusal_text(exc: BaseException) -> str:
    """What Redis refused, in one line, rather than redis-py's pipeline wrapping."""
    text = str(exc)
    match = _PIPELINE_ERROR.match(text)
    if match:
        text = f"{match['error']} ({match['command'][:120]})"
    return " ".join(text.split())


def _outage_text(exc: BaseException) -> str:
    """`Type: message`, one line, at most 200 characters, any credentials in a quoted URL
    redacted (a Cluster misconfiguration says what it is)."""
    text = re.sub(r"://[^\s/@]*@", "://***@", str(exc))
    text = re.sub(r"([?&][^=&\s]*password=)[^&\s]*", r"\1***", text, flags=re.IGNORECASE)
    return " ".join(f"{type(exc).__name__}: {text}".split())[:200]
