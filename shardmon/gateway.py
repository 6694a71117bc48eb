"""Each local shard's gateway connection, from plain calls: what `Sample.gateway` carries.

The cog calls it from discord.py's events (connect, ready, resumed, disconnect, dispatches)
and from discord.py's heartbeat warnings; anything else that knows a shard's gateway can too.
Durations come from a monotonic clock, so a host's wall clock never skews them.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from shardmon.models import GatewayState

__all__ = [
    "COUNT_WINDOW_S",
    "NOT_A_SERVER_ID",
    "GatewayTracker",
    "parse_guild_id",
    "shard_for_guild",
]

#: `disconnects_1h` and `stalls_1h` count over this sliding window.
COUNT_WINDOW_S = 3600.0


#: What a member is told when a server id is not one.
NOT_A_SERVER_ID = (
    "That is not a server id: copy it with Developer Mode on (a number of 17 to 20 digits)."
)


def shard_for_guild(guild_id: int, shard_count: int) -> int:
    """The shard Discord routes a server's events to: `(guild_id >> 22) % shard_count`."""
    return (guild_id >> 22) % shard_count


def parse_guild_id(text: str) -> int:
    """A server id as a member types it (a snowflake: 15 to 20 digits, below 2**64);
    ValueError with NOT_A_SERVER_ID otherwise."""
    text = text.strip()
    if text.isascii() and text.isdigit() and 15 <= len(text) <= 20 and int(text) < 2**64:
        return int(text)
    raise ValueError(NOT_A_SERVER_ID)


@dataclass(slots=True)
class _Shard:
    connected: bool = False
    changed_at: float = 0.0  # monotonic: when `connected` last changed (or tracking began)
    last_connect: float | None = None  # wall clock, for people
    last_disconnect: float | None = None
    last_ready: float | None = None
    last_resume: float | None = None
    dispatched_at: float | None = None  # monotonic
    disconnects: deque[float] = field(default_factory=deque)
    disconnects_total: int = 0
    stalls: deque[float] = field(default_factory=deque)
    stalls_total: int = 0


class GatewayTracker:
    """The gateway state of this process's shards.

    Every method may be called from any thread (discord.py warns of a blocked heartbeat from
    its heartbeat thread, while the event loop is the one blocked).

    Args:
        shards: the shard ids this process runs.
        clock: monotonic seconds (durations and windows); `time.monotonic` by default.
        wall: epoch seconds (the `last_*` times).
    """

    def __init__(
        self,
        shards: Iterable[int],
        *,
        clock: Callable[[], float] | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        # `time.monotonic` looked up at each call, not bound here: a simulated clock (SimCord's)
        # replaces it after this module is imported.
        self._clock = clock or (lambda: time.monotonic())
        self._wall = wall
        now = self._clock()
        self._shards = {shard: _Shard(changed_at=now) for shard in shards}
        self._lock = threading.Lock()

    @property
    def shards(self) -> list[int]:
        return list(self._shards)

    def _shard(self, shard: int) -> _Shard | None:
        return self._shards.get(shard)  # another process's shard (a stray event): ignored

    def _now(self) -> float:
        return round(self._wall(), 3)  # a millisecond is enough for people, and short in JSON

    def _set(self, shard: int, connected: bool) -> _Shard | None:
        state = self._shard(shard)
        if state is not None and state.connected != connected:
            state.connected = connected
            state.changed_at = self._clock()
        return state

    def connected(self, shard: int) -> None:
        """A new session (discord.py's `on_shard_connect`: READY after an IDENTIFY)."""
        self._up(shard, "last_connect")

    def ready(self, shard: int) -> None:
        """The shard has its guilds (`on_shard_ready`)."""
        self._up(shard, "last_ready")

    def resumed(self, shard: int) -> None:
        """The session was resumed (`on_shard_resumed`): connected again, no IDENTIFY spent."""
        self._up(shard, "last_resume")

    def _up(self, shard: int, stamp: str) -> None:
        """Connected, with the time of the event in `stamp` (a `last_*` field)."""
        with self._lock:
            if (state := self._set(shard, True)) is not None:
                setattr(state, stamp, self._now())

    def disconnected(self, shard: int) -> None:
        """The websocket closed (`on_shard_disconnect`); discord.py reconnects by itself."""
        with self._lock:
            state = self._shard(shard)
            if state is None:
                return
            if state.connected:  # discord.py may say it twice for one close
                state.disconnects.append(self._clock())
                state.disconnects_total += 1
            self._set(shard, False)
            state.last_disconnect = self._now()

    def dispatched(self, shard: int, at: float | None = None) -> None:
        """A gateway dispatch reached the shard (at monotonic time `at`, default now)."""
        with self._lock:
            if (state := self._shard(shard)) is not None:
                state.dispatched_at = self._clock() if at is None else at

    def stalled(self, shard: int) -> None:
        """discord.py warned that the shard's heartbeat was blocked, or could not keep up."""
        with self._lock:
            if (state := self._shard(shard)) is not None:
                state.stalls.append(self._clock())
                state.stalls_total += 1

    def state(self, shard: int) -> GatewayState | None:
        """The shard's state now, for its sample; None for a shard this process does not run."""
        with self._lock:
            state = self._shard(shard)
            if state is None:
                return None
            now = self._clock()
            for times in (state.disconnects, state.stalls):
                while times and times[0] <= now - COUNT_WINDOW_S:
                    times.popleft()
            dispatched = state.dispatched_at
            return GatewayState(
                connected=state.connected,
                since_s=round(max(0.0, now - state.changed_at), 3),
                last_connect=state.last_connect,
                last_disconnect=state.last_disconnect,
                last_ready=state.last_ready,
                last_resume=state.last_resume,
                disconnects_1h=len(state.disconnects),
                disconnects_total=state.disconnects_total,
                dispatch_age_s=None if dispatched is None else round(max(0.0, now - dispatched), 3),
                stalls_1h=len(state.stalls),
                stalls_total=state.stalls_total,
            )
