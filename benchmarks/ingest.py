"""Ingest cost: Redis server CPU per sample, beside a raw LPUSH measured the same way.

Pushes samples of many shards through `Store.push_samples` (one EVALSHA each: one round trip)
and, in the same run against the same private redis-server, raw LPUSHes of the same JSON onto
lists just as full. Lists are first filled to `history_size`, so the script trims on every write
as it does in a bot that has run for a while. Two measures of the server's CPU per write:

- execution: INFO commandstats usec per call (the command alone, as Redis accounts it);
- whole server: the delta of INFO cpu (user + sys) over the phase, per write: what a write
  really costs the server, with reading the request and writing the reply.

Repeated and reported as medians, with the ratio of each measure to the raw LPUSH.

    .venv/bin/python benchmarks/ingest.py [--samples 20000] [--shards 200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from shardmon.connection import create_redis
from shardmon.demo.embedded import embedded_redis
from shardmon.keys import Keys
from shardmon.models import Sample
from shardmon.store import Store

KEYS = Keys("bench")
HISTORY_SIZE = 1000


def _sample(shard: int, ts: float) -> Sample:
    return Sample(ts=ts, shard=shard, cpu=21.5, memory=48.25, memory_used_mb=980.0,
                  memory_total_mb=2048.0, disk=51.0, cores=2.0, rss_mb=310.4, latency_ms=44.0,
                  guilds=1210, users=95_000, node="bench:1", started_at=ts - 3600)  # fmt: skip


async def _server_cpu_s(client: aioredis.Redis) -> float:
    cpu = await client.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


async def _measure(
    client: aioredis.Redis, command: str, writes: int, write: Callable[[int], Awaitable[object]]
) -> tuple[float, float]:
    """(commandstats usec per call, whole-server CPU usec per write) of `writes` writes."""
    await client.config_resetstat()
    cpu_before = await _server_cpu_s(client)
    for i in range(writes):
        await write(i)
    cpu_after = await _server_cpu_s(client)
    entry = (await client.info("commandstats"))[f"cmdstat_{command}"]
    # The two INFO calls around the phase cost the server a few µs: negligible over `writes`.
    return float(entry["usec"]) / int(entry["calls"]), (cpu_after - cpu_before) * 1e6 / writes


async def _fill(client: aioredis.Redis, shards: int) -> None:
    """Every shard's list, and every raw list, full: the steady state of a running bot."""
    raw = _sample(0, time.time()).to_json()
    for shard in range(shards):
        async with client.pipeline(transaction=False) as pipe:
            pipe.delete(KEYS.samples(shard), f"bench:raw:{shard}")
            pipe.rpush(KEYS.samples(shard), *([raw] * HISTORY_SIZE))
            pipe.rpush(f"bench:raw:{shard}", *([raw] * HISTORY_SIZE))
            await pipe.execute()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20_000, help="writes per phase (20000)")
    parser.add_argument("--shards", type=int, default=200, help="shards written to (200)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, for medians (5)")
    args = parser.parse_args()
    script: list[tuple[float, float]] = []
    lpush: list[tuple[float, float]] = []
    with embedded_redis() as server:
        client = create_redis(server.url, timeout_s=60)
        store = Store(client, KEYS, history_size=HISTORY_SIZE)
        await _fill(client, args.shards)
        now, raw = time.time(), _sample(0, time.time()).to_json()
        samples = [_sample(i % args.shards, now) for i in range(args.shards)]
        for r in range(args.rounds):
            seq0 = (r + 1) * 10**9

            async def push(i: int, seq0: int = seq0) -> object:
                return await store.push_samples([(samples[i % args.shards], seq0 + i)])

            async def push_raw(i: int) -> object:
                return await client.lpush(f"bench:raw:{i % args.shards}", raw)

            script.append(await _measure(client, "evalsha", args.samples, push))
            lpush.append(await _measure(client, "lpush", args.samples, push_raw))
        round_trips = await _round_trips(client, store, samples[0])
        await client.aclose()
    exec_script, exec_lpush = (statistics.median(m[0] for m in ms) for ms in (script, lpush))
    cpu_script, cpu_lpush = (statistics.median(m[1] for m in ms) for ms in (script, lpush))
    print(f"{server.kind}; {args.samples} writes a phase over {args.shards} full lists of "
          f"{HISTORY_SIZE}, {args.rounds} rounds; server CPU µs per write, medians")  # fmt: skip
    print(f"{'write':<36} {'round trips':>11} {'execution':>10} {'whole server':>13}")
    print(f"{'push_sample script':<36} {round_trips:>11} {exec_script:>10.2f} {cpu_script:>13.2f}")
    print(f"{'raw LPUSH of the same JSON':<36} {1:>11} {exec_lpush:>10.2f} {cpu_lpush:>13.2f}")
    print(f"{'ratio script / raw LPUSH':<36} {'':>11} {exec_script / exec_lpush:>9.1f}x "
          f"{cpu_script / cpu_lpush:>12.1f}x   (target: at most 10x)")  # fmt: skip


async def _round_trips(client: aioredis.Redis, store: Store, sample: Sample) -> int:
    """Requests sent to the server for one more sample, counted on the client's connection."""
    connection_class = client.connection_pool.connection_class
    send = connection_class.send_packed_command
    sent = 0

    async def counting(self: object, command: object, check_health: bool = True) -> None:
        nonlocal sent
        sent += 1
        await send(self, command, check_health)  # type: ignore[arg-type]

    connection_class.send_packed_command = counting  # type: ignore[method-assign]
    try:
        await store.push_samples([(sample, 10**15)])
    finally:
        connection_class.send_packed_command = send  # type: ignore[method-assign]
    return sent


if __name__ == "__main__":
    asyncio.run(main())
