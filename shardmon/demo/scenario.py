"""`shardmon demo`: the scenario that a fleet of demo nodes plays.

Each shard is an OS process (`python -m shardmon.demo`, a node with synthetic gateway figures)
under its own `shardmon run`, against `SHARDMON_REDIS_URL`, or an embedded Redis when none is
set. The scenario shows the product: one shard's gateway drops while its process runs on (one
`disconnected` alert, then one "resolved"); one shard crash-loops, its supervisor backs off
(1 s, 2 s) and pauses it at the restart storm (one storm alert, one "held" alert) until the
demo mends it and resumes it; another's memory spikes (one alert, then one "resolved"); the
leading process is killed and another takes over (no duplicate alert).
At the end the demo prints the status (with a synthetic IDENTIFY budget, labelled so: the demo
has no bot token), restarts, stats and performance views.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from pathlib import Path

import redis.asyncio as aioredis
from aiohttp import web

from shardmon import views
from shardmon.collector import Collector
from shardmon.connection import create_redis, redact_url
from shardmon.demo.__main__ import GATEWAY_BACK, GATEWAY_DROP
from shardmon.demo.embedded import embedded_redis, free_port
from shardmon.demo.fleet import LocalFleet
from shardmon.keys import Keys
from shardmon.models import RunState, SessionStartLimit
from shardmon.settings import Settings, load_settings
from shardmon.store import Store
from shardmon.supervisor import exit_words
from shardmon.tasks import TaskSet
from shardmon.web import BoardSettings, make_app, start

__all__ = ["run_demo"]

#: The crash-looping demo shard dies this long after it starts, until the demo mends it.
CRASH_AFTER_S = 2.0
#: Its supervisor (`shardmon run`) backs off from a second, doubling: paused within 15 s.
RUN_BACKOFF_S = 1.0
#: The pause shows this long before the demo mends the shard and resumes it.
PAUSE_SHOWN_S = 3.0
LEASE_S = 5.0
#: The demo's dashboard refreshes this often: a second, to follow the scenario.
DASHBOARD_REFRESH_S = 1.0
#: The demo's gateway drop is alerted after this long (the setting's least: 10 s).
DISCONNECTED_AFTER_S = 10


class _Demo:
    def __init__(self, url: str, shards: int, duration_s: float, folder: Path, deployment: str):
        self.url = url
        self.shards = shards
        self.duration_s = duration_s
        self.deployment = deployment
        self.settings = {
            "deployment": deployment, "sample_interval_s": "1", "leader_lease_s": str(LEASE_S),
            "system_name": "shardmon demo bot", "environment": "Demo", "version": "1.0.0",
            "disconnected_after_s": str(DISCONNECTED_AFTER_S),
            "run_backoff_s": str(RUN_BACKOFF_S), "run_backoff_max_s": "8",
            "run_stop_timeout_s": "5",
        }  # fmt: skip
        # Each shard runs under `shardmon run`, which restarts it, backs off and pauses.
        self.fleet = LocalFleet(url, shards, self.settings, folder, module="shardmon.demo",
                                supervised=True)  # fmt: skip
        self.crash_file = folder / "crash-looping"  # the looping shard crashes while it exists
        self.crash_file.touch()
        self.run_said: dict[int, tuple[str, int]] = {}  # shard -> its supervisor, as last said
        self.mended = False
        # A tenth of this machine's (or container's) memory, at most 1 GiB: a spike that shows.
        self.spike_mb = int(min(1024, Collector().collect().memory_total_mb * 0.10))
        self.client = create_redis(url)
        self.store = Store(self.client, Keys(deployment))
        self.started = time.monotonic()
        self.begun = time.time()
        self.seen_alerts: set[str] = set()
        self.failures: list[str] = []
        self.background = TaskSet()

    def say(self, text: str) -> None:
        print(f"  {time.monotonic() - self.started:5.1f}s  {text}", flush=True)

    def node_env(self, shard: int) -> dict[str, str]:
        env = {"SHARDMON_DEMO_SPIKE_MB": str(self.spike_mb)}
        if shard == self.shards - 1:  # the crash-looping shard
            env["SHARDMON_DEMO_CRASH_AFTER_S"] = str(CRASH_AFTER_S)
            env["SHARDMON_DEMO_CRASH_FILE"] = str(self.crash_file)
        return env

    async def supervisors(self) -> dict[int, RunState]:
        """Shard -> what its supervisor said lately."""
        states = await self.store.supervisors(fresh_after=time.time() - 10)
        return {shard: state for state in states.values() for shard in state.shards}

    async def child_pid(self, shard: int) -> int | None:
        """The pid of the shard's demo node, the child of its supervisor."""
        state = (await self.supervisors()).get(shard)
        return None if state is None else state.pid

    async def report_supervisors(self) -> None:
        """Say what each supervisor does when it changes: a back-off, a pause, a restart."""
        for shard, state in sorted((await self.supervisors()).items()):
            said, before = (state.state, state.failures), self.run_said.get(shard)
            if said == before:
                continue
            self.run_said[shard] = said
            if state.state in ("backoff", "paused", "held"):
                emoji = {"backoff": "⏳", "paused": "⏸️ ", "held": "✋"}[state.state]
                self.say(f"{emoji} shard {shard}'s supervisor: {state.reason}")
            elif state.state == "running" and before and before[0] != "running":
                self.say(f"▶️  shard {shard} running again (pid {state.pid})")

    async def report_alerts(self) -> list[dict[str, object]]:
        records = await self.store.recent_alerts(100)
        for record in reversed(records):
            if record["id"] not in self.seen_alerts:
                self.seen_alerts.add(str(record["id"]))
                shards = ",".join(map(str, record.get("shards", [])))
                self.say(f"🔔 {record['title']} (shard {shards}, epoch {record['epoch']}, "
                         f"sent by {record['node']})")  # fmt: skip
        return records

    async def supervise(self) -> None:
        """Start again a supervisor that ended (as systemd would), say what the supervisors do,
        and mend the crash loop once its pause has shown."""
        for shard, process in list(self.fleet.processes.items()):
            if process.poll() is None:
                continue
            self.say(f"🔁 shard {shard}'s supervisor {exit_words(process.returncode)}: "
                     "started again, as systemd would")  # fmt: skip
            self.fleet.start(shard, **self.node_env(shard))
        await self.report_supervisors()
        await self.mend()

    async def mend(self) -> None:
        """Once the crash loop is paused: mend the shard and resume it, as an operator would
        (`shardmon run --resume` asks the same of its supervisor)."""
        looping = self.shards - 1
        state = (await self.supervisors()).get(looping)
        if self.mended or state is None or state.state != "paused":
            return
        if time.time() - state.since < PAUSE_SHOWN_S:
            return
        self.crash_file.unlink(missing_ok=True)
        await self.store.ask_supervisors([looping], "resume", "mended", by="the demo")
        self.mended = True
        self.say(f"🩹 shard {looping} mended: `shardmon run --resume --shards {looping}`")

    async def wait_for(
        self, what: str, check: Callable[[], Awaitable[bool]], limit_s: float
    ) -> bool:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            await self.supervise()
            await self.report_alerts()
            if await check():
                return True
            await asyncio.sleep(0.25)
        self.say(f"❗ no {what} within {limit_s:.0f} s")
        self.failures.append(what)
        return False

    async def memory_spike(self, shard: int) -> None:
        latest = (await self.store.latest_samples()).get(shard)
        if latest is None:
            return
        spike_mb = self.spike_mb
        threshold = round(latest.memory + 0.4 * 100 * spike_mb / latest.memory_total_mb, 1)
        await self.store.set_threshold(f"memory:{shard}", threshold)
        self.say(f"📈 shard {shard}: memory threshold set to {threshold}% (it is at "
                 f"{latest.memory:.1f}%); the shard now holds {spike_mb} MB more")  # fmt: skip
        pid = await self.child_pid(shard)
        if pid is None:
            return
        os.kill(pid, signal.SIGUSR1)

        async def alerted() -> bool:
            return any(
                r["rule"] == "memory" and r["kind"] == "alert" for r in await self.report_alerts()
            )

        if await self.wait_for("memory alert", alerted, 15):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGUSR2)
            self.say(f"📉 shard {shard} let the memory go")

            async def resolved() -> bool:
                return any(
                    r["rule"] == "memory" and r["kind"] == "resolved"
                    for r in await self.report_alerts()
                )

            await self.wait_for("resolution", resolved, 15)
        await self.store.unset_threshold(f"memory:{shard}")

    async def _seen(self, rule: str, kind: str, limit_s: float) -> bool:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            records = await self.store.recent_alerts(100)
            if any(r["rule"] == rule and r["kind"] == kind for r in records):
                return True
            await asyncio.sleep(0.25)
        self.say(f"❗ no {rule} {kind} within {limit_s:.0f} s")
        self.failures.append(f"{rule} {kind}")
        return False

    async def gateway_drop(self, shard: int) -> None:
        """The shard's gateway goes down while its process runs on: alerted once after
        DISCONNECTED_AFTER_S, then resumed and resolved (in the background: the other steps
        go on meanwhile)."""

        async def tracking() -> bool:  # its node is up and reports a gateway: it can drop it
            sample = (await self.store.latest_samples()).get(shard)
            return sample is not None and sample.gateway is not None and sample.ts > self.begun

        if not await self.wait_for(f"shard {shard}'s first sample", tracking, 15):
            return
        pid = await self.child_pid(shard)
        if pid is None:
            return
        self.say(f"📡 shard {shard}'s gateway drops; its process keeps running")
        os.kill(pid, GATEWAY_DROP)
        if await self._seen("disconnected", "alert", DISCONNECTED_AFTER_S + 15):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, GATEWAY_BACK)
            self.say(f"📡 shard {shard}'s gateway resumed")
            await self._seen("disconnected", "resolved", 15)

    async def synthetic_budget(self) -> None:
        """The IDENTIFY budget a leader would read with a bot token, made up and said so."""
        await self.store.write_session_limit(
            SessionStartLimit(
                total=1000,
                remaining=1000 - self.shards - 3,
                reset_after_ms=20 * 3_600_000,
                max_concurrency=1,
                read_at=time.time(),
                synthetic=True,
            )
        )

    async def kill_leader(self) -> None:
        """SIGKILL to the leading process: a shard's supervisor (systemd starts it again) or
        its demo node (its supervisor restarts it)."""
        old = await self.store.leader()
        if old.node is None:
            return
        pid = int(old.node.rpartition(":")[2])
        what = "a node"
        for shard, state in (await self.supervisors()).items():
            if state.node == old.node:
                what = f"shard {shard}'s supervisor"
            elif state.pid == pid:
                what = f"shard {shard}'s demo node"
        self.say(f"🔪 SIGKILL to the leader, {what} {old.node} (epoch {old.epoch})")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()

        async def taken_over() -> bool:
            new = await self.store.leader()
            return new.node is not None and new.node != old.node and new.epoch > old.epoch

        if await self.wait_for("new leader", taken_over, LEASE_S * 3):
            new = await self.store.leader()
            took = time.monotonic() - killed_at
            self.say(f"👑 new leader {new.node} (epoch {new.epoch}) after {took:.1f} s")

    async def run(self) -> None:
        beats = await self.store.heartbeats()
        if beats and time.time() - max(beats.values()) < 30:
            raise RuntimeError(
                f"deployment '{self.deployment}' has shards reporting right now: "
                "the demo will not write into a running fleet"
            )
        print(f"starting {self.shards} shard processes of deployment '{self.deployment}' "
              f"(lease {LEASE_S:g} s, sampling every second)")  # fmt: skip
        for shard in range(self.shards):
            self.fleet.start(shard, **self.node_env(shard))

        async def led() -> bool:
            return (await self.store.leader()).node is not None

        await self.wait_for("leader", led, 15)
        await self.synthetic_budget()
        spiking = min(1, self.shards - 1)

        async def drop() -> None:
            self.background.spawn(self.gateway_drop(0), name="shardmon-demo-gateway-drop")

        steps: list[tuple[float, Callable[[], Awaitable[None]]]] = [
            *([(0.0, drop)] if self.shards >= 3 else []),  # shard 0: neither spiking nor looping
            (0.3, lambda: self.memory_spike(spiking)),
            (0.55, self.kill_leader),
        ]
        next_progress = 0.0
        while (elapsed := time.monotonic() - self.started) < self.duration_s:
            if steps and elapsed >= steps[0][0] * self.duration_s:
                await steps.pop(0)[1]()
                continue
            if elapsed >= next_progress:
                summary = await self.store.fleet_summary(3.0)
                leader = await self.store.leader()
                self.say(
                    f"{summary.online}/{self.shards} shards online, "
                    f"leader {leader.node} (epoch {leader.epoch})"
                )
                next_progress += 10
            await self.supervise()
            await self.report_alerts()
            await asyncio.sleep(0.25)
        await self.background.wait(30)
        self.fleet.stop_all()
        await self.report_alerts()

    async def summary(self, settings: Settings) -> None:
        records = await self.store.recent_alerts(100)
        sent = [r for r in records if r["kind"] == "alert" and r["delivered"]]
        times: dict[tuple[str, int], list[float]] = {}
        for record in sent:
            for shard in record["shards"]:
                times.setdefault((str(record["rule"]), shard), []).append(float(record["ts"]))
        dedupe = settings.alert_dedupe_s
        duplicates = sum(
            1 for ts in times.values() for a, b in itertools.pairwise(sorted(ts)) if b - a < dedupe
        )
        resolved = sum(1 for r in records if r["kind"] == "resolved")
        print(f"\nalerts sent: {len(sent)}, resolved: {resolved}, duplicate alerts: {duplicates}")
        if duplicates:
            self.failures.append("no duplicate alerts")
        # The command line's own views of what the fleet left in Redis.
        store, limits = self.store, settings.limits
        shown = {
            "status": views.status_view(await store.fleet_status(limits.offline_after_s), settings),
            "restarts": views.restarts_view(await store.restart_history(8)),
            "stats": views.stats_view(
                await store.restart_stats(), await store.restart_storms(limits, self.shards)
            ),
            "performance": views.performance_view(
                await store.fleet_performance(window_s=3600), "fleet, last hour"
            ),
        }
        for title, text in shown.items():
            print(f"\n== shardmon {title} ==")
            if title == "status":  # its 🔴 is right: the fleet's processes have just stopped
                print("(after the demo's processes stopped: nobody leads any more)")
            print(text)
        await self.client.aclose()


class _Dashboard:
    """`shardmon dashboard` beside the fleet, on a free loopback port, in the demo's loop."""

    def __init__(self, runner: web.AppRunner, client: aioredis.Redis) -> None:
        self.runner = runner
        self.client = client

    async def close(self) -> None:
        await self.runner.cleanup()
        await self.client.aclose()


async def serve_dashboard(url: str, settings: Settings) -> _Dashboard:
    """Serve the dashboard of the demo's deployment and say where, before the fleet starts."""
    client = create_redis(url)
    app = make_app(
        client, Keys(settings.deployment), BoardSettings.of(settings, DASHBOARD_REFRESH_S)
    )
    port = free_port()
    runner = await start(app, "127.0.0.1", port)
    print(f"dashboard: http://127.0.0.1:{port}/ and the status page http://127.0.0.1:{port}/status "
          "(open them now: the gateway drop, the storm, the spike and the failover show there)",
          flush=True)  # fmt: skip
    return _Dashboard(runner, client)


def run_demo(shards: int = 4, duration_s: float = 60) -> bool:
    """Run the demo against `SHARDMON_REDIS_URL`, or an embedded Redis when none is set, in
    the deployment `demo` (never a real one). True when every step of the scenario happened."""
    settings = load_settings()
    deployment = "demo"
    # A SIGTERM (timeout, a cancelled job) unwinds like Ctrl-C: processes stopped, Redis gone.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    with ExitStack() as stack:
        if settings.redis_url is not None:
            url = settings.redis_url.get_secret_value()
            print(f"using Redis at {redact_url(url)} (SHARDMON_REDIS_URL)")
        else:
            embedded = stack.enter_context(embedded_redis())
            url = embedded.url
            print(f"no SHARDMON_REDIS_URL: using an embedded {embedded.kind} at {url}")
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="shardmon-demo-")))
        demo = _Demo(url, shards, duration_s, folder, deployment)
        view_settings = settings.model_copy(
            update={
                "deployment": deployment,
                "shard_count": shards,
                "system_name": "shardmon demo bot",
            }
        )

        async def scenario() -> None:
            dashboard = await serve_dashboard(url, view_settings)
            try:
                await demo.run()
                await demo.summary(view_settings)
            finally:
                await dashboard.close()

        try:
            asyncio.run(scenario())
        finally:
            demo.fleet.stop_all()
            signal.signal(signal.SIGTERM, previous)
        if settings.redis_url is None:
            print("\n(the embedded Redis stops now: set SHARDMON_REDIS_URL to keep the data)")
        if demo.failures:
            print(f"the demo did not see: {', '.join(demo.failures)}", file=sys.stderr)
        return not demo.failures
