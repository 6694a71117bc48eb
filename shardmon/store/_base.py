"""What every part of the store shares: the client, the keys, the scripts, and the counting of
values that do not parse."""

from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cache
from importlib.resources import files
from typing import Any, TypeVar, cast

import redis.asyncio as aioredis

from shardmon.clock import ClockReading, FleetClock
from shardmon.failures import REDIS_FAILURES, classify
from shardmon.keys import Keys
from shardmon.models import MalformedData, Sample, parse_sample

log = logging.getLogger("shardmon.store")
T = TypeVar("T")

#: The scripts of `lua/`, each registered once per store (EVALSHA, loaded on first use).
SCRIPTS = (
    "push_sample",
    "take_requests",
    "record_restart",
    "count_by_shard",
    "acquire_leader",
    "renew_leader",
    "release_leader",
    "claim_alert",
    "claim_resolution",
    "record_alert",
)


@cache
def lua(name: str) -> str:
    """The text of `shardmon/store/lua/<name>.lua`."""
    return files("shardmon.store").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


def parse_all(raw: Iterable[str | bytes], parse: Callable[[str | bytes], T]) -> tuple[list[T], int]:
    """Each raw value parsed, and how many did not parse (pure: safe in a worker thread)."""
    parsed: list[T] = []
    skipped = 0
    for value in raw:
        try:
            parsed.append(parse(value))
        except MalformedData as exc:
            skipped += 1
            if exc.salvaged is not None:  # counted, and what could be read of it kept
                parsed.append(cast("T", exc.salvaged))
    return parsed, skipped


def count_by_shard(members: Iterable[str]) -> tuple[dict[int, int], int]:
    """Members `<shard>:<rest>` of an index counted by shard, and how many name no shard."""
    counts: Counter[int] = Counter()
    bad = 0
    for member in members:
        shard, colon, _ = str(member).partition(":")
        if colon and shard.isdigit():
            counts[int(shard)] += 1
        else:
            bad += 1
    return dict(counts), bad


def samples_by_shard(raw: Sequence[str | bytes]) -> tuple[dict[int, Sample], int]:
    """Samples by shard, and how many did not parse (pure: for a worker thread)."""
    parsed, bad = parse_all(raw, parse_sample)
    return {sample.shard: sample for sample in parsed}, bad


def heartbeat_map(pairs: Sequence[tuple[str, float]]) -> tuple[dict[int, float], int]:
    """`heartbeats` as shard -> last seen, and how many members are not shard ids."""
    seen = {int(member): float(score) for member, score in pairs if str(member).isdigit()}
    return seen, len(pairs) - len(seen)


def pairs(reply: Sequence[Any]) -> list[tuple[str, float]]:
    """A ZRANGE WITHSCORES reply read without redis-py's conversion (which builds a tuple and
    re-encodes each score on the event loop): RESP3's `[member, score]` pairs or RESP2's flat
    list, as (member, score)."""
    if reply and isinstance(reply[0], list | tuple):
        return [(str(member), float(score)) for member, score in reply]
    return [(str(reply[i]), float(reply[i + 1])) for i in range(0, len(reply) - 1, 2)]


class StoreBase:
    """The client, the keys, the registered scripts and the skipped-value counts.

    Args:
        client: an asyncio Redis client with `decode_responses=True` (see `create_redis`).
        keys: the deployment's key names.
        history_size: samples kept per shard (`samples:<shard>` is LTRIMmed to it), default 1000.
    """

    def __init__(self, client: aioredis.Redis, keys: Keys, history_size: int = 1000) -> None:
        self.client = client
        self.keys = keys
        self.history_size = history_size
        self.scripts = {name: client.register_script(lua(name)) for name in SCRIPTS}
        #: key -> how many malformed values reads have skipped there, since this store began
        self.skipped: Counter[str] = Counter()
        #: Redis's time: every "now" of the store, and what its writers stamp, is fleet time.
        self.clock = FleetClock()

    async def sync_clock(self) -> ClockReading | None:
        """Measure this host's offset from Redis's clock when due (`FleetClock.due`); None when
        not due or refused. A refusal of TIME (an ACL) is logged, and asked again in
        `CLOCK_REFRESH_S`; an outage propagates. Either way the clock keeps what it had."""
        if not self.clock.due:
            return None
        try:
            return await self.clock.measure(self.redis_time)
        except REDIS_FAILURES as exc:
            failure = classify(exc)
            if failure.outage:
                raise
            self.clock.refused()
            log.error("Redis refused TIME (%s): this host's clock stands in for the fleet's "
                      "until the user may run it (ACL +time)", failure)  # fmt: skip
            return None

    async def redis_time(self) -> Any:
        """TIME, of the master that holds the deployment's keys in a Cluster (whose nodes each
        have a clock: every monitor of the deployment asks the same one)."""
        cluster = cast("Any", self.client)
        if not hasattr(cluster, "get_node_from_key"):
            return await self.client.time()
        await cluster.initialize()  # the slots are known once it has connected
        return await cluster.time(target_nodes=cluster.get_node_from_key(self.keys.latest))

    def _parsed(
        self, raw: Iterable[str | bytes], parse: Callable[[str | bytes], T], key: str
    ) -> list[T]:
        """Parse each raw value, skipping and counting those that do not parse."""
        parsed, skipped = parse_all(raw, parse)
        if skipped:
            self._count_skipped(key, skipped)
        return parsed

    def _count_skipped(self, key: str, count: int) -> None:
        self.skipped[key] += count
        log.warning("skipped %d malformed value(s) in %s", count, key)

    async def _parse_latest(self, values: Iterable[str | bytes]) -> dict[int, Sample]:
        """`latest`'s values parsed into shard -> sample off the event loop: a sample per shard
        is the heaviest CPU work of a fleet-wide read. Malformed ones are counted."""
        samples, bad = await asyncio.to_thread(samples_by_shard, list(values))
        if bad:
            self._count_skipped(self.keys.latest, bad)
        return samples

    def _heartbeats(self, pairs: Sequence[tuple[str, float]]) -> dict[int, float]:
        seen, bad = heartbeat_map(pairs)
        if bad:
            self._count_skipped(self.keys.heartbeats, bad)
        return seen

    def _overrides(self, raw: Mapping[str, str]) -> dict[str, float]:
        """The `thresholds` hash as numbers; "nan" would switch a rule off without a word, a
        negative fire for all: both are skipped and counted."""
        overrides: dict[str, float] = {}
        for name, value in raw.items():
            try:
                number = float(value)
            except ValueError:
                number = math.nan
            if math.isfinite(number) and number >= 0:
                overrides[name] = number
            else:
                self._count_skipped(self.keys.thresholds, 1)
        return overrides

    def _by_shard(self, members: Iterable[str], key: str) -> dict[int, int]:
        """Shard -> how many members of an index (`<shard>:...`) are its; members that name
        no shard are skipped and counted."""
        counts, bad = count_by_shard(members)
        if bad:
            self._count_skipped(key, bad)
        return counts
