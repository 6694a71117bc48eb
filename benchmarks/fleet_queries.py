"""Fleet queries and the leader's tick at growing fleet sizes, beside a naive baseline.

For each fleet size it loads a private redis-server with that many shards at full history: the
last hour of samples through the real write script (so the rollups are real), the rest of each
shard's `history_size` list with plain RPUSH, 10 restarts a shard over 30 days and one IDENTIFY
a shard. Then, in the same run, it times:

- the data query of /uptime (the `fleet` hash a leader tick wrote), /restart_stats and fleet
  /performance (minute rollups), and a naive baseline that reads every shard's list (LRANGE) and
  averages in Python;
- one leader tick (FleetJudge.tick: read and judge the fleet, claim alerts, roll up the hour,
  write the `fleet` figures), with 1% of the shards above the memory threshold, and how long
  it blocks the event loop of the bot it runs in (its longest callback, as bot_loop.py times);
- the restart storm counts every leader tick and every storm view needs: one ZCOUNT of
  `restarts:<shard>` a shard in one script call, beside what the leader did before (read every
  event of the window and parse it), on the quiet fleet and during a crash loop (10% of the
  shards crashing 5 times in the hour, each event with an 8 KB traceback).

Redis memory per shard is `redis_memory.py`'s: this fleet's lists repeat one sample, which
compresses far better than a live shard's.

Medians and maxima in ms (30 runs: a p99 would be the maximum anyway); ratios against the
smallest fleet and against the baseline.

    .venv/bin/python benchmarks/fleet_queries.py [--shards 10,100,1000,5000] [--samples 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import cast

import redis.asyncio as aioredis
from bot_loop import _blocking, _lag

from shardmon.alerts import Alerter
from shardmon.connection import create_redis
from shardmon.demo.embedded import embedded_redis
from shardmon.judge import FleetJudge
from shardmon.keys import Keys
from shardmon.leader import LeaderElection, LeaseTiming
from shardmon.models import (
    RestartType,
    Sample,
    crash_metadata,
    new_event,
    parse_event,
    parse_sample,
)
from shardmon.rules import Limits
from shardmon.sinks import LogSink
from shardmon.store import Store

KEYS = Keys("bench")
RESTARTS_PER_SHARD = 10
TYPES = list(RestartType)


def _sample(shard: int, ts: float) -> Sample:
    memory = 90.0 if shard % 100 == 7 else 40 + shard % 30  # 1% above the 85% threshold
    return Sample(ts=ts, shard=shard, cpu=10 + shard % 50, memory=memory,
                  memory_used_mb=900.0, memory_total_mb=2048.0, disk=50.0, cores=2.0,
                  rss_mb=300.0, latency_ms=40.0 + shard % 20, guilds=1000, users=90_000,
                  node="bench:1", started_at=ts - 86400)  # fmt: skip


async def _load(client: aioredis.Redis, store: Store, shards: int, samples: int) -> None:
    await client.flushall()
    now = time.time()
    recent = min(60, samples)  # the last hour, one a minute, through the write script
    for minute in range(recent, 0, -1):
        batch = [(_sample(s, now - minute * 60), int(now * 1e6) - minute * 1000 + s)
                 for s in range(shards)]  # fmt: skip
        for start in range(0, shards, 500):
            await store.push_samples(batch[start : start + 500])
    older = _sample(0, now - 7200).to_json()
    for start in range(0, shards, 50):  # the rest of each list, oldest, with plain RPUSH
        async with client.pipeline(transaction=False) as pipe:
            for shard in range(start, min(shards, start + 50)):
                pipe.rpush(KEYS.samples(shard), *([older] * (samples - recent)))
            await pipe.execute()
    for i in range(shards * RESTARTS_PER_SHARD):  # 30 days of restarts, oldest first
        ago = (shards * RESTARTS_PER_SHARD - i) * 30 * 86400 / (shards * RESTARTS_PER_SHARD)
        event = new_event(TYPES[i % len(TYPES)], shards=(i % shards,), node="bench:1",
                          system="bench", environment="bench", version="1",
                          now=datetime.fromtimestamp(now - ago, UTC))  # fmt: skip
        await store.record_restart(event)
    for shard in range(shards):
        await store.record_gateway_event(shard, "identify", now=now - 600)
    fresh = time.time()  # every shard online when timing starts, however long the load took
    batch = [(_sample(s, fresh), int(fresh * 1e6) + s) for s in range(shards)]
    for start in range(0, shards, 500):
        await store.push_samples(batch[start : start + 500])


async def _naive_performance(client: aioredis.Redis, shards: int) -> float:
    """What a fleet answer costs without pre-aggregation: every list, parsed and averaged."""
    async with client.pipeline(transaction=False) as pipe:
        for shard in range(shards):
            pipe.lrange(KEYS.samples(shard), 0, -1)
        lists = await pipe.execute()
    cpu = [parse_sample(raw).cpu for values in lists for raw in values]
    return sum(cpu) / len(cpu)


async def _time(query: Callable[[], Awaitable[object]], runs: int) -> tuple[float, float]:
    """(median, maximum) in ms of `runs` runs."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await query()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), max(times)


async def _leader(store: Store, shards: int) -> FleetJudge:
    election = LeaderElection(store, "bench:1", LeaseTiming(3600))
    assert await election.campaign_once(), "the benchmark's node must lead"
    alerter = Alerter(store, "bench:1", [LogSink()])
    return FleetJudge(store, election, alerter, Limits(), shard_count=shards)


async def _storms_by_parsing(client: aioredis.Redis, window_s: float = 3600) -> dict[int, int]:
    """The storm counts as the leader took them before: every event of the window, parsed."""
    since = time.time() - window_s
    members = cast("list[str]", await client.zrangebyscore(KEYS.restarts, since, "+inf"))
    counts: dict[int, int] = {}
    for member in members:
        for shard in parse_event(member).shards:
            counts[shard] = counts.get(shard, 0) + 1
    return counts


async def _crash_loop(store: Store, shards: int) -> None:
    """10% of the shards crash 5 times within the hour, each event with an 8 KB traceback."""
    now = time.time()
    for shard in range(0, shards, 10):
        for crash in range(5):
            metadata = crash_metadata("RuntimeError: the gateway loop died", "  frame\n" * 1000)
            event = new_event("crash", shards=(shard,), node="bench:1", system="bench",
                              environment="bench", version="1", metadata=metadata,
                              now=datetime.fromtimestamp(now - 600 - crash, UTC))  # fmt: skip
            await store.record_restart(event)


async def _storm_rows(
    client: aioredis.Redis, store: Store, shards: int, runs: int, when: str
) -> list[tuple[int, str, float, float]]:
    async def by_zcount() -> dict[int, int]:
        return await store.restarts_in_window(3600, time.time())

    async def by_parsing() -> dict[int, int]:
        return await _storms_by_parsing(client)

    assert await by_zcount() == await by_parsing(), "the two counts must agree"
    rows = []
    for how, query in (("ZCOUNT script", by_zcount), ("parse events", by_parsing)):
        median, worst = await _time(query, runs)
        rows.append((shards, f"storms {when}: {how}", median, worst))
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", default="10,100,1000,5000", help="fleet sizes")
    parser.add_argument("--samples", type=int, default=1000, help="samples per shard (1000)")
    parser.add_argument("--runs", type=int, default=30, help="timed runs per query (30)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the leader's alerts go to the log: keep it quiet
    sizes = [int(s) for s in args.shards.split(",")]
    rows: list[tuple[int, str, float, float]] = []
    with embedded_redis() as server:
        client = create_redis(server.url, timeout_s=300)
        store = Store(client, KEYS, history_size=args.samples)
        for shards in sizes:
            started = time.monotonic()
            await _load(client, store, shards, args.samples)
            print(f"loaded {shards} shards x {args.samples} samples in "
                  f"{time.monotonic() - started:.0f} s", flush=True)  # fmt: skip
            judge = await _leader(store, shards)
            await judge.tick()  # the first tick sends the alerts; later ones are deduplicated

            async def naive(shards: int = shards) -> float:
                return await _naive_performance(client, shards)

            queries: dict[str, Callable[[], Awaitable[object]]] = {
                "/uptime (fleet hash)": lambda: store.fleet_totals(180),
                "/restart_stats (counts)": lambda: store.restart_stats(),
                "/performance fleet (rollups)": lambda: store.fleet_performance(3600),
                "leader tick": judge.tick,
                "naive: LRANGE every shard": naive,
            }
            for name, query in queries.items():
                is_naive = name.startswith("naive")
                runs = (3 if shards <= 1000 else 1) if is_naive else args.runs
                median, worst = await _time(query, runs)
                rows.append((shards, name, median, worst))
            blocked = [us / 1000 for us in (await _blocking(judge.tick, args.runs))[0]]
            rows.append((shards, "leader tick: loop blocked", statistics.median(blocked),
                         max(blocked)))  # fmt: skip
            late = [us / 1000 for us in await _lag(judge.tick, args.runs)]
            rows.append((shards, "leader tick: 1 ms timer late", statistics.median(late),
                         max(late)))  # fmt: skip
            rows += await _storm_rows(client, store, shards, args.runs, "quiet")
            await _crash_loop(store, shards)
            rows += await _storm_rows(client, store, shards, args.runs, "crash loop")
            summary = await store.fleet_totals(180)
            assert summary.online == shards, f"{summary.online} of {shards} shards online"
        await client.aclose()
    _report(server.kind, sizes, rows)


def _report(kind: str, sizes: list[int], rows: list[tuple[int, str, float, float]]) -> None:
    smallest = sizes[0]
    print(f"\n{kind}; ms; x{smallest}: ratio to the median at {smallest} shards; "
          f"naive/this: the baseline's median over this one's, same fleet")  # fmt: skip
    grew, naive_title = f"x{smallest}", "naive/this"
    print(f"{'shards':>6}  {'query':<30} {'median':>9} {'max':>9} {grew:>7} {naive_title:>10}")
    base = {name: median for shards, name, median, _ in rows if shards == smallest}
    naive = {shards: median for shards, name, median, _ in rows if name.startswith("naive")}
    for shards, name, median, worst in rows:
        versus = f"{naive[shards] / median:.0f}x"
        if name.startswith(("naive", "leader", "storms")):
            versus = ""
        growth = median / base[name]
        print(f"{shards:>6}  {name:<30} {median:>9.2f} {worst:>9.2f} {growth:>6.1f}x {versus:>10}")
    print("\nstorm counts: reading and parsing the window's events over one ZCOUNT a shard")
    storms = {(shards, name): median for shards, name, median, _ in rows if "storms" in name}
    for (shards, name), median in storms.items():
        if name.endswith("parse events"):
            zcount = storms[(shards, name.replace("parse events", "ZCOUNT script"))]
            print(f"{shards:>6}  {name.removesuffix(': parse events'):<20} {median / zcount:.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
