"""Leadership, alert claims and records, runtime threshold overrides and alert channels: what
the leader reads and writes to judge once and alert once."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from redis.asyncio.client import Pipeline

from shardmon.keys import ALERTS_CAP, RESOLUTION_CLAIM_TTL_S
from shardmon.models import MalformedData
from shardmon.store._base import StoreBase

__all__ = ["CLAIM_BATCH", "AlertStore", "Leadership", "condition", "parse_condition"]

#: Alert guards claimed per script call: a big fleet's thousands in a few bounded calls.
CLAIM_BATCH = 1000


@dataclass(frozen=True, slots=True)
class Leadership:
    """Who leads now: the node (None when nobody does), its lease left, the current epoch."""

    node: str | None
    lease_ms: int
    epoch: int


def condition(rule: str, shard: int | None) -> str:
    """The field of a condition in `active_alerts`: `<rule>:<shard>`, or `<rule>` for one of
    the whole fleet."""
    return rule if shard is None else f"{rule}:{shard}"


def parse_condition(field: str) -> tuple[str, int | None]:
    """`<rule>:<shard>` -> (rule, shard); `<rule>` -> (rule, None)."""
    rule, _, shard = field.rpartition(":")
    return (rule, int(shard)) if rule and shard.isdigit() else (field, None)


def _parse_alert_record(raw: str | bytes) -> dict[str, Any]:
    """An alert record as `Alerter` writes it; anything else is MalformedData."""
    try:
        record = json.loads(raw)
    except ValueError:
        raise MalformedData("not JSON") from None
    valid = (
        isinstance(record, dict)
        and isinstance(record.get("ts"), int | float)
        and math.isfinite(record["ts"])
        and 0 <= record["ts"] < 32503680000  # before the year 3000: gmtime can show it
        and all(isinstance(record.get(k), str) for k in ("id", "kind", "rule", "title", "node"))
        and isinstance(record.get("shards"), list)
        and all(isinstance(s, int) for s in record["shards"])  # [] for a fleet-wide alert
        and isinstance(record.get("delivery", {}), dict)
        and isinstance(record.get("epoch", 0), int)
    )
    if not valid:
        raise MalformedData("not an alert record")
    return dict(record)


class AlertStore(StoreBase):
    # -- leadership (DESIGN.md "Leader and alerts": one script each) ---------------------------

    async def acquire_leadership(self, node: str, lease_ms: int) -> int | None:
        """`SET leader NX PX` and a new epoch; the epoch held, or None when another leads."""
        epoch = await self.scripts["acquire_leader"](
            keys=[self.keys.leader, self.keys.leader_epoch], args=[node, lease_ms]
        )
        return None if epoch is None else int(epoch)

    async def renew_leadership(self, node: str, lease_ms: int) -> bool:
        """Reset the lease to `lease_ms` if `node` still holds it (compare-and-PEXPIRE)."""
        return bool(
            await self.scripts["renew_leader"](keys=[self.keys.leader], args=[node, lease_ms])
        )

    async def release_leadership(self, node: str) -> None:
        """Hand the lease back if `node` holds it (compare-and-delete)."""
        await self.scripts["release_leader"](keys=[self.keys.leader], args=[node])

    async def leader(self) -> Leadership:
        async with self.client.pipeline(transaction=False) as pipe:
            self._queue_leader(pipe)
            return self._leadership(*await pipe.execute())

    def _queue_leader(self, pipe: Pipeline) -> None:
        """Queue the reads of `leader()` on a pipeline, for readers that need more."""
        pipe.get(self.keys.leader)
        pipe.pttl(self.keys.leader)
        pipe.get(self.keys.leader_epoch)

    @staticmethod
    def _leadership(node: Any, pttl: Any, epoch: Any) -> Leadership:
        return Leadership(node, max(0, int(pttl)), int(epoch) if str(epoch).isdigit() else 0)

    # -- claims: at most one alert per condition and window, one resolution per alert ---------

    async def claim_alerts(
        self, rule: str, shards: Sequence[int | None], node: str, dedupe_s: int, claim: str
    ) -> list[int | Exception]:
        """Claim each shard's `alert:<rule>:<shard>` (`alert:<rule>` for the fleet: None) for
        `dedupe_s` if `node` leads, in one script call per CLAIM_BATCH guards: per shard 1
        claimed, 0 muted, -1 not the leader, or the refusal of a guard written by hand."""
        results: list[int | Exception] = []
        script = self.scripts["claim_alert"]
        for start in range(0, len(shards), CLAIM_BATCH):
            guards = [self.keys.alert(rule, shard) for shard in shards[start : start + CLAIM_BATCH]]
            found = await script(keys=[self.keys.leader, *guards], args=[node, dedupe_s, claim])
            if found == [-1]:
                return [*results, *([-1] * (len(shards) - len(results)))]
            results += [
                redis.ResponseError(f"WRONGTYPE {guard} is not a string") if code == -2 else code
                for guard, code in zip(guards, map(int, found), strict=True)
            ]
        return results

    async def free_alert_claims(self, rule: str, shards: Iterable[int | None]) -> None:
        """Delete claims so that the next tick (or leader) sends again: nobody heard them."""
        guards = [self.keys.alert(rule, shard) for shard in shards]
        if guards:
            await self.client.delete(*guards)

    async def claim_resolution(self, rule: str, shard: int | None, node: str, token: str) -> bool:
        """Take the condition out of `active_alerts` if `node` leads: True means this node
        announces that it cleared (a resend of this claim, with `token`, is known as ours)."""
        claimed = await self.scripts["claim_resolution"](
            keys=[self.keys.leader, self.keys.active_alerts, self.keys.resolution(rule, shard)],
            args=[node, condition(rule, shard), token, RESOLUTION_CLAIM_TTL_S],
        )
        return bool(claimed == 1)

    async def owe_resolutions(
        self, rule: str, shards: Iterable[int | None], since: Mapping[str, Any]
    ) -> None:
        """Keep the conditions in `active_alerts` (HSETNX: the first `since` stays) until a
        "resolved" message has gone out: after an alert was heard, or a resolution was not."""
        fields = [condition(rule, shard) for shard in shards]
        if fields:
            text = json.dumps(dict(since))
            async with self.client.pipeline(transaction=False) as pipe:
                for field in fields:
                    pipe.hsetnx(self.keys.active_alerts, field, text)
                await pipe.execute()

    async def record_alert(self, record: Mapping[str, Any], counter: str) -> None:
        """One record in the capped `alerts` list and, with a `counter` (`<rule>:<kind>`),
        one count in `alert_counts`, even if redis-py resends the script."""
        await self.scripts["record_alert"](
            keys=[self.keys.alerts, self.keys.alert_counts],
            args=[json.dumps(dict(record), ensure_ascii=False), ALERTS_CAP, counter],
        )

    async def recent_alerts(self, limit: int = 20) -> list[dict[str, Any]]:
        """The newest alert records (sent or resolved, with their delivery), newest first."""
        return self._alert_records(await self.client.lrange(self.keys.alerts, 0, limit - 1))

    def _alert_records(self, raw: Sequence[str | bytes]) -> list[dict[str, Any]]:
        """Records of the `alerts` list; those that do not parse are skipped and counted."""
        return self._parsed(raw, _parse_alert_record, self.keys.alerts)

    async def alert_counts(self) -> dict[tuple[str, str], int]:
        """(rule, kind) -> alerts delivered ever; fields that do not parse are skipped."""
        counts: dict[tuple[str, str], int] = {}
        for field, value in (await self.client.hgetall(self.keys.alert_counts)).items():
            rule, _, kind = str(field).rpartition(":")
            if rule and str(value).isdigit():
                counts[(rule, kind)] = int(value)
            else:
                self._count_skipped(self.keys.alert_counts, 1)
        return counts

    # -- runtime threshold overrides ----------------------------------------------------------

    async def thresholds(self) -> dict[str, str]:
        raw = await self.client.hgetall(self.keys.thresholds)
        return {str(name): str(value) for name, value in raw.items()}

    async def set_threshold(self, name: str, value: float) -> None:
        await self.client.hset(self.keys.thresholds, name, repr(value))

    async def unset_threshold(self, name: str) -> bool:
        return bool(await self.client.hdel(self.keys.thresholds, name))

    # -- alert channels ------------------------------------------------------------------------

    async def record_alert_channels(self, channels: Mapping[int, int]) -> None:
        """Guild id -> id of its alert channel (the first named dev-logs, admin-logs, ...)."""
        if channels:
            await self.client.hset(
                self.keys.alert_channels, mapping={str(g): str(c) for g, c in channels.items()}
            )

    async def forget_alert_channel(self, guild_id: int) -> None:
        await self.client.hdel(self.keys.alert_channels, str(guild_id))

    async def alert_channel(self, guild_ids: Iterable[int] = ()) -> int | None:
        """The channel alerts go to when none is configured: that of the lowest guild id
        (among `guild_ids` when given), so every leader picks the same one."""
        allowed = set(guild_ids)
        raw = await self.client.hgetall(self.keys.alert_channels)
        channels: dict[int, int] = {}
        for guild, channel in raw.items():
            if str(guild).isdigit() and str(channel).isdigit():
                channels[int(guild)] = int(channel)
            else:
                self._count_skipped(self.keys.alert_channels, 1)
        candidates = sorted(g for g in channels if not allowed or g in allowed)
        return channels[candidates[0]] if candidates else None
