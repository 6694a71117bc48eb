"""The bot's side: how long one sampling tick blocks the event loop, and the monitor's memory.

Runs a real `SystemMonitor` (4 shards, the real psutil/cgroup collector, the default 1,000-sample
history) against a private redis-server, and times every callback the event loop runs during a
tick (`asyncio.Handle._run`): the longest one is how long the tick kept the bot from its gateway
heartbeats and commands; their sum is the tick's CPU time on the loop. The collector's own work
runs in a thread and does not count. Beside it, in the same run, the same measure of one bare
Redis PING: the least any tick that talks to Redis costs the loop.

Memory: the process's RSS before shardmon is imported, and after the monitor has filled its
history (1,000 ticks), with the difference.

    .venv/bin/python benchmarks/bot_loop.py [--ticks 1000] [--shards 4]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import psutil

_run_callback = asyncio.events.Handle._run
_durations: list[float] = []


def _timed_run(self: asyncio.Handle) -> None:
    started = time.perf_counter()
    try:
        _run_callback(self)
    finally:
        _durations.append(time.perf_counter() - started)


async def _blocking(
    step: Callable[[], Coroutine[Any, Any, Any]], runs: int
) -> tuple[list[float], list[float]]:
    """(longest callback, sum of callbacks) in µs for each of `runs` runs of `step`."""
    longest, total = [], []
    for _ in range(runs):
        _durations.clear()
        asyncio.events.Handle._run = _timed_run  # type: ignore[method-assign]
        try:
            await asyncio.create_task(step())  # its own task: each of its steps is a callback
        finally:
            asyncio.events.Handle._run = _run_callback  # type: ignore[method-assign]
        longest.append(max(_durations) * 1e6)
        total.append(sum(_durations) * 1e6)
    return longest, total


async def _lag(step: Callable[[], Coroutine[Any, Any, Any]], runs: int) -> list[float]:
    """How late a 1 ms timer fires while `step` runs, worst per run, in µs: what a bot's own
    coroutine feels. Unlike the callback times, it also sees a worker thread holding the GIL;
    but epoll counts in whole milliseconds, so it cannot tell blocks under about 1 ms apart."""
    worst = []
    for _ in range(runs):
        late = [0.0]
        done = asyncio.Event()

        async def probe(late: list[float] = late, done: asyncio.Event = done) -> None:
            while not done.is_set():
                started = time.perf_counter()
                await asyncio.sleep(0.001)
                late[0] = max(late[0], time.perf_counter() - started - 0.001)

        prober = asyncio.create_task(probe())
        await asyncio.sleep(0)  # the probe is waiting on its timer before the step starts
        await step()
        done.set()
        await prober
        worst.append(late[0] * 1e6)
    return worst


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=1000, help="sampling ticks (1000)")
    parser.add_argument("--shards", type=int, default=4, help="shards in the process (4)")
    args = parser.parse_args()
    process = psutil.Process()
    rss_before = process.memory_info().rss

    from shardmon.connection import create_redis
    from shardmon.demo.embedded import embedded_redis
    from shardmon.monitor import GatewayStats, MonitorConfig, build_monitor

    rss_imported = process.memory_info().rss
    with embedded_redis() as server, tempfile.TemporaryDirectory() as tmp:
        client = create_redis(server.url)
        config = MonitorConfig(
            deployment="bench",
            shard_ids=tuple(range(args.shards)),
            shard_count=args.shards,
            journal_path=Path(tmp) / "system_restarts.log",
            leader_eligible=False,
        )
        monitor = build_monitor(
            config, client, gateway=lambda shard: GatewayStats(42.0, 1200, 95_000)
        )
        await monitor.start(sample=False)
        await monitor.sample_once()  # warm: the script loaded, psutil's CPU baseline taken
        tick_longest, tick_total = await _blocking(monitor.sample_once, args.ticks)

        async def ping() -> object:
            return await client.ping()

        ping_longest, ping_total = await _blocking(ping, args.ticks)
        rss_after = process.memory_info().rss
        history = len(monitor.metrics_history)
        await monitor.stop()
        await client.aclose()

    def row(name: str, values: list[float]) -> str:
        return f"{name:<44} {statistics.median(values):>8.0f} {max(values):>8.0f}"

    print(f"{server.kind}; {args.ticks} ticks of {args.shards} shards; event loop blocked, µs")
    print(f"{'':<44} {'median':>8} {'max':>8}")
    print(row("sampling tick: longest callback", tick_longest))
    print(row("sampling tick: all its callbacks", tick_total))
    print(row("baseline, one PING: longest callback", ping_longest))
    print(row("baseline, one PING: all its callbacks", ping_total))
    ratio = statistics.median(tick_longest) / statistics.median(ping_longest)
    print(f"longest callback, tick / PING: {ratio:.1f}x (target: a tick under 1,000 µs median)")
    mib = 2**20
    print(f"\nresident memory (MiB): {rss_before / mib:.1f} before shardmon was imported; "
          f"+{(rss_imported - rss_before) / mib:.1f} for importing it and redis-py, pydantic; "
          f"+{(rss_after - rss_imported) / mib:.1f} for the running monitor with its {history} "
          f"readings; {rss_after / mib:.1f} in all")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
