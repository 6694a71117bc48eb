"""A private Redis for the demo when none is configured.

A `redis-server` child on a free loopback port when the binary is on PATH, else fakeredis's TCP
server in a thread (the `demo` extra installs it). Nothing is kept on disk either way.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import redis

from shardmon.connection import RECOMMENDED_SERVER_CONFIG
from shardmon.supervisor import die_with_parent

__all__ = ["EmbeddedRedis", "embedded_redis", "free_port"]


@dataclass(frozen=True, slots=True)
class EmbeddedRedis:
    url: str
    kind: str  # "redis-server <version>" or "fakeredis"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for(url: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    with redis.Redis.from_url(url, socket_connect_timeout=0.2) as client:
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)


@contextmanager
def embedded_redis(prefer_server: bool = True, **config: str) -> Iterator[EmbeddedRedis]:
    """Start a private Redis, yield where it is, and stop it on exit. A redis-server runs with
    `RECOMMENDED_SERVER_CONFIG`, and `config` (`list_compress_depth="0"`) over it."""
    binary = shutil.which("redis-server") if prefer_server else None
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    if binary is not None:
        version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
        with tempfile.TemporaryDirectory(prefix="shardmon-redis-") as folder:
            wanted = RECOMMENDED_SERVER_CONFIG | {k.replace("_", "-"): v for k, v in config.items()}
            args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", folder,
                    "--save", "", "--appendonly", "no", "--loglevel", "warning"]  # fmt: skip
            args += [part for name, value in wanted.items() for part in (f"--{name}", value)]
            process = subprocess.Popen(
                args,
                stdout=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
            )
            try:
                _wait_for(url)
                yield EmbeddedRedis(url, f"redis-server {version.split()[2].removeprefix('v=')}")
            finally:
                process.terminate()
                process.wait(10)
        return
    try:
        from fakeredis import TcpFakeServer
    except ImportError as exc:
        raise RuntimeError(
            "no redis-server on PATH and fakeredis is not installed: "
            "install redis-server, or `pip install 'shardmon[demo]'`"
        ) from exc
    server = TcpFakeServer(("127.0.0.1", port))
    thread = threading.Thread(target=server.serve_forever, name="fakeredis", daemon=True)
    thread.start()
    try:
        _wait_for(url)
        yield EmbeddedRedis(url, "fakeredis")
    finally:
        server.shutdown()
        server.server_close()
