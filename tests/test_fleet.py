"""Real OS processes, one per shard, electing a leader and alerting through one Redis."""

from __future__ import annotations

import itertools
import json
import signal
import time
from collections import defaultdict
from pathlib import Path

import redis
from helpers import wait_for

from shardmon.demo.fleet import LocalFleet
from shardmon.keys import Keys
from shardmon.leader import LeaseTiming

LEASE = LeaseTiming(1.5)
DEDUPE_S = 4
SETTINGS = {
    "deployment": "fleet",
    "sample_interval_s": "0.3",
    "leader_lease_s": str(LEASE.lease_s),
    "alert_dedupe_s": str(DEDUPE_S),
    "memory_critical": "1",  # every shard of this machine is "above" it: alerts all the time
    "warn_level": "0.5",
}
KEYS = Keys("fleet")


def _memory_alerts(client: redis.Redis) -> list[dict[str, object]]:
    records = [json.loads(raw) for raw in client.lrange(KEYS.alerts, 0, -1)]
    return sorted(
        (r for r in records if r["rule"] == "memory" and r["kind"] == "alert"),
        key=lambda r: float(r["ts"]),  # type: ignore[arg-type]
    )


def test_failover_and_no_duplicate_alerts(redis_url: str, tmp_path: Path) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    leader = lambda: client.get(KEYS.leader)  # noqa: E731
    with LocalFleet(redis_url, 3, SETTINGS, tmp_path) as fleet:
        fleet.start_all()
        wait_for(lambda: fleet.shard_of(leader()) is not None, 10, "a leader")
        wait_for(lambda: {s for a in _memory_alerts(client) for s in a["shards"]} == {0, 1, 2},  # type: ignore[attr-defined]
              10, "a memory alert for every shard")  # fmt: skip

        # The leader crashes: another node leads within a lease and one renew period.
        first = fleet.shard_of(leader())
        assert first is not None
        fleet.kill(first)
        took = wait_for(lambda: leader() not in (None, fleet.node(first)),
                     LEASE.lease_s + LEASE.renew_s + 1.0, "a new leader after SIGKILL")  # fmt: skip
        print(f"new leader {took:.2f} s after the leader was killed")
        fleet.start(first)  # the supervisor restarts it

        # The new leader freezes past its lease, then resumes: it must step down.
        second = fleet.shard_of(leader())
        assert second is not None and second != first
        frozen = fleet.node(second)
        fleet.signal(second, signal.SIGSTOP)
        wait_for(lambda: leader() not in (None, frozen), LEASE.lease_s + LEASE.renew_s + 1.0,
              "a new leader while the old one is frozen")  # fmt: skip
        fleet.signal(second, signal.SIGCONT)
        log = fleet.log_path(second)
        wait_for(lambda: "lost the lease" in log.read_text() or "stands down" in log.read_text(),
              5, "the resumed leader stepping down")  # fmt: skip

        time.sleep(2 * DEDUPE_S)  # more windows, across the failovers
        assert leader() != frozen
        assert all(p.poll() is None for p in fleet.processes.values())

    alerts = _memory_alerts(client)
    by_shard: dict[int, list[float]] = defaultdict(list)
    for alert in alerts:
        for shard in alert["shards"]:  # type: ignore[attr-defined]
            by_shard[shard].append(float(alert["ts"]))  # type: ignore[arg-type]
    gaps = {s: [b - a for a, b in itertools.pairwise(ts)] for s, ts in by_shard.items()}
    epochs = [int(a["epoch"]) for a in alerts]  # type: ignore[call-overload]
    print(f"memory alerts per shard: { {s: len(ts) for s, ts in sorted(by_shard.items())} }; "
          f"smallest gap {min(min(g) for g in gaps.values()):.2f} s (window {DEDUPE_S} s); "
          f"epochs {sorted(set(epochs))}")  # fmt: skip
    assert set(by_shard) == {0, 1, 2}
    assert all(len(ts) >= 3 for ts in by_shard.values())
    # At most one alert per shard per window, whichever node sent it: no duplicates.
    assert all(gap >= DEDUPE_S - 0.1 for shard_gaps in gaps.values() for gap in shard_gaps)
    assert epochs == sorted(epochs)  # no alert from a deposed leader after its successor's
    assert len(set(epochs)) >= 2  # the alerts went on across a failover
    assert all(a["delivered"] is True for a in alerts)
