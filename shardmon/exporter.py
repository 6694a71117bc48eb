"""Prometheus metrics of the whole fleet, read from Redis at each scrape (`shardmon exporter`).

One exporter serves the fleet: per-shard gauges from `latest` and `heartbeats`, restarts by
shard and type, storm counts, the leader and its epoch, and alerts sent by rule and kind.
The exposition is prometheus-client's: the text format 0.0.4 (`promtool check metrics` passes),
or OpenMetrics when the scraper asks for it. A collector made at each scrape holds what was
read from Redis; nothing is kept between scrapes.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable

import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from shardmon.clock import FleetClock
from shardmon.failures import REDIS_FAILURES, classify
from shardmon.keys import Keys
from shardmon.models import GatewayState, Sample, SessionStartLimit
from shardmon.rules import Limits
from shardmon.stats import clock_skews
from shardmon.store import Store

__all__ = ["make_app", "render_metrics"]

log = logging.getLogger(__name__)

MIB = 1024 * 1024


class _Metrics(Collector):
    """The metric families of one scrape, built from what was read, for prometheus-client's
    exposition (a registry collects them once)."""

    def __init__(self) -> None:
        self.families: list[Metric] = []

    def family(
        self, name: str, kind: str, help: str, samples: Iterable[tuple[dict[str, str], float]]
    ) -> None:
        """A gauge or a counter (`name` ends in `_total`); values that are not finite (a
        latency not measured yet) are left out."""
        samples = [(labels, value) for labels, value in samples if math.isfinite(value)]
        names = list(samples[0][0]) if samples else []  # every sample has the same labels
        metric_type = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
        metric = metric_type(name, help, labels=names)
        for labels, value in samples:
            metric.add_metric([labels[label] for label in names], value)
        self.families.append(metric)

    def collect(self) -> Iterable[Metric]:
        return self.families

    def exposition(self, accept: str) -> tuple[bytes, str]:
        """(the body, its content type): OpenMetrics where `accept` asks for it, else text."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        encode, content_type = choose_encoder(accept)
        return encode(registry), content_type


def _latency(sample: Sample, now: float) -> float:
    return math.nan if sample.latency_ms is None else sample.latency_ms / 1000


#: Per-shard gauges: name suffix, help, value of a sample (at scrape time `now`).
_PER_SHARD: list[tuple[str, str, Callable[[Sample, float], float]]] = [
    ("cpu_percent", "CPU use of the shard's process or container, percent.", lambda x, _: x.cpu),
    (
        "memory_percent",
        "Memory use, percent of the container limit or host.",
        lambda x, _: x.memory,
    ),
    ("disk_percent", "Disk use of the shard's filesystem, percent.", lambda x, _: x.disk),
    ("rss_bytes", "Resident memory of the shard's process.", lambda x, _: x.rss_mb * MIB),
    ("guilds", "Guilds on the shard.", lambda x, _: float(x.guilds)),
    ("users", "Members of the shard's guilds.", lambda x, _: float(x.users)),
    ("gateway_latency_seconds", "Gateway heartbeat latency.", _latency),
    ("sample_age_seconds", "Seconds since the shard's newest sample.", lambda x, now: now - x.ts),
]


#: Per-shard gateway figures: name suffix, type, help, value (state, the sample's age).
_PER_GATEWAY: list[tuple[str, str, str, Callable[[GatewayState, float], float]]] = [
    ("connected", "gauge", "1 while the shard's gateway is connected.",
     lambda g, _: float(g.connected)),
    ("dispatch_age_seconds", "gauge", "Seconds since the shard's last gateway dispatch.",
     lambda g, age: math.nan if g.dispatch_age_s is None else g.dispatch_age_s + max(0, age)),
    ("gateway_disconnects_total", "counter", "Gateway disconnects since the process started.",
     lambda g, _: float(g.disconnects_total)),
    ("loop_stalls_total", "counter",
     "discord.py heartbeat-blocked and can't-keep-up warnings since the process started.",
     lambda g, _: float(g.stalls_total)),
]  # fmt: skip

#: The bot's session start limit (the IDENTIFY budget) as the leader last read it.
_SESSION_START: list[tuple[str, str, Callable[[SessionStartLimit, float], float]]] = [
    ("limit", "Session starts allowed per reset period (total).", lambda x, _: float(x.total)),
    ("remaining", "Session starts left when last read.", lambda x, _: float(x.remaining)),
    ("reset_seconds", "Seconds until the session start limit resets.",
     lambda x, now: max(0.0, x.resets_at - now)),
    ("max_concurrency", "IDENTIFYs allowed per 5 seconds.", lambda x, _: float(x.max_concurrency)),
]  # fmt: skip


def _up(online: bool, sample: Sample | None) -> bool:
    gateway = None if sample is None else sample.gateway
    return online and (gateway is None or gateway.connected)


async def render_metrics(
    store: Store, limits: Limits, shard_count: int, accept: str = ""
) -> tuple[bytes, str]:
    """The fleet's metrics now, and their content type (OpenMetrics if `accept` asks)."""
    now = store.clock.now()
    started = time.monotonic()
    summary = await store.fleet_summary(limits.offline_after_s, now=now)
    storms = await store.restart_storms(limits, shard_count, now=now)
    leadership = await store.leader()
    restart_counts = await store.restart_counts()
    alert_counts = await store.alert_counts()
    m = _Metrics()
    shards = summary.shards
    up = [({"shard": str(s.shard)}, float(_up(s.online, s.sample))) for s in shards]
    m.family(
        "shardmon_shard_up", "gauge",
        "1 when the shard sent a heartbeat recently and its gateway is connected (where known).",
        up,
    )  # fmt: skip
    sampled = [s.sample for s in shards if s.sample is not None]
    for suffix, help, value in _PER_SHARD:
        samples = [({"shard": str(x.shard)}, value(x, now)) for x in sampled]
        m.family(f"shardmon_shard_{suffix}", "gauge", help, samples)
    gateways = [(x.shard, x.gateway, now - x.ts) for x in sampled if x.gateway is not None]
    for suffix, kind, help, read in _PER_GATEWAY:
        values = [({"shard": str(shard)}, read(g, age)) for shard, g, age in gateways]
        m.family(f"shardmon_shard_{suffix}", kind, help, values)
    m.family(
        "shardmon_clock_skew_seconds", "gauge",
        "The node's host clock minus Redis's, at its newest sample (fleet time is Redis's).",
        [({"node": node}, skew) for node, skew in clock_skews(sampled).items()],
    )  # fmt: skip
    limit = await store.session_limit()
    for suffix, help, of_limit in _SESSION_START:
        values = [] if limit is None else [({}, of_limit(limit, now))]
        m.family(f"shardmon_session_start_{suffix}", "gauge", help, values)
    m.family(
        "shardmon_restarts_total", "counter", "Restarts recorded, by shard and type.",
        [({"shard": str(s), "type": t}, float(n)) for (s, t), n in sorted(restart_counts.items())],
    )  # fmt: skip
    m.family(
        "shardmon_restart_storm_restarts", "gauge",
        f"Restarts of the shard within the storm window ({storms.window_s:g} s).",
        [({"shard": str(s)}, float(n)) for s, n in sorted(storms.restarts.items())],
    )  # fmt: skip
    m.family("shardmon_leader_epoch", "gauge", "Fencing epoch of the current leadership.",
             [({}, float(leadership.epoch))])  # fmt: skip
    m.family("shardmon_leader_info", "gauge", "1 for the node that leads now.",
             [({"node": leadership.node}, 1.0)] if leadership.node else [])  # fmt: skip
    m.family(
        "shardmon_alerts_total", "counter", "Alerts delivered, by rule and kind.",
        [({"rule": r, "kind": k}, float(n)) for (r, k), n in sorted(alert_counts.items())],
    )  # fmt: skip
    m.family(
        "shardmon_malformed_values", "gauge",
        "Values in Redis that did not parse at this scrape, by key (skipped).",
        [({"key": key}, float(n)) for key, n in sorted(store.skipped.items())],
    )  # fmt: skip
    m.family("shardmon_scrape_duration_seconds", "gauge", "Time this scrape took.",
             [({}, time.monotonic() - started)])  # fmt: skip
    return m.exposition(accept)


def make_app(
    client: aioredis.Redis, keys: Keys, limits: Limits, shard_count: int
) -> web.Application:
    """An aiohttp app serving `/metrics`; a Redis outage answers 503 with the reason."""
    clock = FleetClock()  # measured again when due, not at every scrape

    async def metrics(request: web.Request) -> web.Response:
        store = Store(client, keys)  # a store per scrape: its skipped counts are this scrape's
        store.clock = clock
        try:
            await store.sync_clock()
            body, content_type = await render_metrics(
                store, limits, shard_count, request.headers.get("Accept", "")
            )
        except REDIS_FAILURES as exc:
            failure = classify(exc)
            said = (
                f"unavailable: {type(exc).__name__}"
                if failure.outage
                else f"refused a read: {failure}"
            )
            log.warning("scrape failed: Redis %s", said)
            return web.Response(status=503, text=f"Redis {said}\n")
        return web.Response(body=body, headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app
