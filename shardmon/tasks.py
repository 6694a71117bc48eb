"""Background tasks that neither vanish nor fail silently.

asyncio keeps only a weak reference to a task: one nobody holds can be collected mid-run, and
one that fails says nothing until it is collected. `spawn()` keeps every task until it ends and
logs its failure (as python-discord's bot-core does); a `TaskSet` does the same for one owner's
tasks and stops them together.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["Stopping", "TaskSet", "spawn"]

log = logging.getLogger(__name__)
T = TypeVar("T")


class TaskSet:
    """The background tasks of one owner (a monitor, an alerter): kept, logged, stopped."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, work: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
        """Run `work` in the background; its failure is logged with `name`."""
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._ended)
        return task

    def _ended(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed", task.get_name(), exc_info=task.exception())

    def __len__(self) -> int:
        return len(self._tasks)

    @property
    def names(self) -> set[str]:
        """The names of the tasks still running."""
        return {task.get_name() for task in self._tasks if not task.done()}

    async def cancel(self) -> None:
        """Cancel every task and wait until each has ended, however long it takes to unwind."""
        tasks = set(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    async def wait(self, timeout_s: float) -> None:
        """Wait up to `timeout_s` for the tasks to end, then cancel those still running and
        give them a second to unwind."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout_s)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=1)


_process_tasks = TaskSet()


def spawn(work: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
    """Run `work` in the background for as long as the process: kept, and logged if it fails."""
    return _process_tasks.spawn(work, name)


class Stopping:
    """The stop signal of a monitor's loops, and their wait between ticks.

    `pause()` is a plain `asyncio.sleep`, which a simulated clock (SimCord's `advance_time`,
    a test's) can drive; `set()` cuts every pause short at once. A wait on an event under
    `asyncio.wait_for` would end early just as well, but no simulator can tell it from a hang.
    """

    def __init__(self) -> None:
        self._set = False
        self._sleeping: set[asyncio.Task[Any]] = set()

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        """Stop: every loop ends at its next check, and those pausing wake now."""
        self._set = True
        for task in self._sleeping:
            task.cancel(_WAKE)

    async def pause(self, seconds: float) -> None:
        """Sleep `seconds`, or until `set()`."""
        task = asyncio.current_task()
        if self._set or task is None:
            return
        self._sleeping.add(task)
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError as cancelled:
            if cancelled.args != (_WAKE,):
                raise
            task.uncancel()  # woken by `set()`, not cancelled: the loop ends by its check
        finally:
            self._sleeping.discard(task)


_WAKE = "shardmon: stopping"
