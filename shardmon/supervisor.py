"""`shardmon run -- <bot command>`: runs the bot as a child process and restarts it when it exits,
knowing what a restart costs on Discord.

Each (re)start of the child is a restart event of its cause, recorded when the cause happens
(journaled first, so a Redis outage loses none): `startup`, `crash` (the exit code or signal,
and the tail of the child's stderr as its traceback), `manual` (SIGHUP, or `shardmon restart`),
`deployment` (the version file changed), `scheduled` (a configured time). Between a crash and
its restart the supervisor waits as Kubernetes' CrashLoopBackOff does (10 s doubling to 5 min,
back to 10 s after 10 min of healthy running), holds a restart while Discord's session start
limit has fewer starts left than a floor, and pauses after a restart storm until resumed. What
it is doing is written to the `supervisors` hash every sampling interval, for `shardmon status`,
the dashboard and the leader's `restarts_held` rule, which alerts a hold or a pause once.

The supervisor runs the sampling monitor of its child's shards: it samples them (the child's
resident memory, the machine's CPU and memory) while the child runs, unless the child samples
them itself (a bot that loads the extension): then it stands aside. The child is told it is
supervised (`SHARDMON_SUPERVISOR`), so that its extension logs no startup and no crash of its
own: the supervisor has.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shardmon.failures import REDIS_FAILURES, classify
from shardmon.models import MalformedData, RunRequest, RunState, SessionStartLimit, crash_metadata
from shardmon.monitor import SystemMonitor
from shardmon.render import format_uptime
from shardmon.tasks import Stopping, TaskSet

if TYPE_CHECKING:
    from shardmon.store import Store

__all__ = [
    "SUPERVISOR_ENV",
    "RunPolicy",
    "Supervisor",
    "die_with_parent",
    "exit_words",
    "next_scheduled",
]

log = logging.getLogger(__name__)

#: Set in the child's environment to its supervisor's node: the child's extension then logs
#: no startup or crash of its own (`shardmon.api`).
SUPERVISOR_ENV = "SHARDMON_SUPERVISOR"
#: How much of the child's stderr is kept for a crash's traceback (its tail is recorded).
STDERR_KEPT = 16 * 1024
#: A child that cannot be started: the shell's codes (no such file; not executable).
NOT_FOUND, NOT_EXECUTABLE = 127, 126

BudgetReader = Callable[[], Awaitable[SessionStartLimit | None]]


def die_with_parent() -> None:
    """In a child, before exec: ask Linux to SIGTERM it when its parent dies, so that a
    killed supervisor, demo or test leaves no orphans (a no-op elsewhere)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


@dataclass(frozen=True, slots=True)
class RunPolicy:
    """How the supervisor restarts its child (the `SHARDMON_RUN_*` settings).

    Args:
        backoff_s: the wait before restarting a child that crashed once.
        backoff_max_s: the longest wait, however many crashes in a row.
        backoff_reset_s: a child that ran this long before crashing starts the back-off over.
        max_restarts: crashes within `window_s` that pause restarts until resumed.
        window_s: the storm window (the restart storm rule's).
        stop_timeout_s: how long a child is given to exit after SIGTERM, before SIGKILL.
        restart_on_exit_0: restart a child that exited with code 0 (else the supervisor ends).
        identify_floor: session starts that must be left for a (re)start to go ahead.
        version_file: a file whose text is the child's version; a change restarts it as a
            `deployment`, and is recorded as one when the child exits on its own.
        schedule: times of day (UTC, `HH:MM`) at which the child is restarted (`scheduled`).
    """

    backoff_s: float = 10
    backoff_max_s: float = 300
    backoff_reset_s: float = 600
    max_restarts: int = 3
    window_s: float = 3600
    stop_timeout_s: float = 30
    restart_on_exit_0: bool = False
    identify_floor: int = 2
    version_file: Path | None = None
    schedule: tuple[str, ...] = ()

    def backoff(self, failures: int) -> float:
        """The wait before the restart after `failures` crashes in a row: `backoff_s`, doubled
        for each crash after the first, at most `backoff_max_s`."""
        if failures <= 0:
            return 0.0
        return float(min(self.backoff_max_s, self.backoff_s * 2 ** min(failures - 1, 60)))


def exit_words(returncode: int) -> str:
    """`exited with code 3`, `killed by SIGKILL`: a child's end in words."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with code {returncode}"


def next_scheduled(schedule: Sequence[str], after: float) -> float | None:
    """The first of the daily `HH:MM` (UTC) times strictly after `after`; None without any."""
    if not schedule:
        return None
    base = datetime.fromtimestamp(after, UTC).replace(second=0, microsecond=0)
    times = []
    for text in schedule:
        hours, minutes = (int(part) for part in text.split(":"))
        moment = base.replace(hour=hours, minute=minutes)
        if moment.timestamp() <= after:
            moment += timedelta(days=1)
        times.append(moment.timestamp())
    return min(times)


@dataclass(slots=True)
class _Restart:
    """A restart of the running child that was asked for, and what to record of it."""

    type: str  # manual, deployment or scheduled
    metadata: dict[str, Any] = field(default_factory=dict)
    version: str | None = None


class _Tail:
    """The last STDERR_KEPT bytes of what the child wrote to stderr."""

    def __init__(self) -> None:
        self.kept = bytearray()

    def feed(self, chunk: bytes) -> None:
        self.kept += chunk
        del self.kept[:-STDERR_KEPT]

    def text(self) -> str:
        return self.kept.decode("utf-8", errors="replace")


class Supervisor:
    """Runs `command` as a child for `monitor`'s shards until stopped; see the module.

    Args:
        command: the child's program and arguments.
        monitor: this process's monitor (its config names the shards, the node and the
            interval at which requests are taken, the state written and the child sampled).
        policy: back-off, storm pause, stop timeout, version file and schedule.
        read_budget: reads the bot's session start limit (None: unknown, restarts go ahead).
        env: the child's environment (this process's by default).
    """

    def __init__(
        self,
        command: Sequence[str],
        monitor: SystemMonitor,
        policy: RunPolicy,
        *,
        read_budget: BudgetReader | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.command = list(command)
        self.monitor = monitor
        self.policy = policy
        self.read_budget = read_budget
        self.config = monitor.config
        self.store = monitor.store
        self.env = dict(os.environ if env is None else env)
        self.env[SUPERVISOR_ENV] = self.config.node
        self.env["SHARDMON_SHARD_IDS"] = ",".join(map(str, self.config.shard_ids))
        self.child: asyncio.subprocess.Process | None = None
        self.state = "running"
        self.reason = ""
        self.since = self.store.clock.now()
        self.until: float | None = None
        self.failures = 0
        #: The wait before each restart after a crash, in order; None: paused instead.
        self.waits: list[float | None] = []
        self._crashes: deque[float] = deque()  # monotonic times of the crashes in the window
        self._wake = asyncio.Event()
        self._stop_signal: int | None = None
        self._restart: _Restart | None = None
        self._resume = False
        self._version = self._read_version()
        self._next_scheduled = next_scheduled(policy.schedule, time.time())
        self._tasks = TaskSet()
        self._stopping = Stopping()

    # -- the loop ---------------------------------------------------------------------------

    async def run(self) -> int:
        """Run and restart the child until SIGTERM or SIGINT (or a clean exit, unless
        `restart_on_exit_0`); returns the exit code to end with: the child's (128 + the signal
        that killed it), 127/126 for a command that cannot be started."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stop, signum)
        loop.add_signal_handler(signal.SIGHUP, self.ask, _Restart("manual", {"reason": "SIGHUP"}))
        await self.monitor.start(sample=False)
        self._tasks.spawn(self._poll(), name="shardmon-run-poll")
        code = 0
        cause: _Restart | None = _Restart("startup")
        try:
            while await self._gates():
                try:
                    child = await self._spawn()
                except OSError as exc:
                    code = NOT_FOUND if isinstance(exc, FileNotFoundError) else NOT_EXECUTABLE
                    print(f"shardmon run: cannot start {self.command[0]!r}: "
                          f"{exc.strerror or exc}", file=sys.stderr, flush=True)  # fmt: skip
                    break
                if self._restart is not None:  # asked for while no child ran: this start is it
                    cause = cause or self._restart
                    self._restart = None
                if cause is not None:
                    await self._record(cause)
                    cause = None
                code = await self._watch(child)
                if self._stop_signal is not None or self.state == "stopped":
                    break
        finally:
            await self._end()
        return code

    def ask(self, restart: _Restart) -> None:
        """Restart the running child (now: at the next start, where none runs)."""
        self._restart = restart
        self._wake.set()

    def _stop(self, signum: int) -> None:
        if self._stop_signal is None:
            log.info("shardmon run: %s, stopping the child", signal.Signals(signum).name)
        self._stop_signal = signum
        self._wake.set()

    async def _gates(self) -> bool:
        """Wait for what holds the next start back: a storm pause, a back-off, the IDENTIFY
        budget. False when a stop came meanwhile."""
        while self._stop_signal is None:
            if self._paused():
                await self._publish("paused", self.reason)
                await self._wait(None)
                continue
            backing_off = self.state == "backoff" and self.until is not None
            if backing_off and self._restart is None and self.store.clock.now() < (self.until or 0):
                await self._wait(self.until)  # (a restart asked for does not wait)
                continue
            hold = await self._budget_hold()
            if hold is not None:
                until, reason = hold
                await self._publish("held", reason, until)
                await self._wait(until)
                continue
            return True
        return False

    def _paused(self) -> bool:
        """In a restart storm (`max_restarts` crashes within the window), until resumed (or
        a restart is asked for)."""
        if self._resume or self._restart is not None:
            self._resume = False
            self._crashes.clear()
            self.failures = 0
            if self.state == "paused":
                log.info("shardmon run: restarts resumed")
            return False
        horizon = time.monotonic() - self.policy.window_s
        while self._crashes and self._crashes[0] < horizon:
            self._crashes.popleft()
        if len(self._crashes) < self.policy.max_restarts:
            return False
        if self.state != "paused":
            shards = ",".join(map(str, self.config.shard_ids))
            window = format_uptime(self.policy.window_s)
            self.reason = (f"{len(self._crashes)} crashes within {window}: restarts paused; "
                           f"lift with `shardmon run --resume --shards {shards}`")  # fmt: skip
            log.error("shardmon run: %s", self.reason)
        return True

    async def _budget_hold(self) -> tuple[float, str] | None:
        """(until when, why) if Discord's session start limit has fewer starts left than the
        floor and resets later; None otherwise, or when it cannot be read."""
        if self.read_budget is None or self.policy.identify_floor <= 0:
            return None
        try:
            limit = await self.read_budget()
        except Exception as exc:  # noqa: BLE001 - REST or Redis: unknown, the restart goes ahead
            log.warning("shardmon run: session start limit unknown (%s): starting anyway", exc)
            return None
        if limit is None or limit.remaining >= self.policy.identify_floor:
            return None
        now = self.store.clock.now()
        if limit.resets_at <= now:
            return None
        reason = (f"{limit.remaining:,} of {limit.total:,} session starts left, below "
                  f"{self.policy.identify_floor}: the restart waits for Discord's reset, in "
                  f"{format_uptime(limit.resets_at - now)}")  # fmt: skip
        if self.state != "held":
            log.error("shardmon run: %s", reason)
        return limit.resets_at + 1.0, reason

    async def _wait(self, until: float | None) -> None:
        """Until `until` (fleet time; None: until woken), or a stop, request or resume."""
        self._wake.clear()
        if self._stop_signal is not None or self._restart is not None or self._resume:
            return  # came while the caller was publishing: nothing to wait for
        timeout = None if until is None else max(0.0, until - self.store.clock.now())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wake.wait()

    async def _spawn(self) -> asyncio.subprocess.Process:
        child = await asyncio.create_subprocess_exec(
            *self.command,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=die_with_parent,
            start_new_session=True,  # the terminal's Ctrl-C reaches the supervisor, which stops it
        )
        self.child = child
        self._tail = _Tail()
        self._relay = asyncio.ensure_future(self._relay_stderr(child, self._tail))
        self._started = time.monotonic()
        self.monitor.sampler.started_at = self.store.clock.now()
        self.monitor.sampler.collector.follow(child.pid)
        await self._publish("running", "")
        log.info("shardmon run: started %s (pid %d)", self.command[0], child.pid)
        return child

    async def _watch(self, child: asyncio.subprocess.Process) -> int:
        """Until the child exits, a stop or a restart asked for; records what ended it and
        sets up what follows (a back-off, a pause, nothing). Returns the exit code so far."""
        exited = asyncio.ensure_future(child.wait())
        while not exited.done():
            self._wake.clear()
            if self._stop_signal is None and self._restart is None:
                woken = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait({exited, woken}, return_when=asyncio.FIRST_COMPLETED)
                woken.cancel()
            if exited.done():
                break
            if self._stop_signal is not None:
                return self._shell_code(await self._stop_child(child))
            if self._restart is not None:
                restart, self._restart = self._restart, None
                await self._stop_child(child)
                await self._record(restart)
                self.failures = 0
                return 0
        returncode = await exited
        await self._relay
        self.child = None
        ran = time.monotonic() - self._started
        words = exit_words(returncode)
        version = self._read_version()
        if version is not None and version != self._version:  # it exited for a new version
            moved = {"from": self._version, "exit": words}
            await self._record(_Restart("deployment", moved, version))
            self._version, self.failures = version, 0
            return self._shell_code(returncode)
        if returncode == 0 and not self.policy.restart_on_exit_0:
            log.info("shardmon run: the child exited with code 0: not restarted")
            await self._publish("stopped", "exited with code 0")
            return 0
        self.failures = 1 if ran >= self.policy.backoff_reset_s else self.failures + 1
        self._crashes.append(time.monotonic())
        delay = None if self._paused() else self.policy.backoff(self.failures)
        if returncode == 0:
            await self._record(_Restart("manual", {"reason": "exited with code 0"}))
        else:
            metadata: dict[str, Any] = {
                **crash_metadata(f"{self.command[0]} {words}", self._tail.text()),
                "exit_code": returncode, "ran_s": round(ran, 1), "restart_in_s": delay,
            }  # fmt: skip
            await self._record(_Restart("crash", metadata))
        self.waits.append(delay)
        if delay is None:
            await self._publish("paused", self.reason)
        else:
            self.reason = f"{words}; crash {self.failures} in a row: restarting in {delay:g} s"
            log.warning("shardmon run: the child %s", self.reason)
            await self._publish("backoff", self.reason, self.store.clock.now() + delay)
        return self._shell_code(returncode)

    async def _stop_child(self, child: asyncio.subprocess.Process) -> int:
        """SIGTERM, `stop_timeout_s` to exit, then SIGKILL; the child's return code."""
        if child.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.terminate()
            try:
                async with asyncio.timeout(self.policy.stop_timeout_s):
                    await child.wait()
            except TimeoutError:
                log.warning("shardmon run: the child ignored SIGTERM for %g s: SIGKILL",
                            self.policy.stop_timeout_s)  # fmt: skip
                with contextlib.suppress(ProcessLookupError):
                    child.kill()
                await child.wait()
        await self._relay
        self.child = None
        assert child.returncode is not None
        return child.returncode

    @staticmethod
    def _shell_code(returncode: int) -> int:
        """A return code as a shell reports it: a signal's death is 128 + its number."""
        return 128 - returncode if returncode < 0 else returncode

    async def _relay_stderr(self, child: asyncio.subprocess.Process, tail: _Tail) -> None:
        """Pass the child's stderr through unchanged, keeping its tail for a crash."""
        assert child.stderr is not None
        out = sys.stderr.buffer
        while chunk := await child.stderr.read(65536):
            tail.feed(chunk)
            with contextlib.suppress(OSError, ValueError):  # a closed stderr: keep the tail
                out.write(chunk)
                out.flush()

    # -- what it records and says -------------------------------------------------------------

    async def _record(self, restart: _Restart) -> None:
        """A restart event of its cause (journaled first: an outage loses none)."""
        try:
            await self.monitor.log_restart(restart.type, restart.metadata, version=restart.version)
        except Exception:
            log.exception("shardmon run: the %s restart could not be recorded", restart.type)

    async def _publish(self, state: str, reason: str, until: float | None = None) -> None:
        """Keep and write what the supervisor is doing (an outage: written at the next poll)."""
        if state != self.state:
            self.since = self.store.clock.now()
        self.state, self.reason, self.until = state, reason, until
        with contextlib.suppress(*REDIS_FAILURES):
            await self.store.report_supervisor(self.snapshot())

    def snapshot(self) -> RunState:
        return RunState(
            node=self.config.node, shards=tuple(self.config.shard_ids), state=self.state,
            since=self.since, until=self.until, reason=self.reason[:500], failures=self.failures,
            pid=None if self.child is None else self.child.pid, seen=self.store.clock.now(),
        )  # fmt: skip

    # -- every sampling interval: requests, version, schedule, state, samples ------------------

    async def _poll(self) -> None:
        interval = self.config.sample_interval_s
        with contextlib.suppress(*REDIS_FAILURES):
            await self.store.forget_stale_supervisors(self.store.clock.now(), self._replaced)
        while not self._stopping.is_set():
            try:
                await self._poll_once()
            except REDIS_FAILURES as exc:
                log.warning("shardmon run: Redis unavailable (%s); the child is still watched",
                            classify(exc))  # fmt: skip
            except Exception:  # the poll must outlive any one bad round; logged here
                log.exception("shardmon run: poll failed")
            await self._stopping.pause(interval)

    async def _poll_once(self) -> None:
        for request in await self.store.take_requests(self.config.shard_ids):
            self._take(request)
        version = self._read_version()
        if self.child is not None and version is not None and version != self._version:
            log.info("shardmon run: version %s -> %s: restarting the child", self._version, version)
            self.ask(_Restart("deployment", {"from": self._version}, version))
            self._version = version
        now = time.time()
        if self._next_scheduled is not None and now >= self._next_scheduled:
            self._next_scheduled = next_scheduled(self.policy.schedule, now)
            if self.child is not None:
                self.ask(_Restart("scheduled", {"reason": "a restart at a scheduled time"}))
        await self.store.report_supervisor(self.snapshot())
        if self.child is not None and not await self._child_samples_itself():
            await self.monitor.sample_once()  # which writes the journal's and pending ones too
        else:
            await self.monitor.sampler.sync()  # the journal's events, and what is pending

    def _replaced(self, state: RunState) -> bool:
        """An earlier supervisor of these shards on this host whose process is gone: a
        SIGKILLed supervisor could not remove its own entry."""
        host = self.config.node.rpartition(":")[0]
        other_host, _, pid = state.node.rpartition(":")
        mine = set(state.shards) & set(self.config.shard_ids)
        if state.node == self.config.node or not mine or other_host != host or not pid.isdigit():
            return False
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass  # another user's process: alive
        return False

    def _take(self, request: RunRequest) -> None:
        if request.action == "resume":
            log.info("shardmon run: resume asked by %s", request.by or "someone")
            self._resume = True
            self._wake.set()
            return
        log.info("shardmon run: restart asked by %s: %s", request.by or "someone", request.reason)
        self.ask(_Restart("manual", {"reason": request.reason, "requested_by": request.by,
                                     "request": request.id}))  # fmt: skip

    async def _child_samples_itself(self) -> bool:
        """Whether the child's own monitor (the extension) wrote its shards' newest samples."""
        if self.child is None:
            return False
        host = self.config.node.rpartition(":")[0]
        node = f"{host}:{self.child.pid}"
        fresh_after = self.store.clock.now() - 2 * self.config.sample_interval_s
        samples = await self.store.latest_of(self.config.shard_ids)
        return any(s.node == node and s.ts >= fresh_after for s in samples.values())

    def _read_version(self) -> str | None:
        path = self.policy.version_file
        if path is None:
            return None
        try:
            return path.read_text(encoding="utf-8").strip()[:50] or None
        except OSError:
            return None

    async def _end(self) -> None:
        """Stop the child if one runs, forget this supervisor's entry, stop the monitor."""
        if self.child is not None and self.child.returncode is None:
            await self._stop_child(self.child)
        # The event ends the poll even if redis-py swallows a cancellation (as on Python 3.11)
        self._stopping.set()
        await self._tasks.wait(self.config.sample_interval_s + 5)
        with contextlib.suppress(*REDIS_FAILURES):
            await self.store.forget_supervisor(self.config.node)
        await self.monitor.stop()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)


def budget_reader(
    store: Store, rest: Callable[[], Awaitable[tuple[int, Any]]] | None
) -> BudgetReader:
    """Reads the session start limit: from Discord (`rest`: GET /gateway/bot with the bot's
    token) where there is a token, else as the leader last stored it."""

    async def read() -> SessionStartLimit | None:
        if rest is not None:
            status, payload = await rest()
            if status != 200 or not isinstance(payload, dict):
                raise ConnectionError(f"GET /gateway/bot answered {status}")
            try:
                return SessionStartLimit.from_discord(
                    payload.get("session_start_limit"), read_at=store.clock.now()
                )
            except MalformedData as exc:
                raise ConnectionError(str(exc)) from None
        return await store.session_limit()

    return read
