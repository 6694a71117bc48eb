"""What supervisors (`shardmon run`) say of their children, and what operators ask of them:
the `supervisors` hash (node -> its state, written every sampling interval) and the
`run_requests` hash (shard -> a restart or a resume, taken by the supervisor of that shard)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from shardmon.models import MalformedData, RunRequest, RunState
from shardmon.store._base import StoreBase

__all__ = ["Asked", "SupervisorStore"]

#: A supervisor's entry that has not been written for this long is gone (a SIGKILLed
#: supervisor cannot remove it): readers skip it, and a supervisor's start deletes it.
FORGOTTEN_AFTER_S = 86400


@dataclass(frozen=True, slots=True)
class Asked:
    """What `ask_supervisors` did: the request, the shards asked (-> their supervisor's node)
    and the shards no supervisor reports (not asked)."""

    request: RunRequest
    asked: dict[int, str]
    nobody: list[int]


class SupervisorStore(StoreBase):
    async def report_supervisor(self, state: RunState) -> None:
        """Write this supervisor's state (each sampling interval, and at each change)."""
        await self.client.hset(self.keys.supervisors, state.node, state.to_json())

    async def forget_supervisor(self, node: str) -> None:
        """A supervisor's clean stop: its entry goes with it."""
        await self.client.hdel(self.keys.supervisors, node)

    async def supervisors(self, fresh_after: float | None = None) -> dict[str, RunState]:
        """Node -> the state each supervisor wrote, those written since `fresh_after` only
        (all when None); entries that do not parse are skipped and counted."""
        return self._supervisors(await self.client.hvals(self.keys.supervisors), fresh_after)

    def _supervisors(
        self, raw: Sequence[str | bytes], fresh_after: float | None = None
    ) -> dict[str, RunState]:
        states = self._parsed(raw, RunState.parse, self.keys.supervisors)
        return {s.node: s for s in states if fresh_after is None or s.seen >= fresh_after}

    async def forget_stale_supervisors(
        self, now: float, gone: Callable[[RunState], bool] = lambda state: False
    ) -> int:
        """Delete the entries of supervisors silent for FORGOTTEN_AFTER_S, unreadable ones, and
        those `gone` says are (in one read of the hash)."""
        raw = await self.client.hgetall(self.keys.supervisors)
        stale = []
        for node, value in raw.items():
            try:
                state = RunState.parse(value)
            except MalformedData:
                stale.append(node)
                continue
            if state.seen < now - FORGOTTEN_AFTER_S or gone(state):
                stale.append(node)
        if stale:
            await self.client.hdel(self.keys.supervisors, *stale)
        return len(stale)

    async def ask_supervisors(
        self,
        shards: Iterable[int],
        action: Literal["restart", "resume"],
        reason: str = "",
        by: str = "",
        fresh_after: float | None = None,
    ) -> Asked:
        """Ask the supervisor of each shard that one reports (since `fresh_after`) to
        `restart` its child or `resume` restarts: one request, written for each of those
        shards, replacing any not yet taken. The others are not asked, and said so."""
        owners = {shard: state.node for state in (await self.supervisors(fresh_after)).values()
                  for shard in state.shards}  # fmt: skip
        wanted = list(dict.fromkeys(shards))
        asked = {shard: owners[shard] for shard in wanted if shard in owners}
        request = RunRequest(
            id=uuid.uuid4().hex, action=action, reason=reason, by=by, ts=self.clock.now()
        )
        if asked:
            await self.client.hset(
                self.keys.run_requests, mapping={str(shard): request.to_json() for shard in asked}
            )
        return Asked(request, asked, [shard for shard in wanted if shard not in owners])

    async def take_requests(self, shards: Sequence[int]) -> list[RunRequest]:
        """The requests asked of `shards`, taken (deleted) in one step; the same request for
        several shards is one. Requests that do not parse are skipped and counted."""
        found = await self.scripts["take_requests"](
            keys=[self.keys.run_requests], args=[str(shard) for shard in shards]
        )
        raw = [value for value in found if value]
        requests = self._parsed(raw, RunRequest.parse, self.keys.run_requests)
        return list({request.id: request for request in requests}.values())

    async def pending_requests(self, shards: Iterable[int]) -> dict[int, RunRequest]:
        """Shard -> its request not yet taken (what `shardmon restart` waits on)."""
        wanted = [str(shard) for shard in shards]
        values = await self.client.hmget(self.keys.run_requests, wanted)
        pending = {}
        for shard, value in zip(wanted, values, strict=True):
            if value:
                try:
                    pending[int(shard)] = RunRequest.parse(value)
                except MalformedData:
                    self._count_skipped(self.keys.run_requests, 1)
        return pending
