"""The fleet's clock: Redis's, as measured from this host.

Every time that is compared across hosts (heartbeat, restart and gateway-event scores, rollup
minutes, the leader's "now") is fleet time: Redis `TIME`, measured once in a while and carried
between measurements by this host's monotonic clock, so that a host whose wall clock is wrong,
or jumps, still writes times every other host agrees with.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

__all__ = ["CLOCK_REFRESH_S", "CLOCK_SKEW_WARN_S", "ClockReading", "FleetClock"]

#: A host whose clock is off Redis's by more than this is logged and shown (the default of
#: `SHARDMON_CLOCK_SKEW_WARN_S`): NTP keeps hosts within milliseconds.
CLOCK_SKEW_WARN_S = 2.0

#: How often a monitor measures its offset from Redis again (NTP steps, a paused VM).
CLOCK_REFRESH_S = 300.0
#: Round trips per measurement: the one with the shortest round trip is kept.
TRIES = 3

TimeReply = tuple[int, int] | list[int] | list[str]


@dataclass(frozen=True, slots=True)
class ClockReading:
    """One measurement: Redis's time, this host's wall and monotonic times at the midpoint of
    the round trip, and how long the round trip took."""

    redis_s: float
    host_s: float
    monotonic_s: float
    round_trip_s: float

    @property
    def skew_s(self) -> float:
        """This host's wall clock minus Redis's: positive when the host runs ahead."""
        return self.host_s - self.redis_s


def _seconds(reply: TimeReply) -> float:
    seconds, micros = reply
    return int(seconds) + int(micros) / 1e6


class FleetClock:
    """Redis's time on this host. Before its first measurement it is this host's wall clock
    (`measured` is False); `now()` never waits on Redis."""

    def __init__(self) -> None:
        self.reading: ClockReading | None = None
        self._retry_at = 0.0  # monotonic: after a refusal of TIME, when to ask again

    @property
    def measured(self) -> bool:
        return self.reading is not None

    @property
    def skew_s(self) -> float | None:
        """This host's wall clock minus Redis's at the last measurement (None: never measured)."""
        return None if self.reading is None else self.reading.skew_s

    @property
    def due(self) -> bool:
        """Whether a measurement is due (never measured, or `CLOCK_REFRESH_S` old)."""
        now, reading = time.monotonic(), self.reading
        if now < self._retry_at:
            return False
        return reading is None or now - reading.monotonic_s >= CLOCK_REFRESH_S

    def refused(self) -> None:
        """Redis refused TIME (an ACL): keep what there is, ask again in `CLOCK_REFRESH_S`."""
        self._retry_at = time.monotonic() + CLOCK_REFRESH_S

    def now(self) -> float:
        """Fleet time in epoch seconds."""
        reading = self.reading
        if reading is None:
            return time.time()
        return reading.redis_s + (time.monotonic() - reading.monotonic_s)

    def to_fleet(self, host_s: float) -> float:
        """A time this host's wall clock gave (an event's `timestamp`) in fleet time."""
        return host_s if self.reading is None else host_s - self.reading.skew_s

    async def measure(self, redis_time: Callable[[], Awaitable[TimeReply]]) -> ClockReading:
        """Measure Redis's time (`redis_time` is a client's `time`) and keep the reading of the
        shortest round trip; a Redis failure propagates and leaves the last reading."""
        readings = []
        for _ in range(TRIES):
            wall, started = time.time(), time.monotonic()
            readings.append(_reading(await redis_time(), wall, started))
        return self._keep(readings)

    def measure_sync(self, redis_time: Callable[[], TimeReply]) -> ClockReading:
        """`measure()` for a blocking client (the seed's log functions)."""
        readings = []
        for _ in range(TRIES):
            wall, started = time.time(), time.monotonic()
            readings.append(_reading(redis_time(), wall, started))
        return self._keep(readings)

    def _keep(self, readings: list[ClockReading]) -> ClockReading:
        self.reading = min(readings, key=lambda reading: reading.round_trip_s)
        return self.reading


def _reading(reply: TimeReply, wall: float, started: float) -> ClockReading:
    """A TIME reply sent at `wall` (host) and `started` (monotonic): its midpoint."""
    round_trip = time.monotonic() - started
    return ClockReading(
        redis_s=_seconds(reply),
        host_s=wall + round_trip / 2,
        monotonic_s=started + round_trip / 2,
        round_trip_s=round_trip,
    )
