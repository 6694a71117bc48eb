"""Claiming, delivering and recording alerts: each condition is sent at most once per window.

A claim script checks, in one step, that the caller still holds `leader` and that
`SET alert:<rule>:<shard> NX EX <dedupe_s>` succeeds, so two nodes that both believe they lead
cannot both send. Delivery runs beside the leader's loop; if no sink delivers, the claims are
deleted and the next tick tries again. Every attempt is recorded in the capped `alerts` list with
its outcome per sink; conditions that were announced are kept in `active_alerts` until a
"resolved" message has gone out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import asdict
from typing import Any

import redis.asyncio as aioredis

from shardmon.connection import run_script
from shardmon.failures import REDIS_FAILURES, classify
from shardmon.keys import ALERTS_CAP, RESOLUTION_CLAIM_TTL_S, Keys
from shardmon.rules import AlertText, Finding, FleetView, Rule
from shardmon.sinks import Alert, DeliveryPolicy, LogSink, Sink, deliver
from shardmon.store import lua

__all__ = ["Alerter", "condition"]

log = logging.getLogger(__name__)


def _delivered(outcomes: dict[str, str]) -> bool:
    """Whether anyone was told: the log counts only when it is the sole sink, or a failing
    webhook would pass for a delivered alert and never be retried."""
    remote = [outcome for name, outcome in outcomes.items() if name != LogSink.name]
    return "ok" in (remote or list(outcomes.values()))


def condition(rule: str, shard: int) -> str:
    """The field of a condition in `active_alerts`: `<rule>:<shard>`."""
    return f"{rule}:{shard}"


class Alerter:
    """Sends alerts for the leader.

    Args:
        client: asyncio Redis client.
        keys: the deployment's keys.
        node: this node's id, checked against `leader` by every claim.
        sinks: where alerts go (the log, a webhook, a channel...).
        dedupe_s: an alert for one condition is sent at most once per this window (300).
        policy: retries and time bounds of each sink.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        keys: Keys,
        node: str,
        sinks: Sequence[Sink],
        *,
        dedupe_s: int = 300,
        policy: DeliveryPolicy | None = None,
    ) -> None:
        self.client = client
        self.keys = keys
        self.node = node
        self.sinks = list(sinks)
        self.dedupe_s = dedupe_s
        self.policy = policy or DeliveryPolicy()
        self._claim_alert = client.register_script(lua("claim_alert"))
        self._claim_resolution = client.register_script(lua("claim_resolution"))
        self._record_alert = client.register_script(lua("record_alert"))
        self._deliveries: set[asyncio.Task[None]] = set()

    async def alert(
        self, rule: Rule, findings: Sequence[Finding], fleet: FleetView, epoch: int
    ) -> Alert | None:
        """Claim each finding's condition and send one message for those claimed."""
        claim = f"{epoch}:{uuid.uuid4().hex}"
        calls = [
            (
                [self.keys.leader, self.keys.alert(rule.name, finding.shard)],
                [self.node, self.dedupe_s, claim],
            )
            for finding in findings
        ]
        results = await run_script(self.client, self._claim_alert, calls, return_exceptions=True)
        for finding, result in zip(findings, results, strict=True):
            if isinstance(result, Exception):  # a guard key written by hand: that shard only
                log.error("%s alert of shard %s not claimed: %s", rule.name, finding.shard, result)
        if -1 in results:
            log.warning("not the leader any more: %s alert not sent", rule.name)
            won = [f for f, result in zip(findings, results, strict=True) if result == 1]
            if won:  # leadership changed within the pipeline: free what was claimed
                await self.client.delete(*(self.keys.alert(rule.name, f.shard) for f in won))
            return None
        claimed = [f for f, result in zip(findings, results, strict=True) if result == 1]
        if not claimed:
            return None
        alert = self._new_alert("alert", rule.name, claimed, rule.describe(claimed, fleet), epoch)
        self._spawn(self._deliver_alert(alert, claimed))
        return alert

    async def resolve(self, rule: str, shard: int, text: AlertText, epoch: int) -> Alert | None:
        """Announce once that a condition cleared (claimed by removing it from active)."""
        field = condition(rule, shard)
        claimed = await self._claim_resolution(
            keys=[self.keys.leader, self.keys.active_alerts, self.keys.resolution(rule, shard)],
            args=[self.node, field, f"{epoch}:{uuid.uuid4().hex}", RESOLUTION_CLAIM_TTL_S],
        )
        if claimed != 1:
            return None
        finding = Finding(rule, shard, 0, 0)
        alert = self._new_alert("resolved", rule, [finding], text, epoch)
        self._spawn(self._deliver_resolution(alert, field))
        return alert

    async def wait_for_deliveries(self, timeout_s: float = 5.0) -> None:
        """Wait (bounded) for the deliveries in flight; cancel those still going after it."""
        if self._deliveries:
            _, pending = await asyncio.wait(set(self._deliveries), timeout=timeout_s)
            for task in pending:
                task.cancel()

    async def close(self, timeout_s: float = 5.0) -> None:
        """Wait (bounded) for deliveries in flight, then close the sinks: a clean stop."""
        await self.wait_for_deliveries(timeout_s)
        for sink in self.sinks:
            await sink.close()

    # -- internals ------------------------------------------------------------------------

    def _new_alert(
        self, kind: str, rule: str, findings: Sequence[Finding], text: AlertText, epoch: int
    ) -> Alert:
        return Alert(
            id=uuid.uuid4().hex,
            kind=kind,
            rule=rule,
            shards=tuple(f.shard for f in findings),
            title=text.title,
            body=text.body,
            epoch=epoch,
            node=self.node,
            ts=time.time(),
        )

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work, name="shardmon-alert-delivery")
        self._deliveries.add(task)
        task.add_done_callback(self._delivery_done)

    def _delivery_done(self, task: asyncio.Task[None]) -> None:
        self._deliveries.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("alert delivery failed", exc_info=task.exception())

    async def _deliver_alert(self, alert: Alert, claimed: Sequence[Finding]) -> None:
        since = json.dumps({"since": alert.ts, "epoch": alert.epoch})
        fields = [condition(alert.rule, f.shard) for f in claimed]
        guards = [self.keys.alert(alert.rule, f.shard) for f in claimed]
        await self._deliver(
            alert,
            # heard: a "resolved" is owed from now on
            on_delivered=lambda pipe: [
                pipe.hsetnx(self.keys.active_alerts, f, since) for f in fields
            ],
            # nobody heard it: free the claims so that the next tick (or leader) retries
            on_undelivered=lambda pipe: pipe.delete(*guards),
        )

    async def _deliver_resolution(self, alert: Alert, field: str) -> None:
        await self._deliver(
            alert,
            on_delivered=lambda pipe: None,
            # still owed: put the condition back for the next tick (or leader)
            on_undelivered=lambda pipe: pipe.hsetnx(
                self.keys.active_alerts, field, json.dumps({"since": alert.ts})
            ),
        )

    async def _deliver(
        self,
        alert: Alert,
        on_delivered: Callable[[aioredis.client.Pipeline], object],
        on_undelivered: Callable[[aioredis.client.Pipeline], object],
    ) -> None:
        """Send to the sinks, then record the outcome with what follows from it; a stop that
        cuts the delivery short counts as undelivered."""
        try:
            outcomes = await deliver(self.sinks, alert, self.policy)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1), self.client.pipeline(transaction=False) as pipe:
                    on_undelivered(pipe)
                    await pipe.execute()
            raise
        delivered = _delivered(outcomes)
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                (on_delivered if delivered else on_undelivered)(pipe)
                await pipe.execute()
            await self._record(alert, outcomes, delivered)
        except REDIS_FAILURES as exc:
            log.error(
                "%s %s sent=%s but not recorded: %s", alert.kind, alert.id, delivered, classify(exc)
            )

    async def _record(self, alert: Alert, outcomes: dict[str, str], delivered: bool) -> None:
        """One record in `alerts`, and one count when delivered, even if redis-py resends."""
        record = {**asdict(alert), "delivery": outcomes, "delivered": delivered}
        counter = f"{alert.rule}:{alert.kind}" if delivered else ""
        await self._record_alert(
            keys=[self.keys.alerts, self.keys.alert_counts],
            args=[json.dumps(record, ensure_ascii=False), ALERTS_CAP, counter],
        )
