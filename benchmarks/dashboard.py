"""The dashboard's data endpoints at growing fleet sizes, beside the naive read of every shard's
`latest` sample, and the page's time to first render in headless Chromium.

For each fleet size it loads a private redis-server: every shard's sample through the real
write script (100 nodes, each running a block of shard ids as AutoShardedBot processes do; 1%
of the shards above the memory threshold, one in 50 with its gateway down), an hour of minute
rollups (written by the same script for 50 shards: a rollup is as big at 10 shards as at
5,000), 10 restarts a shard, and one leader tick (FleetJudge.tick) that writes the grid.
Then, in the same run, over real HTTP to `shardmon dashboard`'s app:

- `/api/fleet` (the operator's poll), `/api/status` (the public one), `/api/shard/<id>` (a
  tooltip), `/api/history?span=hour` and `span=month` (720 hourly buckets);
- the naive read: HGETALL `latest` and parse every sample (what a grid without the leader's
  `shard_states` would read at each poll), and `/api/fleet` when no leader has judged lately
  (the page then reads and judges every shard itself);
- the page: time from navigation to its first render (grid and figures drawn, the
  `shardmon-first-render` mark), 10 loads in Debian's chromium through Playwright.

Medians and p99 in ms (the p99 of 50 requests is their second-worst); ratios against the
naive read of the same fleet.

    .venv/bin/python benchmarks/dashboard.py [--shards 10,1000,5000] [--requests 50]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import aiohttp
import redis.asyncio as aioredis
from aiohttp.test_utils import TestServer
from playwright.async_api import async_playwright

from shardmon.alerts import Alerter
from shardmon.connection import create_redis
from shardmon.demo.embedded import embedded_redis
from shardmon.judge import FleetJudge
from shardmon.keys import Keys
from shardmon.leader import LeaderElection, LeaseTiming
from shardmon.models import GatewayState, Sample, new_event
from shardmon.rules import Limits
from shardmon.sinks import LogSink
from shardmon.store import Store
from shardmon.web import BoardSettings, make_app

KEYS = Keys("bench")
NODES = 100
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


def _sample(shard: int, ts: float, shards: int) -> Sample:
    """A shard's sample; its node runs a block of shard ids, as AutoShardedBot processes do."""
    node = shard * NODES // shards
    down = shard % 50 == 3
    gateway = GatewayState(connected=not down, since_s=600.0, last_connect=ts - 600,
                           dispatch_age_s=1.0)  # fmt: skip
    return Sample(ts=ts, shard=shard, cpu=10 + shard % 50,
                  memory=90.0 if shard % 100 == 7 else 40 + shard % 30, memory_used_mb=900.0,
                  memory_total_mb=2048.0, disk=50.0, cores=2.0, rss_mb=300.0,
                  latency_ms=40.0 + shard % 20, guilds=1000, users=90_000,
                  node=f"bot-{node}:{1000 + node}", started_at=ts - 86400,
                  gateway=gateway)  # fmt: skip


async def _load(client: aioredis.Redis, store: Store, shards: int) -> FleetJudge:
    await client.flushall()
    now = time.time()
    for minute in range(60, 0, -1):  # an hour of rollups, through the write script
        batch = [(_sample(s, now - minute * 60, shards), int(now * 1e6) - minute * 1000 + s)
                 for s in range(min(shards, 50))]  # fmt: skip
        await store.push_samples(batch)
    for i in range(shards * 10):
        event = new_event("crash" if i % 7 == 0 else "startup", shards=(i % shards,),
                          node="bench:1", system="bench", environment="bench", version="1",
                          now=datetime.fromtimestamp(now - 86400 * 30 * (i + 1) / (shards * 10),
                                                     UTC))  # fmt: skip
        await store.record_restart(event)
    fresh = time.time()
    batch = [(_sample(s, fresh, shards), int(fresh * 1e6) + s) for s in range(shards)]
    for start in range(0, shards, 500):
        await store.push_samples(batch[start : start + 500])
    election = LeaderElection(store, "bench:1", LeaseTiming(3600))
    assert await election.campaign_once(), "the benchmark's node must lead"
    judge = FleetJudge(store, election, Alerter(store, "bench:1", [LogSink()]), Limits(),
                       shard_count=shards)  # fmt: skip
    assert await judge.tick()
    return judge


async def _time(request: Callable[[], Awaitable[object]], runs: int) -> tuple[float, float]:
    """(median, p99) in ms of `runs` requests, after one not timed."""
    await request()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await request()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.99))]


async def _first_render(url: str, loads: int) -> list[float]:
    """Navigation to the first render of the page, in ms, `loads` times (a new page each)."""
    executable = shutil.which("chromium")
    assert executable, "no chromium: `make bench` installs Debian's package"
    times = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        for _ in range(loads + 1):  # the first warms the browser's cache of the static files
            page = await browser.new_page(viewport={"width": 1400, "height": 1000})
            await page.goto(url)
            mark = None
            while mark is None:
                mark = await page.evaluate(
                    "() => performance.getEntriesByName('shardmon-first-render')[0]?.startTime"
                )
                await asyncio.sleep(0.02)
            times.append(float(mark))
            await page.close()
        await browser.close()
    return times[1:]


async def _measure(
    client: aioredis.Redis, store: Store, shards: int, requests: int, loads: int
) -> tuple[list[tuple[int, str, float, float]], list[float]]:
    """One fleet size: each request's (shards, name, median, p99), and the page's renders."""
    judge = await _load(client, store, shards)
    settings = BoardSettings(deployment="bench", system_name="bench", shard_count=shards,
                             limits=Limits(), warn_level=70, clock_skew_warn_s=2,
                             refresh_s=3600)  # fmt: skip
    web = TestServer(make_app(client, KEYS, settings), host="127.0.0.1")
    await web.start_server()
    base = str(web.make_url("")).rstrip("/")
    rows = []
    async with aiohttp.ClientSession() as session:

        async def get(path: str) -> None:
            async with session.get(f"{base}{path}") as response:
                assert response.status == 200, await response.text()
                await response.read()

        async def naive() -> None:
            await Store(client, KEYS).latest_samples()

        timed: dict[str, Callable[[], Awaitable[object]]] = {
            "/api/fleet": lambda: get("/api/fleet"),
            "/api/status": lambda: get("/api/status"),
            "/api/shard/<id>": lambda: get(f"/api/shard/{shards // 2}"),
            "/api/history hour": lambda: get("/api/history?span=hour"),
            "/api/history month": lambda: get("/api/history?span=month"),
            "naive: every latest sample": naive,
        }
        for name, request in timed.items():
            median, p99 = await _time(request, requests)
            rows.append((shards, name, median, p99))
        await client.delete(KEYS.shard_states)  # as if no leader had judged lately
        median, p99 = await _time(lambda: get("/api/fleet"), max(5, requests // 5))
        rows.append((shards, "/api/fleet, no leader", median, p99))
    await judge.tick()  # the grid again, for the page
    renders = await _first_render(f"{base}/", loads)
    await web.close()
    return rows, renders


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", default="10,1000,5000", help="fleet sizes")
    parser.add_argument("--requests", type=int, default=50, help="timed requests each (50)")
    parser.add_argument("--loads", type=int, default=10, help="page loads timed (10)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    rows: list[tuple[int, str, float, float]] = []
    renders: dict[int, list[float]] = {}
    with embedded_redis() as server:
        client = create_redis(server.url, timeout_s=300)
        store = Store(client, KEYS)
        for shards in [int(s) for s in args.shards.split(",")]:
            measured, renders[shards] = await _measure(
                client, store, shards, args.requests, args.loads
            )
            rows += measured
        await client.aclose()
    _report(server.kind, rows, renders)


def _report(
    kind: str, rows: list[tuple[int, str, float, float]], renders: dict[int, list[float]]
) -> None:
    naive = {shards: median for shards, name, median, _ in rows if name.startswith("naive")}
    print(f"\n{kind}; ms; naive/this: the naive read's median over this one's, same fleet")
    print(f"{'shards':>6}  {'request':<28} {'median':>8} {'p99':>8} {'naive/this':>11}")
    for shards, name, median, p99 in rows:
        versus = "" if name.startswith("naive") else f"{naive[shards] / median:.1f}x"
        print(f"{shards:>6}  {name:<28} {median:>8.2f} {p99:>8.2f} {versus:>11}")
    print("\nthe dashboard's first render in headless Chromium (navigation to grid drawn), ms")
    for shards, times in renders.items():
        print(f"{shards:>6}  median {statistics.median(times):7.1f}  max {max(times):7.1f}  "
              f"({len(times)} loads)")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
