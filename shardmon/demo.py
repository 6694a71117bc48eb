"""`shardmon demo`: a small fleet of monitored shards with synthetic gateway load.

Every shard runs its own `SystemMonitor` against one Redis (the configured one, else an embedded
one), logs its startup, and samples every second; one shard crash-loops into a restart storm.
At the end the demo prints what the fleet looks like from Redis, and the redis-cli commands that
show the same.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from shardmon.collector import Collector
from shardmon.connection import create_redis, redact_url
from shardmon.embedded import embedded_redis
from shardmon.keys import Keys
from shardmon.monitor import GatewayStats, MonitorConfig, SystemMonitor
from shardmon.render import format_uptime
from shardmon.settings import load_settings
from shardmon.stats import Performance

__all__ = ["run_demo"]


def _synthetic_gateway(shard: int) -> GatewayStats:
    return GatewayStats(
        latency_ms=round(random.uniform(35, 90), 1),
        guilds=900 + 37 * shard,
        users=45_000 + 1_800 * shard,
    )


def _spread(performance: Performance) -> str:
    if performance.memory is None or performance.cpu is None:
        return "no samples"
    m, c = performance.memory, performance.cpu
    return (
        f"{performance.samples} samples; memory avg {m.average:.1f}% peak {m.peak:.1f}% "
        f"low {m.low:.1f}%; CPU avg {c.average:.1f}% peak {c.peak:.1f}% low {c.low:.1f}%"
    )


async def _run(url: str, shards: int, duration_s: float, journal_dir: Path) -> None:
    settings = load_settings()
    deployment = settings.deployment if "deployment" in settings.model_fields_set else "demo"
    keys = Keys(deployment)
    client = create_redis(url)
    base = MonitorConfig(
        deployment=deployment,
        shard_count=shards,
        system_name="shardmon demo bot",
        environment="Demo",
        version="1.0.0",
        sample_interval_s=1,
        history_size=settings.history_size,
        journal_path=journal_dir / "system_restarts.log",
    )
    collector = Collector(disk_path=journal_dir)  # the shards share this machine
    monitors = [
        SystemMonitor(
            dataclasses.replace(base, shard_ids=(shard,), node=f"demo-host:{1000 + shard}"),
            client,
            gateway=_synthetic_gateway,
            collector=collector,
        )
        for shard in range(shards)
    ]
    print(f"starting {shards} shards of deployment '{deployment}', sampling every second")
    for monitor in monitors:
        await monitor.log_restart("startup")
        await monitor.start()
    await monitors[0].log_restart("deployment", {"changelog": "demo release"}, version="1.0.0")

    looping = monitors[-1]
    started = time.monotonic()
    crashes = reported = 0
    while (elapsed := time.monotonic() - started) < duration_s:
        # The last shard crash-loops: three crashes spread over the run make a restart storm.
        if crashes < 3 and elapsed >= (crashes + 1) * duration_s / 4:
            crashes += 1
            await looping.log_restart("crash", {"error": "RuntimeError: gateway loop died"})
            print(f"  {elapsed:4.1f}s: shard {looping.config.shard_ids[0]} crashed ({crashes}/3)")
        if elapsed >= reported:
            samples = await client.llen(keys.samples(0))
            print(f"  {elapsed:4.1f}s of {duration_s:.0f}s: {samples} samples of shard 0 in Redis")
            reported += 5
        await asyncio.sleep(min(0.25, duration_s - elapsed))
    for monitor in monitors:
        await monitor.stop()

    store = monitors[0].store
    print("\n== fleet (latest sample per shard) ==")
    print(f"{'shard':>5} {'cpu%':>6} {'mem%':>6} {'latency':>8} {'guilds':>7} {'uptime':>8}")
    for shard, sample in sorted((await store.latest_samples()).items()):
        info = await store.shard_info(shard)
        uptime = format_uptime(time.time() - info.started_at) if info else "?"
        latency = f"{sample.latency_ms:.0f}ms" if sample.latency_ms is not None else "-"
        print(
            f"{shard:>5} {sample.cpu:>6.1f} {sample.memory:>6.1f} {latency:>8} "
            f"{sample.guilds:>7} {uptime:>8}"
        )

    print("\n== recent restarts ==")
    for event in await store.restart_history(limit=8):
        when, kind = event.timestamp[:19].replace("T", " "), event.type.value
        print(f"  {when}  {kind:<10} shard {event.shard}  v{event.version}")

    stats = await store.restart_stats()
    print("\n== restart statistics ==")
    print(f"  total {stats.total}; by type {stats.by_type}")
    print(f"  last hour {stats.last_hour}, last 24 h {stats.last_24h}, per day {stats.per_day:.1f}")
    for monitor in monitors:
        shard = monitor.config.shard_ids[0]
        storm = await store.restart_storm_count(shard, base.restart_window_s)
        if storm >= base.restart_alert_threshold:
            print(f"  restart storm: shard {shard} restarted {storm} times in the last hour")

    print("\n== performance ==")
    print(f"  fleet, last hour: {_spread(await store.fleet_performance())}")
    print(f"  shard 0: {_spread(await store.shard_performance(0))}")

    print("\n== the same with redis-cli (point SHARDMON_REDIS_URL at a Redis to keep the data) ==")
    print(f"  redis-cli -u {redact_url(url)} ZCOUNT '{keys.shard_restarts(shards - 1)}' "
          "$(( $(date +%s) - 3600 )) +inf")  # fmt: skip
    print(f"  redis-cli -u {redact_url(url)} LRANGE '{keys.samples(0)}' 0 2")
    print(f"  redis-cli -u {redact_url(url)} HGETALL '{keys.latest}'")
    print(f"  redis-cli -u {redact_url(url)} ZREVRANGE '{keys.restarts}' 0 4")
    await client.aclose()


def run_demo(shards: int = 4, duration_s: float = 20) -> None:
    """Run the demo against `SHARDMON_REDIS_URL`, or an embedded Redis when none is set."""
    settings = load_settings()
    with ExitStack() as stack:
        if settings.redis_url is not None:
            url = settings.redis_url.get_secret_value()
            print(f"using Redis at {redact_url(url)} (SHARDMON_REDIS_URL)")
        else:
            embedded = stack.enter_context(embedded_redis())
            url = embedded.url
            print(f"no SHARDMON_REDIS_URL: using an embedded {embedded.kind} at {url}")
        journal_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="shardmon-")))
        asyncio.run(_run(url, shards, duration_s, journal_dir))
