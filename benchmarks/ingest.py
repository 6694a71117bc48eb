"""Ingest cost: Redis server CPU per sample, beside a raw LPUSH measured the same way.

Pushes samples of many shards through `Store.push_samples` (one EVALSHA each: one round trip)
and, in the same run against the same private redis-server, raw LPUSHes of the same JSON.
Redis' own accounting (INFO commandstats: usec per call) gives the server CPU of each, so the
client's speed and this machine's noise barely matter. Repeated and reported as medians.

    .venv/bin/python benchmarks/ingest.py [--samples 20000] [--shards 1000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import redis.asyncio as aioredis

from shardmon.connection import create_redis
from shardmon.embedded import embedded_redis
from shardmon.keys import Keys
from shardmon.models import Sample
from shardmon.store import Store


def _sample(shard: int, ts: float) -> Sample:
    return Sample(ts=ts, shard=shard, cpu=21.5, memory=48.25, memory_used_mb=980.0,
                  memory_total_mb=2048.0, disk=51.0, cores=2.0, rss_mb=310.4, latency_ms=44.0,
                  guilds=1210, users=95_000, node="bench:1", started_at=ts - 3600)  # fmt: skip


async def _usec_per_call(client: aioredis.Redis, command: str) -> tuple[float, int]:
    stats = await client.info("commandstats")
    entry = stats.get(f"cmdstat_{command}", {})
    return float(entry.get("usec", 0)), int(entry.get("calls", 0))


async def _round(
    client: aioredis.Redis, samples: int, shards: int, seq0: int
) -> tuple[float, float]:
    """(server usec per sample through the script, per raw LPUSH), each phase on its own stats."""
    store = Store(client, Keys("bench"))
    now = time.time()
    await client.config_resetstat()
    for i in range(samples):
        await store.push_samples([(_sample(i % shards, now + i / 1000), seq0 + i)])
    script_usec, script_calls = await _usec_per_call(client, "evalsha")
    raw = _sample(0, now).to_json()
    await client.config_resetstat()
    for i in range(samples):
        await client.lpush(f"bench:raw:{i % shards}", raw)
    lpush_usec, lpush_calls = await _usec_per_call(client, "lpush")
    return script_usec / script_calls, lpush_usec / lpush_calls


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--shards", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with embedded_redis() as server:
        client = create_redis(server.url)
        results = []
        for r in range(args.rounds):
            results.append(await _round(client, args.samples, args.shards, (r + 1) * 10**9))
        await client.aclose()
    script = statistics.median(r[0] for r in results)
    lpush = statistics.median(r[1] for r in results)
    print(f"{server.kind}; {args.samples} samples over {args.shards} shards, {args.rounds} rounds")
    print(f"{'write':<34} {'server usec/call (median)':>26}")
    print(f"{'push_sample script (1 round trip)':<34} {script:>26.2f}")
    print(f"{'raw LPUSH of the same JSON':<34} {lpush:>26.2f}")
    print(f"ratio script / raw LPUSH: {script / lpush:.1f}x (target: at most 10x)")


if __name__ == "__main__":
    asyncio.run(main())
