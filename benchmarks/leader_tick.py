"""The leader's tick with the gateway rules at 1,000, 5,000 and 20,000 shards, beside the same
tick judging only the rules that came before them, in the same run.

For each fleet size it loads a private redis-server: one sample a shard through the real write
script, carrying gateway state (1% of the shards above the memory threshold, 1% disconnected
for 10 minutes, 1% with a loop stall), three restarts a shard over 30 days and one IDENTIFY a
shard in the last day. Then it times `FleetJudge.tick` (read, judge, claim, roll up, write the
`fleet` figures): its duration, its longest event-loop callback (what it blocks the bot it runs
in for, as bot_loop.py times it) and how late a 1 ms timer fires meanwhile. "before" is the same
judge with the rules of before the gateway (memory, CPU, restart storm, offline, identify).

    .venv/bin/python benchmarks/leader_tick.py [--shards 1000,5000,20000] [--runs 15]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import time
from datetime import UTC, datetime

import redis.asyncio as aioredis
from bot_loop import _blocking, _lag

from shardmon.alerts import Alerter
from shardmon.connection import create_redis
from shardmon.demo.embedded import embedded_redis
from shardmon.judge import FleetJudge
from shardmon.keys import Keys
from shardmon.leader import LeaderElection, LeaseTiming
from shardmon.models import GatewayState, RestartType, Sample, new_event
from shardmon.rules import DEFAULT_RULES, Limits, Rule
from shardmon.sinks import LogSink
from shardmon.store import Store

KEYS = Keys("bench")
#: The rules of before the gateway's: the baseline judges only these.
BEFORE = {"memory", "cpu", "restart_storm", "offline", "identify_storm"}


def _sample(shard: int, ts: float) -> Sample:
    memory = 90.0 if shard % 100 == 7 else 40 + shard % 30  # 1% above the 85% threshold
    down = shard % 100 == 13  # 1% disconnected for 10 minutes
    gateway = GatewayState(
        connected=not down, since_s=600.0 if down else 86_000.0, last_connect=ts - 86_000,
        last_disconnect=ts - 600 if down else None, last_ready=ts - 86_000,
        disconnects_1h=int(down), disconnects_total=3, dispatch_age_s=0.4,
        stalls_1h=int(shard % 100 == 21), stalls_total=1,
    )  # fmt: skip
    return Sample(ts=ts, shard=shard, cpu=10 + shard % 50, memory=memory,
                  memory_used_mb=900.0, memory_total_mb=2048.0, disk=50.0, cores=2.0,
                  rss_mb=300.0, latency_ms=40.0 + shard % 20, guilds=1000, users=90_000,
                  node="bench:1", started_at=ts - 86400, gateway=gateway)  # fmt: skip


async def _load(client: aioredis.Redis, store: Store, shards: int) -> None:
    await client.flushall()
    now = time.time()
    types = list(RestartType)
    for i in range(shards * 3):  # 30 days of restarts, oldest first
        ago = (shards * 3 - i) * 30 * 86400 / (shards * 3)
        event = new_event(types[i % len(types)], shards=(i % shards,), node="bench:1",
                          system="bench", environment="bench", version="1",
                          now=datetime.fromtimestamp(now - ago, UTC))  # fmt: skip
        await store.record_restart(event)
    for shard in range(shards):
        await store.record_gateway_event(shard, "identify", now=now - 600)
    fresh = time.time()
    batch = [(_sample(s, fresh), int(fresh * 1e6) + s) for s in range(shards)]
    for start in range(0, shards, 500):
        await store.push_samples(batch[start : start + 500])


def _judge(store: Store, shards: int, rules: list[Rule]) -> FleetJudge:
    election = LeaderElection(store, "bench:1", LeaseTiming(3600))
    alerter = Alerter(store, "bench:1", [LogSink()])
    return FleetJudge(store, election, alerter, Limits(), shard_count=shards, rules=rules)


async def _measure(judge: FleetJudge, runs: int) -> dict[str, float]:
    await judge.tick()  # the first tick sends the alerts; later ones are deduplicated
    await judge.alerter.wait_for_deliveries()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await judge.tick()
        times.append((time.perf_counter() - started) * 1000)
    longest = [us / 1000 for us in (await _blocking(judge.tick, runs))[0]]
    late = [us / 1000 for us in await _lag(judge.tick, runs)]
    return {
        "tick": statistics.median(times),
        "tick worst": max(times),
        "longest callback": statistics.median(longest),
        "longest callback worst": max(longest),
        "1 ms timer late": statistics.median(late),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", default="1000,5000,20000", help="fleet sizes")
    parser.add_argument("--runs", type=int, default=15, help="timed runs of each (15)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the leader's alerts go to the log: keep it quiet
    sizes = [int(s) for s in args.shards.split(",")]
    results: dict[tuple[int, str], dict[str, float]] = {}
    with embedded_redis() as server:
        client = create_redis(server.url, timeout_s=300)
        store = Store(client, KEYS)
        for shards in sizes:
            started = time.monotonic()
            await _load(client, store, shards)
            print(f"loaded {shards} shards in {time.monotonic() - started:.0f} s", flush=True)
            for name, rules in (("before", [r for r in DEFAULT_RULES if r.name in BEFORE]),
                                ("with gateway", list(DEFAULT_RULES))):  # fmt: skip
                judge = _judge(store, shards, rules)
                assert await judge.election.campaign_once(), "the benchmark's node must lead"
                results[(shards, name)] = await _measure(judge, args.runs)
                await judge.election.release()
        summary = await store.fleet_totals(180)
        assert summary.online == sizes[-1], f"{summary.online} of {sizes[-1]} shards online"
        assert summary.disconnected == sizes[-1] // 100, "1% of the shards are disconnected"
        await client.aclose()
    print(f"\n{server.kind}; ms, medians of {args.runs} runs (worst in brackets)")
    print(f"{'shards':>6}  {'rules':<13} {'tick':>17} {'longest callback':>19} "
          f"{'1 ms timer late':>16} {'tick / before':>14}")  # fmt: skip
    for (shards, name), r in results.items():
        ratio = r["tick"] / results[(shards, "before")]["tick"]
        print(f"{shards:>6}  {name:<13} {r['tick']:>8.1f} ({r['tick worst']:>6.1f}) "
              f"{r['longest callback']:>9.2f} ({r['longest callback worst']:>6.2f}) "
              f"{r['1 ms timer late']:>16.2f} {ratio:>13.2f}x")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
