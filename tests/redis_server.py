"""A private redis-server for tests: a free loopback port, never the machine's 6379."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import redis
from helpers import wait_for

from shardmon.connection import RedisTarget
from shardmon.demo.embedded import free_port
from shardmon.supervisor import die_with_parent


class RedisServer:
    """A redis-server child process that tests can start, kill, freeze and restart."""

    def __init__(self, folder: Path, *extra_args: str) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: run `make test`, which installs it")
        self.binary = binary
        self.folder = folder
        self.extra_args = extra_args
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        #: How to reach it for the readiness PING (a password, TLS...).
        self.ping_options: dict[str, object] = {}

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._spawn([
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.folder), "--save", "", "--appendonly", "no", *self.extra_args,
        ])  # fmt: skip

    def start_sentinel(self, conf: Path) -> None:
        """Run as a sentinel with that (writable) configuration file."""
        self._spawn([self.binary, str(conf), "--sentinel", "--port", str(self.port),
                     "--bind", "127.0.0.1", "--dir", str(self.folder)])  # fmt: skip

    def _spawn(self, args: list[str]) -> None:
        with (self.folder / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent
            )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2, **self.ping_options)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.kill()  # never leave a half-started server behind
                    raise RuntimeError(f"redis-server did not start, see {self.folder}") from None
                time.sleep(0.02)
            finally:
                client.close()

    def kill(self) -> None:
        """SIGKILL: the server vanishes mid-whatever, as in a crash."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def freeze(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def restart(self) -> None:
        self.kill()
        self.start()


class SentinelSetup:
    """A master, a replica and three sentinels (quorum 2), failing over within seconds."""

    MASTER = "shardmon-test"

    def __init__(self, folder: Path) -> None:
        self.master = RedisServer(folder / "master")
        self.replica = RedisServer(folder / "replica")
        self.sentinels = [RedisServer(folder / f"sentinel{i}") for i in range(3)]

    def start(self) -> None:
        self.master.start()
        self.replica.extra_args = ("--replicaof", "127.0.0.1", str(self.master.port))
        self.replica.start()
        for sentinel in self.sentinels:
            sentinel.folder.mkdir(parents=True, exist_ok=True)
            conf = sentinel.folder / "sentinel.conf"
            conf.write_text(
                f"sentinel monitor {self.MASTER} 127.0.0.1 {self.master.port} 2\n"
                f"sentinel down-after-milliseconds {self.MASTER} 1000\n"
                f"sentinel failover-timeout {self.MASTER} 5000\n"
                f"sentinel parallel-syncs {self.MASTER} 1\n"
            )
            sentinel.start_sentinel(conf)
        wait_for(self._ready, 30, "the sentinels to know the replica and each other")

    def _ready(self) -> bool:
        """Every sentinel knows the replica and the two other sentinels: a failover can be
        voted at once."""
        for sentinel in self.sentinels:
            with redis.Redis(port=sentinel.port, socket_timeout=1, decode_responses=True) as client:
                if not client.execute_command("SENTINEL", "REPLICAS", self.MASTER):
                    return False
                master = client.sentinel_master(self.MASTER)
                if int(master.get("num-other-sentinels", 0)) != len(self.sentinels) - 1:
                    return False
        return True

    @property
    def addresses(self) -> tuple[tuple[str, int], ...]:
        return tuple(("127.0.0.1", s.port) for s in self.sentinels)

    @property
    def target(self) -> RedisTarget:
        return RedisTarget(mode="sentinel", sentinels=self.addresses, sentinel_master=self.MASTER)

    def master_port(self) -> int:
        with redis.Redis(port=self.sentinels[0].port, socket_timeout=1) as client:
            _, port = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.MASTER)
            return int(port)

    def flush(self) -> None:
        with redis.Redis(port=self.master_port()) as client:
            client.flushall()

    def stop(self) -> None:
        for server in (*self.sentinels, self.replica, self.master):
            server.kill()


class ClusterSetup:
    """Three masters owning a third of the 16,384 slots each, no replicas."""

    def __init__(self, folder: Path) -> None:
        # The bus port defaults to port + 10000, which may not exist above 55535.
        self.bus_ports = [free_port() for _ in range(3)]
        self.nodes = [
            RedisServer(folder / f"node{i}", "--cluster-enabled", "yes",
                        "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000",
                        "--cluster-port", str(bus_port))
            for i, bus_port in enumerate(self.bus_ports)
        ]  # fmt: skip

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        bounds = [0, 5461, 10923, 16384]
        for i, node in enumerate(self.nodes):
            with redis.Redis(port=node.port) as client:
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", bounds[i], bounds[i + 1] - 1)
        with redis.Redis(port=self.nodes[0].port) as client:
            for node, bus_port in zip(self.nodes[1:], self.bus_ports[1:], strict=True):
                client.execute_command("CLUSTER", "MEET", "127.0.0.1", node.port, bus_port)
        wait_for(self._ok, 30, "the cluster to be ok")

    def _ok(self) -> bool:
        for node in self.nodes:
            with redis.Redis(port=node.port, decode_responses=True) as client:
                info = client.execute_command("CLUSTER", "INFO")
                text = info if isinstance(info, str) else info.decode()
                if "cluster_state:ok" not in text or "cluster_known_nodes:3" not in text:
                    return False
        return True

    @property
    def url(self) -> str:
        return self.nodes[0].url

    @property
    def target(self) -> RedisTarget:
        return RedisTarget(url=self.url, mode="cluster")

    def flush(self) -> None:
        for node in self.nodes:
            with redis.Redis(port=node.port) as client:
                client.flushall()

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()
