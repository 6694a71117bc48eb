"""discord.py's view of each shard's gateway, fed into a `GatewayTracker`.

- Connections: the cog's listeners pass on `on_shard_connect`, `on_shard_ready`,
  `on_shard_resumed` and `on_shard_disconnect` (their unsharded twins for a plain `Bot`).
- Dispatches: discord.py dispatches `socket_event_type` for every gateway event, but without
  its shard. Each shard's websocket counts the dispatches it received (its sequence number), so
  on an event `GatewayWatch` finds which shards' numbers moved; it looks at most once a second
  (a busy bot receives thousands of events a second), and once more before each sample, so a
  dispatch age is right to a second. discord.py keeps that number on an internal object
  (`ShardInfo._parent.ws.sequence`): where it is missing, the dispatch age is unknown, and the
  zombie rule leaves that shard alone.
- Stalls: discord.py's heartbeat thread logs "heartbeat blocked" when the event loop did not
  run its heartbeat for 10 s, and the loop logs "Can't keep up" when an ACK came 10 s late;
  `HeartbeatWarnings`, a handler on the `discord.gateway` logger, counts them per shard. They
  reach it only where that logger lets warnings through (Python's default).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

import discord

from shardmon.gateway import GatewayTracker

__all__ = ["GatewayWatch", "HeartbeatWarnings"]

#: How often, at most, an event makes the watch look at the shards' sequence numbers.
ATTRIBUTE_EVERY_S = 1.0
#: The start of discord.py's KeepAliveHandler warnings (`block_msg`, `behind_msg`); its voice
#: twin says "voice heartbeat", and is not a shard's.
_STALL_WARNINGS = ("Shard ID %s heartbeat blocked", "Can't keep up, shard ID %s websocket")


class HeartbeatWarnings(logging.Handler):
    """Counts discord.py's stall warnings per shard on a tracker (from any thread)."""

    def __init__(self, tracker: GatewayTracker, default_shard: int) -> None:
        super().__init__(logging.WARNING)
        self.tracker = tracker
        self.default_shard = default_shard  # an unsharded bot's warnings say "Shard ID None"

    def emit(self, record: logging.LogRecord) -> None:
        if not (isinstance(record.msg, str) and record.msg.startswith(_STALL_WARNINGS)):
            return
        shard = record.args[0] if isinstance(record.args, tuple) and record.args else None
        self.tracker.stalled(shard if isinstance(shard, int) else self.default_shard)


class GatewayWatch:
    """The gateway state of the bot's local shards: a tracker, its stall handler, and the
    attribution of dispatches to shards.

    Args:
        bot: the bot (sharded or not).
        shard_ids: the shards this process runs.
        wall: epoch seconds for the `last_*` times (the fleet's clock; the host's by default).
    """

    def __init__(
        self,
        bot: discord.Client,
        shard_ids: Iterable[int],
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.bot = bot
        self.tracker = GatewayTracker(shard_ids, wall=wall)
        shards = self.tracker.shards
        self.warnings = HeartbeatWarnings(self.tracker, shards[0] if shards else 0)
        self._sequences: dict[int, int] = {}
        self._last_event: float | None = None  # monotonic
        self._looked_at = 0.0

    def install(self) -> None:
        logging.getLogger("discord.gateway").addHandler(self.warnings)

    def uninstall(self) -> None:
        logging.getLogger("discord.gateway").removeHandler(self.warnings)

    def event(self) -> None:
        """One gateway event arrived (`on_socket_event_type`)."""
        now = time.monotonic()
        self._last_event = now
        if now - self._looked_at >= ATTRIBUTE_EVERY_S:
            self._attribute(now)

    def before_sample(self) -> None:
        """Credit the dispatches since the last look (to the last event's time)."""
        if self._last_event is not None:
            self._attribute(self._last_event)

    def _attribute(self, at: float) -> None:
        self._looked_at = time.monotonic()
        for shard, websocket in self._websockets().items():
            sequence = getattr(websocket, "sequence", None)
            if isinstance(sequence, int) and sequence != self._sequences.get(shard):
                self._sequences[shard] = sequence
                self.tracker.dispatched(shard, at)

    def _websockets(self) -> dict[int, object]:
        if isinstance(self.bot, discord.AutoShardedClient):
            return {
                shard: getattr(getattr(info, "_parent", None), "ws", None)
                for shard, info in self.bot.shards.items()
            }
        return {self.bot.shard_id or 0: getattr(self.bot, "ws", None)}
