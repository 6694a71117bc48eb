"""Fleet queries at growing fleet sizes, beside a naive baseline, in the same run.

For each fleet size it loads a private redis-server with that many shards (the last hour of
samples through the real write script, so the rollups are real, and the rest of each shard's
`history_size` list with plain LPUSH), then times the data query of /uptime, /restart_stats and
fleet /performance, and a naive baseline that reads every shard's list (LRANGE) and averages in
Python. Medians and p99 over repeated runs; ratios against the smallest fleet and the baseline.

    .venv/bin/python benchmarks/fleet_queries.py [--shards 10,100,1000] [--samples 1000] [--runs 30]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from shardmon.connection import create_redis
from shardmon.embedded import embedded_redis
from shardmon.keys import Keys
from shardmon.models import Sample, new_event, parse_sample
from shardmon.store import Store

KEYS = Keys("bench")


def _sample(shard: int, ts: float) -> Sample:
    return Sample(ts=ts, shard=shard, cpu=10 + shard % 50, memory=40 + shard % 30,
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
    for shard in range(0, shards, max(1, shards // 100)):  # some restarts across the fleet
        event = new_event("startup", shards=(shard,), node="bench:1", system="bench",
                          environment="bench", version="1")  # fmt: skip
        await store.record_restart(event)


async def _naive_performance(client: aioredis.Redis, shards: int) -> float:
    """What a fleet answer costs without pre-aggregation: every list, parsed and averaged."""
    async with client.pipeline(transaction=False) as pipe:
        for shard in range(shards):
            pipe.lrange(KEYS.samples(shard), 0, -1)
        lists = await pipe.execute()
    cpu = [parse_sample(raw).cpu for values in lists for raw in values]
    return sum(cpu) / len(cpu)


async def _time(query: Callable[[], Awaitable[object]], runs: int) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await query()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.99))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", default="10,100,1000", help="fleet sizes (10,100,1000)")
    parser.add_argument("--samples", type=int, default=1000, help="samples per shard (1000)")
    parser.add_argument("--runs", type=int, default=30, help="timed runs per query (30)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.shards.split(",")]
    rows: list[tuple[int, str, float, float]] = []
    with embedded_redis() as server:
        client = create_redis(server.url, timeout_s=60)
        store = Store(client, KEYS, history_size=args.samples)
        for shards in sizes:
            started = time.monotonic()
            await _load(client, store, shards, args.samples)
            print(f"loaded {shards} shards x {args.samples} samples in "
                  f"{time.monotonic() - started:.0f} s", flush=True)  # fmt: skip
            queries: dict[str, Callable[[], Awaitable[object]]] = {
                "/uptime (latest + heartbeats)": lambda: store.fleet_summary(180),
                "/restart_stats": lambda: store.restart_stats(),
                "/performance fleet (rollups)": lambda: store.fleet_performance(3600),
                "naive: LRANGE every shard": lambda n=shards: _naive_performance(client, n),
            }
            runs = {name: args.runs if not name.startswith("naive") else max(3, args.runs // 10)
                    for name in queries}  # fmt: skip
            for name, query in queries.items():
                median, p99 = await _time(query, runs[name])
                rows.append((shards, name, median, p99))
        await client.aclose()
    smallest = sizes[0]
    print(f"\n{server.kind}; ms; x{smallest}: ratio to the median at {smallest} shards")
    grew, naive_title = f"x{smallest}", "naive/this"
    print(f"{'shards':>6}  {'query':<30} {'median':>9} {'p99':>9} {grew:>7} {naive_title:>10}")
    base = {name: median for shards, name, median, _ in rows if shards == smallest}
    naive = {shards: median for shards, name, median, _ in rows if name.startswith("naive")}
    for shards, name, median, p99 in rows:
        versus = "" if name.startswith("naive") else f"{naive[shards] / median:.1f}x"
        growth = median / base[name]
        print(f"{shards:>6}  {name:<30} {median:>9.2f} {p99:>9.2f} {growth:>6.1f}x {versus:>10}")


if __name__ == "__main__":
    asyncio.run(main())
