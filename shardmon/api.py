"""The seed's API: module-level helpers configured from settings, safe anywhere.

`log_bot_restart`, `log_bot_crash` and `log_deployment` work from a plain script, a deploy hook
or an exception handler: they journal the event (fsynced), then write it to Redis with a
1-second timeout, and never raise. Inside a running event loop the work is handed to one
background thread, so the bot's loop never waits; the thread is joined at interpreter exit.
`get_restart_history` is the seed's synchronous read, for maintenance scripts.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from types import TracebackType
from typing import Any

import redis

from shardmon.clock import FleetClock
from shardmon.connection import create_redis, create_sync_redis
from shardmon.failures import REDIS_FAILURES, classify
from shardmon.journal import Journal
from shardmon.keys import Keys
from shardmon.models import RestartEvent, RestartType, crash_metadata
from shardmon.monitor import SystemMonitor, build_monitor
from shardmon.settings import Settings, load_settings
from shardmon.store import Store, record_restart_sync
from shardmon.supervisor import SUPERVISOR_ENV

__all__ = [
    "claim_process_startup",
    "get_restart_history",
    "get_system_monitor",
    "install_crash_hook",
    "log_bot_crash",
    "log_bot_restart",
    "log_deployment",
    "persist_restart",
]

log = logging.getLogger(__name__)

_writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shardmon-restart-log")
_monitor: SystemMonitor | None = None
_monitor_lock = threading.Lock()
_startup_claimed = False
_crash_hook_installed = False
#: Redis's clock for the helpers of a process without a monitor (a deploy script's).
_process_clock = FleetClock()


@cache
def _settings() -> Settings:
    return load_settings()


def get_system_monitor() -> SystemMonitor:
    """This process's monitor, built from settings on first use (`await monitor.start()`)."""
    global _monitor
    with _monitor_lock:
        if _monitor is None:
            settings = _settings()
            client = create_redis(settings.redis_target())
            _monitor = build_monitor(
                settings.monitor_config(), client, sinks=settings.alert_sinks()
            )
        return _monitor


def claim_process_startup() -> bool:
    """True the first time it is called in this process: a `startup` restart is logged once
    per process, however often an extension is reloaded or the gateway reconnects. Never in a
    child of `shardmon run`: its supervisor logged the start, with its cause."""
    global _startup_claimed
    if os.environ.get(SUPERVISOR_ENV):
        return False
    with _monitor_lock:
        first, _startup_claimed = not _startup_claimed, True
        return first


def install_crash_hook() -> None:
    """Once per process: an error that ends the process (`bot.run()` raising) is logged as a
    crash by `sys.excepthook`, then reported as Python would. It is never removed, because
    `bot.run()` unloads the extensions before the error reaches the top."""
    global _crash_hook_installed
    if os.environ.get(SUPERVISOR_ENV):  # `shardmon run` records the crash, with its stderr
        return
    with _monitor_lock:
        if _crash_hook_installed:
            return
        _crash_hook_installed = True
    previous = sys.excepthook

    def log_crash(
        kind: type[BaseException], error: BaseException, trace: TracebackType | None
    ) -> None:
        if not issubclass(kind, KeyboardInterrupt | SystemExit):
            text = "".join(traceback.format_exception(kind, error, trace))
            log_bot_crash(f"{kind.__name__}: {error}", text)
        previous(kind, error, trace)

    sys.excepthook = log_crash


def log_bot_restart(
    type: RestartType | str = RestartType.MANUAL, metadata: dict[str, Any] | None = None
) -> RestartEvent | None:
    """Log a restart (`startup`, `manual`, `crash`, `deployment` or `scheduled`)."""
    return _log(type, metadata)


def log_bot_crash(error: str | BaseException, traceback_str: str = "") -> RestartEvent | None:
    """Log a crash; the error and traceback are bounded (the traceback keeps its tail)."""
    return _log(RestartType.CRASH, crash_metadata(str(error), traceback_str))


def log_deployment(version: str, changelog: str = "") -> RestartEvent | None:
    """Log a deployment of `version`, with its changelog."""
    return _log(RestartType.DEPLOYMENT, {"changelog": changelog}, version=version)


def _log(
    restart_type: RestartType | str, metadata: dict[str, Any] | None, version: str | None = None
) -> RestartEvent | None:
    try:
        settings = _settings()
        event = settings.monitor_config().event(restart_type, metadata, version=version)
    except Exception:  # the seed's contract: never raise; said in the log instead
        log.exception("restart event not logged")
        return None
    try:
        asyncio.get_running_loop()
        _writer.submit(_persist, settings, event)
    except RuntimeError:  # no running loop (a plain script), or the interpreter is exiting
        _persist(settings, event)
    return event


def persist_restart(event: RestartEvent, settings: Settings | None = None) -> tuple[bool, bool]:
    """Journal the event, then write it to Redis, now: (journaled, in Redis). For deploy
    scripts that want to say what happened (`shardmon log-restart`)."""
    return _persist(settings or _settings(), event)


def _persist(settings: Settings, event: RestartEvent) -> tuple[bool, bool]:
    """Journal first (the durable copy), then Redis; an outage leaves it for the replay."""
    try:
        return _journal_then_redis(settings, event)
    except Exception:  # in the writer thread nobody would see it: say it in the log
        log.exception("restart event %s: unexpected failure while persisting", event.id)
        return False, False


def _journal_then_redis(settings: Settings, event: RestartEvent) -> tuple[bool, bool]:
    """Stamp the event in fleet time, journal it, then record it in Redis."""
    journaled = in_redis = False
    client = failure = None
    try:  # a Cluster client connects as it is made: inside the try
        client = create_sync_redis(settings.redis_target())
    except REDIS_FAILURES as exc:
        failure = classify(exc)
    event = _in_fleet_time(event, client)
    try:
        Journal(settings.journal_path).append(event.to_json())
        journaled = True
    except (OSError, ValueError) as exc:
        log.error("restart event %s not journaled (%s): %s", event.id, settings.journal_path, exc)
    if client is not None:
        try:
            record_restart_sync(client, Keys(settings.deployment), event)
            in_redis = True
        except REDIS_FAILURES as exc:
            failure = classify(exc)
        finally:
            client.close()
    if failure is not None:
        log.warning("restart event %s kept in the journal (%s)", event.id, failure)
    return journaled, in_redis


def _in_fleet_time(event: RestartEvent, client: redis.Redis | None) -> RestartEvent:
    """The event with its fleet time, by this process's clock: the monitor's where it runs,
    else one measured here when due (a process's first event may wait the client's 1 s timeout
    for it; a Redis that does not answer, or refuses TIME, leaves the host's time)."""
    clock = _monitor.store.clock if _monitor is not None else _process_clock
    if client is not None and clock.due:
        try:
            clock.measure_sync(client.time)
        except REDIS_FAILURES:  # the write that follows says what went wrong
            clock.refused()
    if not clock.measured:
        return event
    return event.with_fleet_time(clock.to_fleet(event.host_ts))


def get_restart_history(limit: int = 10) -> list[dict[str, Any]]:
    """The fleet's newest restarts, newest first, for plain scripts (the seed's synchronous
    `get_restart_history`): from Redis, else this host's journal while Redis is down. Inside a
    running event loop it would block the loop, so it refuses: there, await
    `get_system_monitor().get_restart_history(limit)`."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # a plain script: no loop to block
        return _restart_history(_settings(), limit)
    raise RuntimeError(
        "shardmon.get_restart_history() is for plain scripts; inside an event loop, "
        "await get_system_monitor().get_restart_history(limit)"
    )


def _restart_history(settings: Settings, limit: int) -> list[dict[str, Any]]:
    async def read() -> list[RestartEvent]:
        client = create_redis(settings.redis_target(), timeout_s=1, retries=0)
        try:
            return await Store(client, Keys(settings.deployment)).restart_history(limit)
        finally:
            await client.aclose()

    try:
        events = asyncio.run(read())
    except REDIS_FAILURES as exc:  # this host's journal still answers
        log.warning("restart history from the journal: Redis %s", classify(exc))
        events = Journal(settings.journal_path).recent_events(limit)
    return [event.model_dump(mode="json") for event in events]
