"""How fast `shardmon run` restarts its bot: on `shardmon restart` (a request through Redis,
taken at the next sampling interval), beside SIGHUP to the supervisor (taken at once), in the
same run; and what the supervisor itself costs while its bot runs.

One `shardmon run` process against a private redis-server, supervising a child that starts in
a few milliseconds (`python -c` that sleeps), sampling every `--interval` seconds. Each round
asks for a restart, one way or the other alternately, and times it until the new child's pid is
in the `supervisors` hash. Then the supervisor's CPU time over 30 s of an idle bot is read from
/proc, against the child's.

    .venv/bin/python benchmarks/supervisor.py [--rounds 10] [--interval 1]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import redis

from shardmon.demo.embedded import embedded_redis
from shardmon.keys import Keys

KEYS = Keys("bench")
CHILD = [sys.executable, "-c", "import time; time.sleep(3600)"]


def _pid(client: redis.Redis, node: str) -> int | None:
    raw = client.hget(KEYS.supervisors, node)
    pid = json.loads(raw).get("pid") if raw else None
    return int(pid) if pid else None


def _until_new_child(client: redis.Redis, node: str, old: int | None) -> float:
    started = time.perf_counter()
    while _pid(client, node) in (None, old):
        time.sleep(0.005)
    return (time.perf_counter() - started) * 1000


def _cpu_s(pid: int) -> float:
    """User and system CPU seconds of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="restarts each way (10)")
    parser.add_argument("--interval", type=float, default=1.0, help="sampling interval (1 s)")
    args = parser.parse_args()
    with embedded_redis() as server, TemporaryDirectory() as folder:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHARDMON_")} | {
            "SHARDMON_REDIS_URL": server.url, "SHARDMON_DEPLOYMENT": "bench",
            "SHARDMON_SAMPLE_INTERVAL_S": str(args.interval),
            "SHARDMON_JOURNAL_PATH": f"{folder}/journal.log",
        }  # fmt: skip
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "shardmon.cli", "run", "--", *CHILD], env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        node = f"{os.uname().nodename}:{supervisor.pid}"
        client = redis.Redis.from_url(server.url, decode_responses=True)
        try:
            _until_new_child(client, node, None)
            times: dict[str, list[float]] = {"shardmon restart": [], "SIGHUP": []}
            for round_ in range(2 * args.rounds):
                old = _pid(client, node)
                time.sleep(args.interval * 0.37)  # off the poll's phase, differently each way
                if round_ % 2 == 0:
                    subprocess.run(
                        [sys.executable, "-m", "shardmon.cli", "restart", "--shards", "0",
                         "--no-wait"], env=env, check=True, stdout=subprocess.DEVNULL,
                    )  # fmt: skip
                    times["shardmon restart"].append(_until_new_child(client, node, old))
                else:
                    supervisor.send_signal(signal.SIGHUP)
                    times["SIGHUP"].append(_until_new_child(client, node, old))
            child = _pid(client, node)
            assert child is not None
            before = (_cpu_s(supervisor.pid), _cpu_s(child))
            time.sleep(30)
            after = (_cpu_s(supervisor.pid), _cpu_s(child))
        finally:
            supervisor.terminate()
            supervisor.wait(30)
            client.close()
    print(f"\n{server.kind}; sampling interval {args.interval:g} s; ms from the ask to the new "
          f"child's pid in Redis ({args.rounds} each)")  # fmt: skip
    for way, measured in times.items():
        # `shardmon restart` also starts a Python process to ask: its start-up is in the figure
        print(f"  {way:<17} median {statistics.median(measured):8.1f}  max {max(measured):8.1f}")
    ratio = statistics.median(times["shardmon restart"]) / statistics.median(times["SIGHUP"])
    print(f"  restart / SIGHUP  {ratio:.1f}x")
    supervisor_cpu, child_cpu = (after[0] - before[0]) / 30, (after[1] - before[1]) / 30
    print(
        f"\nCPU over 30 s of an idle bot: the supervisor {100 * supervisor_cpu:.2f}% of a core "
        f"(sampling, polling, its share of the election), the child {100 * child_cpu:.2f}%"
    )


if __name__ == "__main__":
    main()
