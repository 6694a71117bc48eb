"""A fleet of `shardmon.node` processes on this machine: one OS process per shard.

The demo, the failover benchmark and the tests use it to run real processes that can be
killed (SIGKILL), frozen (SIGSTOP) and restarted, as a supervisor would.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from types import TracebackType

from shardmon.supervisor import die_with_parent

__all__ = ["LocalFleet"]


class LocalFleet:
    """Node processes for shards 0..shard_count-1 of one deployment.

    Args:
        redis_url: the Redis every node uses.
        shard_count: the fleet's size (one process per shard).
        settings: more `SHARDMON_*` variables for every node (names without the prefix).
        folder: where each node's log and journal go.
        module: what each process runs (`python -m <module>`).
        supervised: run each under `shardmon run` (which restarts it) instead.
    """

    def __init__(
        self,
        redis_url: str,
        shard_count: int,
        settings: dict[str, str],
        folder: Path,
        module: str = "shardmon.node",
        supervised: bool = False,
    ) -> None:
        self.redis_url = redis_url
        self.command = [sys.executable, "-m", module]
        if supervised:
            self.command = [sys.executable, "-m", "shardmon.cli", "run", "--", *self.command]
        self.shard_count = shard_count
        self.settings = settings
        self.folder = folder
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self._host = socket.gethostname()

    def __enter__(self) -> LocalFleet:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop_all()

    def log_path(self, shard: int) -> Path:
        return self.folder / f"node-{shard}.log"

    def start(self, shard: int, **extra_env: str) -> subprocess.Popen[bytes]:
        """Start (or restart) the process of `shard`, with more environment if given."""
        self.folder.mkdir(parents=True, exist_ok=True)
        env = {key: value for key, value in os.environ.items() if not key.startswith("SHARDMON_")}
        env.update({f"SHARDMON_{name.upper()}": value for name, value in self.settings.items()})
        env.update(
            SHARDMON_REDIS_URL=self.redis_url,
            SHARDMON_SHARD_IDS=str(shard),
            SHARDMON_SHARD_COUNT=str(self.shard_count),
            SHARDMON_JOURNAL_PATH=str(self.folder / f"journal-{shard}.log"),
        )
        env.update(extra_env)
        with self.log_path(shard).open("ab") as log:
            process = subprocess.Popen(
                self.command,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.folder,
                preexec_fn=die_with_parent,
            )
        self.processes[shard] = process
        return process

    def start_all(self) -> None:
        for shard in range(self.shard_count):
            self.start(shard)

    def node(self, shard: int) -> str:
        """The node id (`host:pid`) of the shard's current process."""
        return f"{self._host}:{self.processes[shard].pid}"

    def shard_of(self, node: str | None) -> int | None:
        """Which shard's process is `node`, if any of this fleet's."""
        return next((s for s in self.processes if self.node(s) == node), None)

    def signal(self, shard: int, signum: signal.Signals) -> None:
        os.kill(self.processes[shard].pid, signum)

    def kill(self, shard: int) -> None:
        """SIGKILL, as a crash or an OOM kill: no clean stop, no lease release."""
        process = self.processes[shard]
        process.kill()
        process.wait(10)

    def stop_all(self, timeout_s: float = 10) -> None:
        """SIGTERM every process (a clean stop), then SIGKILL what is left."""
        for process in self.processes.values():
            if process.poll() is None:
                os.kill(process.pid, signal.SIGCONT)  # a frozen process cannot stop
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
