"""Pure aggregation of samples, rollups and restart events (no Redis, no Discord)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from shardmon.models import MalformedData, ProcessMetrics, Sample

__all__ = [
    "ROLLUP_SCALE",
    "SERIES_FIGURES",
    "FleetSummary",
    "Performance",
    "RestartStats",
    "ShardStatus",
    "Spread",
    "clock_skews",
    "fleet_fields",
    "merge_rollups",
    "parse_fleet_fields",
    "restart_stats",
    "rollup_columns",
    "summarize_fleet",
    "summarize_rollups",
    "summarize_samples",
]

#: Rollup sums, mins and maxes are integers in hundredths (HINCRBY, which never drifts).
ROLLUP_SCALE = 100
DAYS_PER_MONTH = 30


@dataclass(frozen=True, slots=True)
class Spread:
    """Average, peak and low of one metric."""

    average: float
    peak: float
    low: float


@dataclass(frozen=True, slots=True)
class Performance:
    """Performance over a set of samples: count and spreads (None where nothing was measured)."""

    samples: int
    memory: Spread | None
    cpu: Spread | None
    latency_ms: Spread | None
    skipped: int = 0
    #: Oldest-first averages over time (a minute a point for the fleet), for sparklines.
    memory_trend: tuple[float, ...] = ()
    cpu_trend: tuple[float, ...] = ()
    #: When each point of the trends was taken, where known (a shard's samples).
    trend_times: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class RestartStats:
    total: int
    by_type: dict[str, int]
    per_day: float
    per_month: float
    last_hour: int
    last_24h: int
    first_at: float | None
    skipped: int = 0


def _spread(values: Sequence[float]) -> Spread | None:
    if not values:
        return None
    peak, low = max(values), min(values)
    average = min(peak, max(low, sum(values) / len(values)))  # no float rounding past the bounds
    return Spread(average=average, peak=peak, low=low)


def summarize_samples(samples: Sequence[ProcessMetrics], skipped: int = 0) -> Performance:
    """Spreads of samples given newest first (as the lists hold them)."""
    latencies = [
        s.latency_ms for s in samples if isinstance(s, Sample) and s.latency_ms is not None
    ]
    return Performance(
        samples=len(samples),
        memory=_spread([s.memory for s in samples]),
        cpu=_spread([s.cpu for s in samples]),
        latency_ms=_spread(latencies),
        skipped=skipped,
        memory_trend=tuple(s.memory for s in reversed(samples)),
        cpu_trend=tuple(s.cpu for s in reversed(samples)),
        trend_times=tuple(s.ts for s in reversed(samples)),
    )


def _rollup_spread(buckets: Sequence[Mapping[str, int]], name: str, count: str) -> Spread | None:
    used = [b for b in buckets if b.get(count, 0) > 0 and f"{name}_sum" in b]
    n = sum(b[count] for b in used)
    if not n:
        return None
    return Spread(
        average=sum(b[f"{name}_sum"] for b in used) / n / ROLLUP_SCALE,
        peak=max(b[f"{name}_max"] for b in used) / ROLLUP_SCALE,
        low=min(b[f"{name}_min"] for b in used) / ROLLUP_SCALE,
    )


def _valid_bucket(raw: Mapping[str, str]) -> dict[str, int]:
    """A rollup hash as the write script writes it: integers, with a min and max of each
    figure it counts; KeyError or ValueError otherwise."""
    bucket = {key: int(value) for key, value in raw.items()}
    for name in ("cpu", "mem"):
        if bucket["n"] and not {f"{name}_min", f"{name}_max"} <= bucket.keys():
            raise KeyError(name)
    if bucket.get("lat_n") and not {"lat_min", "lat_max", "lat_sum"} <= bucket.keys():
        raise KeyError("lat")
    return bucket


def _valid_buckets(raw_buckets: Iterable[Mapping[str, str]]) -> tuple[list[dict[str, int]], int]:
    """The rollup hashes that hold what the write script writes, and how many did not."""
    buckets: list[dict[str, int]] = []
    skipped = 0
    for raw in raw_buckets:
        if not raw:
            continue
        try:
            buckets.append(_valid_bucket(raw))
        except (ValueError, KeyError):
            skipped += 1
    return buckets, skipped


#: The columns of `rollup_columns`: a figure's average, peak and low (memory and CPU in
#: percent, latency in ms), each from its rollup fields and the count it is averaged over.
SERIES_FIGURES = {"memory": ("mem", "n"), "cpu": ("cpu", "n"), "latency_ms": ("lat", "lat_n")}


def rollup_columns(
    starts: Sequence[int], raw_buckets: Sequence[Mapping[str, str]]
) -> tuple[dict[str, list[float | None]], int]:
    """Rollup hashes (one a minute or an hour, oldest first, starting at `starts`) as chart
    columns: `t`, `samples`, and `<figure>_avg`, `_peak`, `_low` of SERIES_FIGURES, None where
    a bucket has nothing. Returns them and how many buckets did not parse (left empty)."""
    columns: dict[str, list[float | None]] = {"t": [float(t) for t in starts], "samples": []}
    for figure in SERIES_FIGURES:
        for part in ("avg", "peak", "low"):
            columns[f"{figure}_{part}"] = []
    skipped = 0
    for raw in raw_buckets:
        bucket: dict[str, int] = {}
        if raw:
            try:
                bucket = _valid_bucket(raw)
            except (ValueError, KeyError):
                skipped += 1
        columns["samples"].append(bucket.get("n", 0))
        for figure, (name, count) in SERIES_FIGURES.items():
            n = bucket.get(count, 0)
            has = n > 0 and f"{name}_sum" in bucket
            columns[f"{figure}_avg"].append(
                bucket[f"{name}_sum"] / n / ROLLUP_SCALE if has else None
            )
            columns[f"{figure}_peak"].append(bucket[f"{name}_max"] / ROLLUP_SCALE if has else None)
            columns[f"{figure}_low"].append(bucket[f"{name}_min"] / ROLLUP_SCALE if has else None)
    return columns, skipped


def merge_rollups(raw_buckets: Iterable[Mapping[str, str]]) -> tuple[dict[str, int], int]:
    """One bucket from many (minutes into an hour): counts and sums added, the lowest low and
    the highest peak kept. Returns it and how many malformed buckets were skipped."""
    buckets, skipped = _valid_buckets(raw_buckets)
    merged: dict[str, int] = {}
    for bucket in buckets:
        for field, value in bucket.items():
            if field.endswith("_min"):
                merged[field] = min(merged.get(field, value), value)
            elif field.endswith("_max"):
                merged[field] = max(merged.get(field, value), value)
            else:
                merged[field] = merged.get(field, 0) + value
    return merged, skipped


def summarize_rollups(raw_buckets: Iterable[Mapping[str, str]]) -> Performance:
    """Fleet performance from rollup hashes given oldest first; a bucket with a non-integer
    field is skipped."""
    buckets, skipped = _valid_buckets(raw_buckets)
    filled = [b for b in buckets if b.get("n")]
    return Performance(
        samples=sum(b["n"] for b in buckets),
        memory=_rollup_spread(buckets, "mem", "n"),
        cpu=_rollup_spread(buckets, "cpu", "n"),
        latency_ms=_rollup_spread(buckets, "lat", "lat_n"),
        skipped=skipped,
        memory_trend=tuple(b["mem_sum"] / b["n"] / ROLLUP_SCALE for b in filled),
        cpu_trend=tuple(b["cpu_sum"] / b["n"] / ROLLUP_SCALE for b in filled),
    )


def restart_stats(
    by_type: Mapping[str, int],
    *,
    first_at: float | None,
    now: float,
    last_hour: int,
    last_24h: int,
    skipped: int = 0,
) -> RestartStats:
    """Totals, types and rates; the rate spans from the first event to now, at least a day."""
    total = sum(by_type.values())
    days = max(1.0, (now - first_at) / 86400) if first_at is not None else 1.0
    per_day = total / days
    return RestartStats(
        total=total,
        by_type=dict(Counter({t: n for t, n in by_type.items() if n}).most_common()),
        per_day=per_day,
        per_month=per_day * DAYS_PER_MONTH,
        last_hour=last_hour,
        last_24h=last_24h,
        first_at=first_at,
        skipped=skipped,
    )


@dataclass(frozen=True, slots=True)
class ShardStatus:
    """One shard as /shards shows it."""

    shard: int
    online: bool
    last_seen: float | None
    sample: Sample | None


@dataclass(frozen=True, slots=True)
class FleetSummary:
    """The whole fleet now, from each shard's latest sample and heartbeat."""

    shards: list[ShardStatus]
    online: int
    offline: int
    guilds: int
    users: int
    memory: Spread | None
    cpu: Spread | None
    disk: Spread | None
    latency_ms: Spread | None
    oldest_start: float | None
    newest_start: float | None
    #: When these figures were taken (the leader's tick for the pre-aggregated `fleet` key).
    measured_at: float | None = None
    #: Online shards whose sample carries gateway state, and those of them connected now.
    gateway_known: int = 0
    connected: int = 0

    @property
    def disconnected(self) -> int:
        """Online shards whose process reports while their gateway is disconnected."""
        return self.gateway_known - self.connected

    @property
    def up(self) -> int:
        """Shards up: process reporting and gateway connected (where it is known)."""
        return self.online - self.disconnected


_SPREADS = ("memory", "cpu", "disk", "latency_ms")
_COUNTS = ("online", "offline", "guilds", "users")
_GATEWAY_COUNTS = ("gateway_known", "connected")  # absent from a `fleet` hash before them


def fleet_fields(summary: FleetSummary) -> dict[str, str]:
    """A summary as the flat `fleet` hash holds it (readable with redis-cli HGETALL)."""
    fields = {name: str(getattr(summary, name)) for name in (*_COUNTS, *_GATEWAY_COUNTS)}
    fields["ts"] = repr(summary.measured_at)
    for name in _SPREADS:
        spread: Spread | None = getattr(summary, name)
        if spread is not None:
            fields |= {f"{name}_{part}": repr(getattr(spread, part)) for part in Spread.__slots__}
    for name in ("oldest_start", "newest_start"):
        if getattr(summary, name) is not None:
            fields[name] = repr(getattr(summary, name))
    return fields


def parse_fleet_fields(raw: Mapping[str, str]) -> FleetSummary:
    """The `fleet` hash back into a summary without its shard list; MalformedData when a
    field is missing or not a finite number (someone edited it by hand)."""
    try:
        counts = {name: int(raw[name]) for name in _COUNTS}
        counts |= {name: int(raw.get(name, 0)) for name in _GATEWAY_COUNTS}
        numbers = {
            k: float(v) for k, v in raw.items() if k not in _COUNTS and k not in _GATEWAY_COUNTS
        }
        if counts["connected"] > counts["gateway_known"]:
            raise ValueError("more shards connected than known")
        if not all(math.isfinite(v) for v in numbers.values()) or min(counts.values()) < 0:
            raise ValueError("not finite")
        spreads = {
            name: Spread(*(numbers[f"{name}_{part}"] for part in Spread.__slots__))
            if f"{name}_average" in numbers
            else None
            for name in _SPREADS
        }
        return FleetSummary(
            shards=[],
            online=counts["online"],
            offline=counts["offline"],
            guilds=counts["guilds"],
            users=counts["users"],
            memory=spreads["memory"],
            cpu=spreads["cpu"],
            disk=spreads["disk"],
            latency_ms=spreads["latency_ms"],
            oldest_start=numbers.get("oldest_start"),
            newest_start=numbers.get("newest_start"),
            measured_at=numbers["ts"],
            gateway_known=counts["gateway_known"],
            connected=counts["connected"],
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise MalformedData(f"not a fleet summary ({exc})") from None


def summarize_fleet(
    latest: Mapping[int, Sample],
    heartbeats: Mapping[int, float],
    *,
    now: float,
    offline_after_s: float,
    with_shards: bool = True,
) -> FleetSummary:
    """Online shards' figures summed or spread; a shard is offline after `offline_after_s`.
    Without `with_shards` the summary lists no shard (the leader's `fleet` totals: at 20,000
    shards, a status object a shard costs more than the sums)."""
    oldest = now - offline_after_s
    shard_ids = set(latest) | set(heartbeats)
    alive = {shard for shard in shard_ids if heartbeats.get(shard, -math.inf) >= oldest}
    statuses = (
        [ShardStatus(s, s in alive, heartbeats.get(s), latest.get(s)) for s in sorted(shard_ids)]
        if with_shards
        else []
    )
    live = [sample for shard, sample in latest.items() if shard in alive]
    starts = [s.started_at for s in live if s.started_at is not None]
    latencies = [s.latency_ms for s in live if s.latency_ms is not None]
    gateways = [s.gateway for s in live if s.gateway is not None]
    return FleetSummary(
        shards=statuses,
        online=len(alive),
        offline=len(shard_ids) - len(alive),
        guilds=sum(s.guilds for s in live),
        users=sum(s.users for s in live),
        memory=_spread([s.memory for s in live]),
        cpu=_spread([s.cpu for s in live]),
        disk=_spread([s.disk for s in live]),
        latency_ms=_spread(latencies),
        oldest_start=min(starts, default=None),
        newest_start=max(starts, default=None),
        measured_at=now,
        gateway_known=len(gateways),
        connected=sum(g.connected for g in gateways),
    )


def clock_skews(samples: Iterable[Sample]) -> dict[str, float]:
    """Node -> its host's clock minus Redis's, from the node's newest sample that measured it."""
    newest: dict[str, Sample] = {}
    for sample in samples:
        if sample.clock_skew_s is None:
            continue
        seen = newest.get(sample.node)
        if seen is None or sample.ts > seen.ts:
            newest[sample.node] = sample
    return {node: float(sample.clock_skew_s or 0.0) for node, sample in sorted(newest.items())}
