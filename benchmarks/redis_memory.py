"""Redis memory per shard at list-compress-depth 0 (Redis's default) and 1 (shardmon's own).

For each depth, in the same run, it starts a private redis-server with that depth and writes
`--samples` samples for each of `--shards` shards through the real write script, as live shards
write them: each sample with its own time, figures and gateway state. Then it reports, per
shard: MEMORY USAGE of the sample list and of every key of the deployment, and INFO's
used_memory (what the whole server holds, its own overhead included), with the ratio of depth
0 to depth 1. Compression trades CPU for memory: the write's median time is shown beside it.

    .venv/bin/python benchmarks/redis_memory.py [--shards 100] [--samples 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time

from shardmon.connection import create_redis
from shardmon.demo.embedded import embedded_redis
from shardmon.keys import Keys
from shardmon.models import GatewayState, Sample
from shardmon.store import Store

KEYS = Keys("bench")


def _sample(shard: int, ts: float, rng: random.Random) -> Sample:
    """A live shard's sample: figures that move from one sample to the next."""
    gateway = GatewayState(connected=True, since_s=round(rng.uniform(0, 86400), 1),
                           last_connect=ts - rng.uniform(0, 86400),
                           dispatch_age_s=round(rng.uniform(0, 5), 2))  # fmt: skip
    return Sample(ts=ts, shard=shard, cpu=round(rng.uniform(2, 60), 1),
                  memory=round(rng.uniform(30, 70), 1),
                  memory_used_mb=round(rng.uniform(600, 1400), 1), memory_total_mb=2048.0,
                  disk=round(rng.uniform(40, 60), 1), cores=2.0,
                  rss_mb=round(rng.uniform(200, 400), 1),
                  latency_ms=round(rng.uniform(30, 120), 1),
                  guilds=1000 + rng.randrange(50), users=90_000 + rng.randrange(5000),
                  node=f"bench-{shard // 16}:{4000 + shard}", started_at=ts - 86400,
                  gateway=gateway)  # fmt: skip


async def _measure(url: str, shards: int, samples: int) -> dict[str, float]:
    client = create_redis(url, timeout_s=60)
    store = Store(client, KEYS, history_size=samples)
    rng = random.Random(7)  # the same samples at every depth
    start = time.time() - samples * 60
    writes: list[float] = []
    try:
        for i in range(samples):  # one write a minute a shard, the fleet in batches of 500
            batch = [(_sample(s, start + i * 60 + s / 1000, rng), i * shards + s + 1)
                     for s in range(shards)]  # fmt: skip
            for first in range(0, shards, 500):
                began = time.perf_counter()
                await store.push_samples(batch[first : first + 500])
                writes.append((time.perf_counter() - began) * 1000)
        lists = [int(await client.memory_usage(KEYS.samples(s), samples=0) or 0)
                 for s in range(shards)]  # fmt: skip
        total = 0
        async for key in client.scan_iter(f"{KEYS.prefix}*", count=1000):
            total += int(await client.memory_usage(key, samples=0) or 0)
        used = int((await client.info("memory"))["used_memory"])
        assert await client.llen(KEYS.samples(0)) == samples
    finally:
        await client.aclose()
    return {
        "sample list / shard (KiB)": statistics.mean(lists) / 1024,
        "bytes / sample": statistics.mean(lists) / samples,
        "all keys / shard (KiB)": total / shards / 1024,
        "used_memory / shard (KiB)": used / shards / 1024,
        "write of 500 shards, median (ms)": statistics.median(writes),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=100, help="shards (100)")
    parser.add_argument("--samples", type=int, default=1000, help="samples per shard (1000)")
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    kind = ""
    for depth in ("0", "1"):
        with embedded_redis(list_compress_depth=depth) as server:
            kind = server.kind
            results[depth] = await _measure(server.url, args.shards, args.samples)
    print(f"\n{kind}; {args.shards} shards x {args.samples} samples, the same at both depths")
    print(f"{'':<34} {'depth 0':>10} {'depth 1':>10} {'0 / 1':>8}")
    for name in results["0"]:
        zero, one = results["0"][name], results["1"][name]
        print(f"{name:<34} {zero:>10.1f} {one:>10.1f} {zero / one:>7.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
