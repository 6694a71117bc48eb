"""`/healthz` and `/livez` of one process, for Kubernetes or compose checks (optional port).

`/healthz` (readiness) is 200 while the process's sampling has ticked within three sample
intervals and Redis answers a PING within a second, else 503 with the reason. `/livez`
(liveness) looks at the sampling loop alone, so that a Redis outage does not make Kubernetes
restart every bot of the fleet at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from shardmon.failures import REDIS_FAILURES

__all__ = ["HealthServer"]

log = logging.getLogger(__name__)


class HealthServer:
    """Serves `/healthz` on `host:port` from what a monitor reports.

    Args:
        last_tick: monotonic time of the last sampling tick (None before the first).
        started: monotonic time the monitor started (the first tick gets as long as any).
        interval_s: the sample interval; three of them without a tick is unhealthy.
        ping: awaits a Redis PING.
    """

    def __init__(
        self,
        last_tick: Callable[[], float | None],
        started: float,
        interval_s: float,
        ping: Callable[[], Awaitable[object]],
        port: int,
        host: str = "0.0.0.0",  # a health check is probed from outside the container
    ) -> None:
        self.last_tick = last_tick
        self.started = started
        self.interval_s = interval_s
        self.ping = ping
        self.port = port
        self.host = host
        self._runner: web.AppRunner | None = None

    async def check(self) -> tuple[bool, dict[str, object]]:
        now = time.monotonic()
        tick = self.last_tick()
        since = now - (tick if tick is not None else self.started)
        loop_ok = since <= 3 * self.interval_s
        try:
            async with asyncio.timeout(1):
                await self.ping()
            redis_ok, redis_state = True, "ok"
        except REDIS_FAILURES as exc:  # our own 1 s bound is an OSError too
            redis_ok, redis_state = False, type(exc).__name__
        report: dict[str, object] = {
            "status": "ok" if loop_ok and redis_ok else "unhealthy",
            "seconds_since_sample": round(since, 1),
            "redis": redis_state,
        }
        return loop_ok and redis_ok, report

    async def _healthz(self, request: web.Request) -> web.Response:
        healthy, report = await self.check()
        return web.Response(
            status=200 if healthy else 503, text=json.dumps(report), content_type="application/json"
        )

    async def _livez(self, request: web.Request) -> web.Response:
        tick = self.last_tick()
        since = time.monotonic() - (tick if tick is not None else self.started)
        alive = since <= 3 * self.interval_s
        report = {"status": "ok" if alive else "stalled", "seconds_since_sample": round(since, 1)}
        return web.Response(
            status=200 if alive else 503, text=json.dumps(report), content_type="application/json"
        )

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/livez", self._livez)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        log.info("health check on http://%s:%d/healthz", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
