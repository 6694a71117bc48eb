"""Leader election on Redis: one node of the fleet judges it, fenced by an epoch.

Timing follows Kubernetes' leader election: a 15 s lease renewed every 2 s; a leader that has not
renewed successfully for 10 s (monotonic clock) stops acting as leader, well before its lease can
pass to another node. A shorter lease scales both in proportion. Every Redis call is bounded,
because redis-py's retries can hold one call to a frozen Redis far longer than the lease.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass

from shardmon.failures import REDIS_FAILURES, classify
from shardmon.store import Store
from shardmon.tasks import Stopping

__all__ = ["LeaderElection", "LeaseTiming"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LeaseTiming:
    """Lease, renew period, stand-down delay and per-call bound, from the lease alone."""

    lease_s: float = 15.0

    @property
    def renew_s(self) -> float:
        return self.lease_s * 2 / 15

    @property
    def stand_down_s(self) -> float:
        return self.lease_s * 10 / 15

    @property
    def call_timeout_s(self) -> float:
        """How long one election call may take: at most 2 s, and never a whole renew period
        of a short test lease less than 0.25 s."""
        return min(2.0, max(0.25, self.renew_s))


class LeaderElection:
    """Campaigns for `leader` and keeps it while this node is alive.

    Args:
        store: the deployment's store (its leadership scripts).
        node: this process's id (`host:pid`), the value of `leader` while it leads.
        timing: the lease and what follows from it (default lease 15 s).
    """

    def __init__(self, store: Store, node: str, timing: LeaseTiming | None = None) -> None:
        self.store = store
        self.node = node
        self.timing = timing or LeaseTiming()
        #: The fencing epoch of the current leadership, None while following.
        self.epoch: int | None = None
        self._renewed_at = 0.0  # monotonic time of the last successful acquire or renewal

    @property
    def is_leader(self) -> bool:
        """True while this node holds the lease, as far as a recent renewal proves."""
        return (
            self.epoch is not None
            and time.monotonic() - self._renewed_at < self.timing.stand_down_s
        )

    async def campaign_once(self) -> bool:
        """Acquire or renew once (bounded in time); returns whether this node now leads."""
        lease_ms = int(self.timing.lease_s * 1000)
        asked_at = time.monotonic()
        try:
            async with asyncio.timeout(self.timing.call_timeout_s):
                if self.epoch is None:
                    epoch = await self.store.acquire_leadership(self.node, lease_ms)
                    if epoch is not None:
                        self.epoch = epoch
                        self._renewed_at = asked_at
                        log.info("%s leads, epoch %d", self.node, self.epoch)
                elif await self.store.renew_leadership(self.node, lease_ms):
                    self._renewed_at = asked_at
                else:
                    log.warning("%s lost the lease (epoch %s)", self.node, self.epoch)
                    self.epoch = None
        except REDIS_FAILURES as exc:  # a timeout of ours is an OSError too
            log.warning("election call failed (%s)", classify(exc))
        if self.epoch is not None and not self.is_leader:
            log.warning(
                "%s stands down: no renewal for %.1f s", self.node, self.timing.stand_down_s
            )
            self.epoch = None
        return self.is_leader

    async def run(self, stopping: Stopping) -> None:
        """Campaign until `stopping` is set: renew every renew period, or retry with jitter."""
        while not stopping.is_set():
            await self.campaign_once()
            delay = self.timing.renew_s
            if not self.is_leader:
                delay *= random.uniform(0.8, 1.2)  # followers do not all ask at once
            await stopping.pause(delay)

    async def release(self) -> None:
        """Hand the lease back (compare-and-delete) so another node leads at once; also after
        standing down, since the key may still name this node."""
        self.epoch = None
        try:
            async with asyncio.timeout(self.timing.call_timeout_s):
                await self.store.release_leadership(self.node)
            log.info("%s released the lease", self.node)
        except REDIS_FAILURES as exc:
            log.warning("could not release the lease (%s); it expires by itself", classify(exc))
