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
from typing import Any, TypeVar

import redis.asyncio as aioredis

from shardmon.keys import Keys
from shardmon.models import MalformedData, Sample, parse_sample

log = logging.getLogger("shardmon.store")
T = TypeVar("T")

#: The scripts of `lua/`, each registered once per store (EVALSHA, loaded on first use).
SCRIPTS = (
    "push_sample",
    "record_restart",
    "count_since",
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
        except MalformedData:
            skipped += 1
    return parsed, skipped


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

    async def _parse_latest(self, raw: Mapping[Any, str | bytes]) -> dict[int, Sample]:
        """`latest` parsed off the event loop: a sample per shard is the heaviest CPU work of
        a fleet-wide read (tens of ms at 5,000 shards). Malformed ones are counted."""
        samples, bad = await asyncio.to_thread(parse_all, list(raw.values()), parse_sample)
        bad += sum(sample.gateway_malformed for sample in samples)  # judged without it
        if bad:
            self._count_skipped(self.keys.latest, bad)
        return {sample.shard: sample for sample in samples}

    def _heartbeats(self, pairs: Sequence[tuple[str, float]]) -> dict[int, float]:
        seen = {int(member): float(score) for member, score in pairs if str(member).isdigit()}
        if len(seen) < len(pairs):
            self._count_skipped(self.keys.heartbeats, len(pairs) - len(seen))
        return seen

    def _judged_shards(
        self, shard_count: int, seen: Iterable[int], restart_fields: Iterable[str]
    ) -> list[int]:
        """The shards whose restarts are counted: the fleet's (0..shard_count-1), any other
        with a heartbeat, and any that ever restarted (`restart_counts` fields `<shard>:<type>`):
        a shard crash-looping before its first sample, beyond the configured count, too."""
        restarted = {int(shard) for shard, _, _ in (str(f).partition(":") for f in restart_fields)
                     if shard.isdigit()}  # fmt: skip
        return sorted({*range(shard_count), *seen, *restarted})

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

    async def _count_since(
        self, shards: Sequence[int], groups: Sequence[tuple[str, float]]
    ) -> list[dict[int, int]]:
        """For each group (a family of one sorted set a shard, `restarts:<shard>`, and a
        score): shard -> its ZCOUNT from that score, where above zero. One script call for all
        (`count_since.lua`), whatever the shard count; a key of the wrong type is skipped and
        counted."""
        counts: list[dict[int, int]] = [{} for _ in groups]
        if not shards:
            return counts
        keys = [key for family, _ in groups for key in self.keys.of_shards(family, shards)]
        args = [value for _, since in groups for value in (len(shards), since)]
        found = await self.scripts["count_since"](keys=keys, args=args)
        for position, count in zip(found[::2], found[1::2], strict=True):
            group, at = divmod(int(position) - 1, len(shards))
            if count < 0:
                self._count_skipped(keys[int(position) - 1], 1)
            else:
                counts[group][shards[at]] = int(count)
        return counts
