"""Claiming, delivering and recording alerts: each condition is sent at most once per window.

A claim script checks, in one step, that the caller still holds `leader` and that
`SET alert:<rule>:<shard> NX EX <dedupe_s>` succeeds, so two nodes that both believe they lead
cannot both send. Delivery runs beside the leader's loop; if no sink delivers, the claims are
deleted and the next tick tries again. Every attempt is recorded in the capped `alerts` list with
its outcome per sink; conditions that were announced are kept in `active_alerts` until a
"resolved" message has gone out. Every Redis command is the store's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict

from shardmon.failures import REDIS_FAILURES, classify
from shardmon.rules import AlertText, Finding, FleetView, Limits, Rule
from shardmon.sinks import Alert, DeliveryPolicy, LogSink, Sink, deliver
from shardmon.store import Store
from shardmon.tasks import TaskSet

__all__ = ["Alerter"]

log = logging.getLogger(__name__)


def _delivered(outcomes: dict[str, str]) -> bool:
    """Whether anyone was told: the log counts only when it is the sole sink, or a failing
    webhook would pass for a delivered alert and never be retried."""
    remote = [outcome for name, outcome in outcomes.items() if name != LogSink.name]
    return "ok" in (remote or list(outcomes.values()))


class Alerter:
    """Sends alerts for the leader.

    Args:
        store: the deployment's store (claims, records, active conditions).
        node: this node's id, checked against `leader` by every claim.
        sinks: where alerts go (the log, a webhook, a channel...).
        dedupe_s: an alert for one condition is sent at most once per this window (300).
        policy: retries and time bounds of each sink.
    """

    def __init__(
        self,
        store: Store,
        node: str,
        sinks: Sequence[Sink],
        *,
        dedupe_s: int = 300,
        policy: DeliveryPolicy | None = None,
    ) -> None:
        self.store = store
        self.node = node
        self.sinks = tuple(sinks)
        self.dedupe_s = dedupe_s
        self.policy = policy or DeliveryPolicy()
        self.deliveries = TaskSet()

    async def alert(
        self, rule: Rule, findings: Sequence[Finding], fleet: FleetView, limits: Limits, epoch: int
    ) -> Alert | None:
        """Claim each finding's condition and send one message for those claimed."""
        shards = [finding.shard for finding in findings]
        claim = f"{epoch}:{uuid.uuid4().hex}"
        results = await self.store.claim_alerts(rule.name, shards, self.node, self.dedupe_s, claim)
        for shard, result in zip(shards, results, strict=True):
            if isinstance(result, Exception):  # a guard key written by hand: that shard only
                log.error("%s alert of shard %s not claimed: %s", rule.name, shard, result)
        claimed = [f for f, result in zip(findings, results, strict=True) if result == 1]
        if -1 in results:
            log.warning("not the leader any more: %s alert not sent", rule.name)
            # leadership changed within the pipeline: free what was claimed
            await self.store.free_alert_claims(rule.name, (f.shard for f in claimed))
            return None
        if not claimed:
            return None
        text = rule.describe(claimed, fleet, limits)
        alert = self._new_alert("alert", rule.name, claimed, text, epoch)
        shards_claimed = [f.shard for f in claimed]
        self.deliveries.spawn(
            self._deliver(
                alert,
                # heard: a "resolved" is owed from now on
                on_delivered=lambda: self.store.owe_resolutions(
                    alert.rule, shards_claimed, {"since": alert.ts, "epoch": alert.epoch}
                ),
                # nobody heard it: free the claims so that the next tick (or leader) retries
                on_undelivered=lambda: self.store.free_alert_claims(alert.rule, shards_claimed),
            ),
            name="shardmon-alert-delivery",
        )
        return alert

    async def resolve(
        self, rule: str, shard: int | None, text: AlertText, epoch: int
    ) -> Alert | None:
        """Announce once that a condition cleared (claimed by removing it from active)."""
        token = f"{epoch}:{uuid.uuid4().hex}"
        if not await self.store.claim_resolution(rule, shard, self.node, token):
            return None
        alert = self._new_alert("resolved", rule, [Finding(rule, shard, 0, 0)], text, epoch)
        self.deliveries.spawn(
            self._deliver(
                alert,
                on_delivered=None,  # heard: nothing more is owed
                # still owed: put the condition back for the next tick (or leader)
                on_undelivered=lambda: self.store.owe_resolutions(
                    rule, [shard], {"since": alert.ts}
                ),
            ),
            name="shardmon-alert-delivery",
        )
        return alert

    async def wait_for_deliveries(self, timeout_s: float = 5.0) -> None:
        """Wait (bounded) for the deliveries in flight; cancel those still going after it."""
        await self.deliveries.wait(timeout_s)

    async def close(self, timeout_s: float = 5.0) -> None:
        """Wait (bounded) for deliveries in flight, then close the sinks: a clean stop."""
        await self.wait_for_deliveries(timeout_s)
        for sink in self.sinks:
            await sink.close()

    # -- internals ------------------------------------------------------------------------

    def _new_alert(
        self, kind: str, rule: str, findings: Sequence[Finding], text: AlertText, epoch: int
    ) -> Alert:
        onsets = [f.since for f in findings if f.since is not None]
        return Alert(
            id=uuid.uuid4().hex,
            kind=kind,
            rule=rule,
            shards=tuple(f.shard for f in findings if f.shard is not None),  # () fleet-wide
            title=text.title,
            body=text.body,
            epoch=epoch,
            node=self.node,
            ts=self.store.clock.now(),
            since=min(onsets, default=None),
        )

    async def _deliver(
        self,
        alert: Alert,
        on_delivered: Callable[[], Awaitable[None]] | None,
        on_undelivered: Callable[[], Awaitable[None]],
    ) -> None:
        """Send to the sinks, then record the outcome with what follows from it; a stop that
        cuts the delivery short counts as undelivered."""
        try:
            outcomes = await deliver(list(self.sinks), alert, self.policy)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1):
                    await on_undelivered()
            raise
        delivered = _delivered(outcomes)
        record = {**asdict(alert), "delivery": outcomes, "delivered": delivered}
        try:
            follow_up = on_delivered if delivered else on_undelivered
            if follow_up is not None:
                await follow_up()
            await self.store.record_alert(record, f"{alert.rule}:{alert.kind}" if delivered else "")
        except REDIS_FAILURES as exc:
            failure = classify(exc)
            log.error(
                "%s %s sent=%s but not recorded: %s", alert.kind, alert.id, delivered, failure
            )
