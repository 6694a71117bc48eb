"""Redis memory per shard at list-compress-depth 0 (Redis's default) and 1 (shardmon's own).

It starts two private redis-servers side by side, one at each depth, and writes the same
samples to both through the real write script, as live shards write them: each sample with its
own time, figures and gateway state, `--samples` a shard plus 10% more, so that every list is
full and being trimmed, the steady state. The writes alternate between the two servers, batch
by batch, so that both see the same machine at the same moments. Then it reports, per shard:
MEMORY USAGE of the sample list (SAMPLES 0: every node) and of every key of the deployment,
INFO's used_memory, and the median time of a batch's write, with the ratio of depth 0 to 1.

    .venv/bin/python benchmarks/redis_memory.py [--shards 100] [--samples 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time

import redis.asyncio as aioredis

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


async def _memory(client: aioredis.Redis, shards: int, samples: int) -> dict[str, float]:
    lists = [int(await client.memory_usage(KEYS.samples(s), samples=0) or 0)
             for s in range(shards)]  # fmt: skip
    total = 0
    async for key in client.scan_iter(f"{KEYS.prefix}*", count=1000):
        total += int(await client.memory_usage(key, samples=0) or 0)
    used = int((await client.info("memory"))["used_memory"])
    assert await client.llen(KEYS.samples(0)) == samples  # full, and trimmed
    return {
        "sample list / shard (KiB)": statistics.mean(lists) / 1024,
        "bytes / sample": statistics.mean(lists) / samples,
        "all keys / shard (KiB)": total / shards / 1024,
        "used_memory / shard (KiB)": used / shards / 1024,
    }


async def _side_by_side(
    urls: dict[str, str], shards: int, samples: int
) -> dict[str, dict[str, float]]:
    clients = {depth: create_redis(url, timeout_s=60) for depth, url in urls.items()}
    stores = {depth: Store(client, KEYS, history_size=samples) for depth, client in clients.items()}
    writes: dict[str, list[float]] = {depth: [] for depth in urls}
    rng = random.Random(7)
    start = 1_800_000_000.0  # a fixed time: the same bytes at both depths
    batch_size = min(500, shards)
    try:
        for i in range(samples + samples // 10):  # a sample a minute a shard
            batch = [(_sample(s, start + i * 60 + s / 1000, rng), i * shards + s + 1)
                     for s in range(shards)]  # fmt: skip
            order = list(urls) if i % 2 == 0 else list(reversed(urls))  # neither always first
            for first in range(0, shards, batch_size):
                for depth in order:
                    began = time.perf_counter()
                    await stores[depth].push_samples(batch[first : first + batch_size])
                    writes[depth].append((time.perf_counter() - began) * 1000)
        results = {}
        for depth, client in clients.items():
            results[depth] = await _memory(client, shards, samples)
            results[depth][f"write of {batch_size} shards, median (ms)"] = statistics.median(
                writes[depth]
            )
        return results
    finally:
        for client in clients.values():
            await client.aclose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=100, help="shards (100)")
    parser.add_argument("--samples", type=int, default=1000, help="samples per shard (1000)")
    args = parser.parse_args()
    with (
        embedded_redis(list_compress_depth="0") as zero,
        embedded_redis(list_compress_depth="1") as one,
    ):
        if not zero.kind.startswith("redis-server"):
            raise SystemExit("this benchmark needs redis-server: fakeredis has no compression")
        results = await _side_by_side({"0": zero.url, "1": one.url}, args.shards, args.samples)
    print(f"\n{zero.kind}; {args.shards} shards x {args.samples} samples (lists full and "
          "trimmed), the same samples at both depths, written alternately")  # fmt: skip
    print(f"{'':<34} {'depth 0':>10} {'depth 1':>10} {'0 / 1':>8}")
    for name in results["0"]:
        value_0, value_1 = results["0"][name], results["1"][name]
        print(f"{name:<34} {value_0:>10.1f} {value_1:>10.1f} {value_0 / value_1:>7.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
