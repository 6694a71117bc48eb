"""Failover: how long the fleet goes without a judging leader when the leader dies.

Runs a fleet of `shardmon.node` processes on a private redis-server, with a memory threshold
of 1% so that every shard is alerted once per dedupe window. It then stops the leader again and
again, in the same run two ways: SIGKILL (a crash: the lease must run out) and SIGTERM (a clean
stop, which releases the lease: the baseline a planned restart gets). For each it prints the
median and worst time from the signal to a new leader's first judgement (read from the new
leader's log), and at the end the number of duplicate alerts (two alerts of one shard within one
dedupe window), which must be 0.

    .venv/bin/python benchmarks/failover.py [--kills 5] [--lease 15] [--shards 3]
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import signal
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import redis

from shardmon.demo.embedded import embedded_redis
from shardmon.demo.fleet import LocalFleet
from shardmon.keys import Keys
from shardmon.leader import LeaseTiming

KEYS = Keys("bench")
FIRST_JUDGEMENT = re.compile(r"^(\S+ \S+) INFO shardmon\.judge: epoch (\d+): first judgement")


def _first_judgement(log: Path, epoch: int) -> float | None:
    """Wall-clock time at which the node logged its first judgement of `epoch`."""
    for line in log.read_text(errors="replace").splitlines():
        match = FIRST_JUDGEMENT.match(line)
        if match and int(match.group(2)) == epoch:
            return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return None


def _leader(client: redis.Redis) -> str | None:
    node = client.get(KEYS.leader)
    return node.decode() if isinstance(node, bytes) else node


def _wait(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def _failover(
    fleet: LocalFleet, client: redis.Redis, how: signal.Signals, timing: LeaseTiming
) -> float:
    """Stop the leader with `how`; seconds until the next leader judged."""
    old = fleet.shard_of(_leader(client))
    assert old is not None, "no leader of this fleet"
    old_epoch = int(client.get(KEYS.leader_epoch) or 0)
    stopped_at = time.time()
    fleet.signal(old, how)
    fleet.processes[old].wait(30)
    limit = timing.lease_s + timing.renew_s + 10
    assert _wait(lambda: int(client.get(KEYS.leader_epoch) or 0) > old_epoch, limit), (
        "no new leader"
    )
    new = fleet.shard_of(_leader(client))
    epoch = int(client.get(KEYS.leader_epoch) or 0)
    assert new is not None
    judged_at: float | None = None

    def judged() -> bool:
        nonlocal judged_at
        judged_at = _first_judgement(fleet.log_path(new), epoch)
        return judged_at is not None

    assert _wait(judged, limit) and judged_at is not None, "the new leader never judged"
    fleet.start(old)  # the supervisor restarts the stopped node
    return judged_at - stopped_at


def _duplicates(client: redis.Redis, dedupe_s: float) -> tuple[int, int]:
    """(alerts, duplicates): two memory alerts of one shard less than a window apart."""
    times: dict[int, list[float]] = defaultdict(list)
    alerts = 0
    for raw in client.lrange(KEYS.alerts, 0, -1):
        record = json.loads(raw)
        if record["rule"] == "memory" and record["kind"] == "alert" and record["delivered"]:
            alerts += 1
            for shard in record["shards"]:
                times[shard].append(record["ts"])
    duplicates = sum(
        1
        for ts in times.values()
        for a, b in itertools.pairwise(sorted(ts))
        if b - a < dedupe_s - 0.1
    )
    return alerts, duplicates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=5, help="leader stops of each kind (5)")
    parser.add_argument("--lease", type=float, default=15, help="leader lease, seconds (15)")
    parser.add_argument("--shards", type=int, default=3, help="node processes (3)")
    args = parser.parse_args()
    timing = LeaseTiming(args.lease)
    dedupe_s = max(2, round(timing.lease_s))
    settings = {
        "deployment": "bench",
        "sample_interval_s": str(min(1.0, timing.renew_s)),
        "leader_lease_s": str(timing.lease_s),
        "alert_dedupe_s": str(dedupe_s),
        "memory_critical": "1",
        "warn_level": "0.5",
    }
    with embedded_redis() as server, tempfile.TemporaryDirectory() as folder:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        print(f"{args.shards} node processes on {server.kind}; lease {timing.lease_s:g} s, "
              f"renew {timing.renew_s:g} s, stand-down {timing.stand_down_s:g} s, "
              f"judging every {settings['sample_interval_s']} s, dedupe {dedupe_s} s")  # fmt: skip
        with LocalFleet(server.url, args.shards, settings, Path(folder)) as fleet:
            fleet.start_all()
            assert _wait(lambda: fleet.shard_of(_leader(client)) is not None, 20)
            results: dict[str, list[float]] = {}
            kinds = (("SIGKILL (crash)", signal.SIGKILL), ("SIGTERM (clean stop)", signal.SIGTERM))
            for name, how in kinds:
                results[name] = []
                for i in range(args.kills):
                    took = _failover(fleet, client, how, timing)
                    results[name].append(took)
                    print(f"  {name} #{i + 1}: a new leader judged after {took:.2f} s", flush=True)
        alerts, duplicates = _duplicates(client, dedupe_s)
    print()
    print(f"{'leader stopped by':<22} {'n':>3} {'median s':>9} {'worst s':>8}")
    for name, times in results.items():
        print(f"{name:<22} {len(times):>3} {statistics.median(times):>9.2f} {max(times):>8.2f}")
    crash, clean = (statistics.median(t) for t in results.values())
    bound = timing.lease_s + timing.renew_s + float(settings["sample_interval_s"])
    print(f"crash / clean-stop median ratio: {crash / clean:.1f}x; "
          f"bound for a crash (lease + renew + one judging interval): {bound:.2f} s")  # fmt: skip
    print(f"memory alerts delivered: {alerts}; duplicate alerts: {duplicates}")


if __name__ == "__main__":
    main()
