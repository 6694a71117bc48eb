"""Where alerts go: one small interface, the log sink, and delivery with retries.

A sink's `send` raises on failure; `deliver` retries each sink with backoff, bounds every
attempt in time, and runs the sinks side by side, so a slow or broken one delays nobody.
The Discord sinks (webhook, channel) live with the other Discord-facing parts, in
`shardmon.discordpy.sinks`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Alert", "DeliveryPolicy", "LogSink", "Sink", "deliver"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Alert:
    """One message to send: an alert that fired or a condition that cleared."""

    id: str
    kind: str  # "alert" or "resolved"
    rule: str
    shards: tuple[int, ...]
    title: str
    body: str
    epoch: int
    node: str
    ts: float
    #: When the condition began, where its rule knows (a shard offline since its last
    #: heartbeat): earlier than `ts` by the rule's threshold.
    since: float | None = None

    @property
    def content(self) -> str:
        return f"**{self.title}**\n{self.body}"


class Sink(Protocol):
    @property
    def name(self) -> str:
        """The sink's name in the delivery outcomes of the `alerts` list."""

    async def send(self, alert: Alert) -> None:
        """Deliver the alert or raise."""

    async def close(self) -> None:
        """Release what the sink holds (a session); called once on stop."""


class LogSink:
    """Writes alerts to the `shardmon.alerts` log: always there, even with no Discord."""

    name = "log"

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger("shardmon.alerts")

    async def send(self, alert: Alert) -> None:
        level = logging.INFO if alert.kind == "resolved" else logging.WARNING
        body = alert.body.replace("\n", " | ")
        shards = ",".join(map(str, alert.shards))
        self.logger.log(
            level, "%s | %s [%s %s shards=%s epoch=%d]",
            alert.title, body, alert.kind, alert.rule, shards, alert.epoch,
        )  # fmt: skip

    async def close(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """Attempts per sink, the first backoff (doubling), and the bound on each attempt."""

    attempts: int = 3
    backoff_s: float = 1.0
    attempt_timeout_s: float = 10.0


async def _deliver_one(sink: Sink, alert: Alert, policy: DeliveryPolicy) -> str:
    problem = ""
    for attempt in range(policy.attempts):
        if attempt:
            await asyncio.sleep(policy.backoff_s * 2 ** (attempt - 1))
        try:
            async with asyncio.timeout(policy.attempt_timeout_s):
                await sink.send(alert)
            return "ok"
        except Exception as exc:  # noqa: BLE001 - any sink failure is retried, then reported
            problem = f"{type(exc).__name__}: {exc}"[:300]
            log.warning(
                "sink %s failed (attempt %d/%d): %s",
                sink.name,
                attempt + 1,
                policy.attempts,
                problem,
            )
    return f"failed after {policy.attempts} attempts: {problem}"


async def deliver(sinks: list[Sink], alert: Alert, policy: DeliveryPolicy) -> dict[str, str]:
    """Send to every sink at once; returns sink name -> "ok" or what went wrong."""
    outcomes = await asyncio.gather(*(_deliver_one(sink, alert, policy) for sink in sinks))
    return {sink.name: outcome for sink, outcome in zip(sinks, outcomes, strict=True)}
