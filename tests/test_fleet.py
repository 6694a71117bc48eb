"""Real OS processes, one per shard, electing a leader and alerting through one Redis."""

from __future__ import annotations

import itertools
import json
import signal
from collections import defaultdict
from collections.abc import Callable
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


class GuardEvents:
    """What Redis did to the memory alerts' dedupe guards, in order, by keyspace notification:
    `set` (a claim: the claim script SETs a guard only when none is held), `expired` (the
    window ended) and `del` (a claim freed). Every alert needs a claim; so at most one alert
    per shard per window shows as at most one `set` between two expiries or deletions."""

    MARKER = "shardmon-test:guard-events"

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.events: dict[int, list[str]] = defaultdict(list)
        self.marked = False
        self._previous = client.config_get("notify-keyspace-events")["notify-keyspace-events"]
        client.config_set("notify-keyspace-events", "Kg$x")  # keyspace: generic, string, expired
        self._pubsub = client.pubsub()
        self._pubsub.psubscribe(**{f"__keyspace@*__:{KEYS.alert('memory')}:*": self._on_event})
        self._pubsub.subscribe(**{self.MARKER: self._on_marker})
        self._thread = self._pubsub.run_in_thread(sleep_time=0.01, daemon=True)

    def _on_event(self, message: dict[str, str]) -> None:
        if message["data"] in ("set", "expired", "del"):
            self.events[int(message["channel"].rpartition(":")[2])].append(message["data"])

    def _on_marker(self, message: dict[str, str]) -> None:
        self.marked = True

    def close(self) -> None:
        """Wait until every event so far has been read (a message published after them is),
        then stop listening and put the server's setting back."""
        try:
            self.client.publish(self.MARKER, "end")
            wait_for(lambda: self.marked, 10, "the guard events read")
        finally:
            self._thread.stop()
            self._thread.join(5)
            self._pubsub.close()
            self.client.config_set("notify-keyspace-events", self._previous)

    def claims(self, shard: int) -> int:
        return self.events[shard].count("set")

    def overlapping_claims(self, shard: int) -> bool:
        """Two claims of one shard without the guard expiring or being freed between them."""
        return any(a == b == "set" for a, b in itertools.pairwise(self.events[shard]))


def _shards_alerted_by(client: redis.Redis, epoch: int, at_least: int) -> bool:
    """Every shard had `at_least` memory alerts, one of them by the leader of `epoch` or later."""
    alerts = _memory_alerts(client)
    return all(
        sum(shard in a["shards"] for a in alerts) >= at_least  # type: ignore[operator]
        and any(shard in a["shards"] and int(a["epoch"]) >= epoch for a in alerts)  # type: ignore[operator, call-overload]
        for shard in range(3)
    )


def test_failover_and_no_duplicate_alerts(redis_url: str, tmp_path: Path) -> None:
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        leader = lambda: client.get(KEYS.leader)  # noqa: E731
        guards = GuardEvents(client)  # listening before any node claims
        try:
            _failovers(client, leader, redis_url, tmp_path)
        finally:
            guards.close()
        alerts = _memory_alerts(client)
    by_shard: dict[int, list[float]] = defaultdict(list)
    for alert in alerts:
        for shard in alert["shards"]:  # type: ignore[attr-defined]
            by_shard[shard].append(float(alert["ts"]))  # type: ignore[arg-type]
    epochs = [int(a["epoch"]) for a in alerts]  # type: ignore[call-overload]
    print(f"memory alerts per shard: { {s: len(ts) for s, ts in sorted(by_shard.items())} }; "
          f"guard events per shard: {dict(sorted(guards.events.items()))} "
          f"(window {DEDUPE_S} s); epochs {sorted(set(epochs))}")  # fmt: skip
    assert set(by_shard) == {0, 1, 2}
    assert all(len(ts) >= 3 for ts in by_shard.values())
    # At most one alert per shard per window, whichever node sent it: no duplicates. Each
    # alert is a claim of its shard's guard, and no claim overlapped another's window.
    assert all(len(ts) <= guards.claims(shard) for shard, ts in by_shard.items())
    assert not any(guards.overlapping_claims(shard) for shard in by_shard)
    assert epochs == sorted(epochs)  # no alert from a deposed leader after its successor's
    assert len(set(epochs)) >= 2  # the alerts went on across a failover
    assert all(a["delivered"] is True for a in alerts)


def _failovers(
    client: redis.Redis, leader: Callable[[], str | None], redis_url: str, tmp_path: Path
) -> None:
    """A fleet of 3 alerting all the time, through a leader killed and a leader frozen."""
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

        # More windows, across the failovers: every shard alerted again by the third leader.
        third = int(client.get(KEYS.leader_epoch) or 0)
        wait_for(lambda: _shards_alerted_by(client, third, at_least=3), 6 * DEDUPE_S,
              "memory alerts by the leader after the failovers")  # fmt: skip
        assert leader() != frozen
        assert all(p.poll() is None for p in fleet.processes.values())
