"""Faults under a running fleet of real node processes: Redis SIGKILLed and restarted (with and
without persistence), Redis frozen past the leader lease, and a connection cut mid-write.

Each test prints and asserts what an operator cares about: restart events logged (every line of
every node's journal) against those found in Redis, memory alerts expected against those the
nodes sent (their log lines), and that every bot process is still alive.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
import time
from collections import Counter
from pathlib import Path

import pytest
import redis
from helpers import wait_for
from redis_server import RedisServer

from shardmon.connection import create_redis
from shardmon.demo.fleet import LocalFleet
from shardmon.keys import Keys
from shardmon.monitor import MonitorConfig, build_monitor

KEYS = Keys("faults")
SHARDS = 3
#: Every shard is above a 1% memory threshold all the time; one alert per shard per 60 s window.
SETTINGS = {
    "deployment": "faults",
    "sample_interval_s": "0.3",
    "leader_lease_s": "1.5",
    "alert_dedupe_s": "60",
    "memory_critical": "1",
    "warn_level": "0.5",
}
ALERT_LINE = re.compile(r"\[alert memory shards=([\d,]+) epoch=\d+\]")


def _journaled(fleet: LocalFleet) -> set[str]:
    """Ids of every restart event any node journaled: what was logged."""
    ids = set()
    for path in fleet.folder.glob("journal-*.log"):
        ids.update(json.loads(line)["id"] for line in path.read_text().splitlines() if line)
    return ids


def _in_redis(client: redis.Redis) -> list[str]:
    return [json.loads(member)["id"] for member in client.zrange(KEYS.restarts, 0, -1)]


def _memory_alerts_sent(fleet: LocalFleet) -> Counter[int]:
    """Memory alerts per shard, from the log lines of the nodes that sent them."""
    sent: Counter[int] = Counter()
    for shard in range(SHARDS):
        for match in ALERT_LINE.finditer(fleet.log_path(shard).read_text()):
            sent.update(int(s) for s in match.group(1).split(","))
    return sent


def _report(name: str, fleet: LocalFleet, client: redis.Redis, expected: int) -> None:
    logged, found = _journaled(fleet), _in_redis(client)
    sent = _memory_alerts_sent(fleet)
    alive = sum(p.poll() is None for p in fleet.processes.values())
    print(
        f"{name}: restart events logged {len(logged)}, in Redis {len(set(found))}, "
        f"lost {len(logged - set(found))}, duplicates {len(found) - len(set(found))}; "
        f"memory alerts per shard expected {expected}, sent {dict(sorted(sent.items()))}; "
        f"processes alive {alive}/{SHARDS}"
    )
    assert logged == set(found) and len(found) == len(set(found))
    assert sent == Counter(dict.fromkeys(range(SHARDS), expected))
    assert alive == SHARDS


def _wait_for_leader_ticks(client: redis.Redis, ticks: int, what: str) -> None:
    """Until the leader has judged the fleet `ticks` more times: each tick rewrites `fleet`
    with the time it judged at, so each new `ts` seen is one more tick (some may go unseen:
    then there were more)."""
    seen: set[str | None] = {client.hget(KEYS.fleet, "ts")}

    def ticked() -> bool:
        seen.add(client.hget(KEYS.fleet, "ts"))
        return len(seen - {None}) > ticks

    wait_for(ticked, 20, what)


def _restart_node(fleet: LocalFleet, shard: int) -> None:
    """A clean stop (SIGTERM) and a new process, as a supervisor would do."""
    process = fleet.processes[shard]
    process.terminate()
    process.wait(15)
    fleet.start(shard)


def _fleet_up(fleet: LocalFleet, client: redis.Redis) -> None:
    fleet.start_all()
    wait_for(lambda: len(_in_redis(client)) == SHARDS, 20, "every node's startup in Redis")
    wait_for(lambda: sorted(_memory_alerts_sent(fleet)) == [0, 1, 2], 20, "a memory alert a shard")


@pytest.mark.parametrize("persistent", [False, True], ids=["no-persistence", "appendonly"])
def test_redis_killed_and_restarted_under_a_running_fleet(
    own_redis: RedisServer, tmp_path: Path, persistent: bool
) -> None:
    if persistent:
        own_redis.extra_args = ("--appendonly", "yes", "--appendfsync", "always")
        own_redis.restart()
    with (
        redis.Redis.from_url(own_redis.url, decode_responses=True) as client,
        LocalFleet(own_redis.url, SHARDS, SETTINGS, tmp_path) as fleet,
    ):
        _fleet_up(fleet, client)
        survivors = {s: fleet.processes[s].pid for s in range(SHARDS - 1)}
        own_redis.kill()
        _restart_node(fleet, SHARDS - 1)  # one node restarts during the outage
        wait_for(lambda: len(_journaled(fleet)) == SHARDS + 1, 20, "the restart journaled")
        time.sleep(1)  # the outage itself: the fleet samples a second into its buffers
        own_redis.start()
        wait_for(lambda: set(_in_redis(client)) == _journaled(fleet), 30, "the journals replayed")
        # Without persistence Redis came back empty: the dedupe guards went with it, so each
        # shard is alerted once more (the restarted leader cannot know it was already told).
        expected = 1 if persistent else 2
        wait_for(lambda: min(_memory_alerts_sent(fleet).values()) >= expected, 20, "the alerts")
        _wait_for_leader_ticks(client, 5, "more ticks of the leader")  # no alert beyond those
        _report(f"Redis SIGKILLed ({'appendonly' if persistent else 'no persistence'})",
                fleet, client, expected=1 if persistent else 2)  # fmt: skip
        assert {s: fleet.processes[s].pid for s in survivors} == survivors  # never restarted


def test_redis_frozen_past_the_leader_lease(own_redis: RedisServer, tmp_path: Path) -> None:
    with (
        redis.Redis.from_url(own_redis.url, decode_responses=True) as client,
        LocalFleet(own_redis.url, SHARDS, SETTINGS, tmp_path) as fleet,
    ):
        _fleet_up(fleet, client)
        epoch = int(client.get(KEYS.leader_epoch) or 0)
        survivors = {s: fleet.processes[s].pid for s in range(SHARDS - 1)}
        own_redis.freeze()
        _restart_node(fleet, SHARDS - 1)  # its startup waits in its journal
        time.sleep(4)  # the scenario: frozen for more than twice the 1.5 s lease
        own_redis.thaw()
        wait_for(lambda: set(_in_redis(client)) == _journaled(fleet), 30, "the journals replayed")

        # The lease ran out in the freeze: a new leadership (any node may win it, the old
        # leader too, once it has stood down), so a new epoch rather than a new node.
        def new_leadership() -> bool:
            return int(client.get(KEYS.leader_epoch) or 0) > epoch and bool(client.get(KEYS.leader))

        wait_for(new_leadership, 10, "a new leadership")
        _wait_for_leader_ticks(client, 5, "ticks of the new leader")  # no alert repeated
        _report("Redis SIGSTOPped 4 s (lease 1.5 s)", fleet, client, expected=1)
        assert {s: fleet.processes[s].pid for s in survivors} == survivors


class CuttingProxy:
    """A TCP proxy to Redis that, when armed, cuts the connection right after a script call
    (EVALSHA) got through, before its reply: the write is applied, and the client sees a
    dropped connection and resends it. Handshakes and other commands pass untouched."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.armed = False
        self.cuts: list[str] = []  # the request each cut reply answered
        self.server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._writers += [writer, up_writer]
        last_request = b""

        async def requests() -> None:
            nonlocal last_request
            while data := await reader.read(65536):
                last_request = data
                up_writer.write(data)
                await up_writer.drain()

        async def replies() -> None:
            while data := await up_reader.read(65536):
                if self.armed and b"EVALSHA" in last_request.upper():
                    self.armed = False
                    self.cuts.append(last_request.decode(errors="replace"))
                    break
                writer.write(data)
                await writer.drain()

        await asyncio.wait(
            [asyncio.ensure_future(requests()), asyncio.ensure_future(replies())],
            return_when=asyncio.FIRST_COMPLETED,
        )
        for end in (writer, up_writer):
            end.close()

    async def stop(self) -> None:
        assert self.server is not None
        for end in self._writers:
            end.close()
        self.server.close()
        await self.server.wait_closed()


async def test_a_connection_cut_mid_write_applies_each_write_once(
    redis_server: RedisServer,
    redis_url: str,
    config: MonitorConfig,
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy = CuttingProxy(redis_server.port)
    port = await proxy.start()
    client = create_redis(f"redis://127.0.0.1:{port}/0", timeout_s=2)  # 1 retry: a resend
    monitor = build_monitor(dataclasses.replace(config, leader_eligible=False), client)
    keys = Keys(config.deployment)
    try:
        await monitor.start(sample=False)
        logged = [await monitor.log_restart("startup")]  # both scripts loaded before any cut
        await monitor.sample_once()
        with caplog.at_level(logging.WARNING):
            for i in range(10):
                proxy.armed = True  # this write lands; its reply never arrives
                if i % 2:
                    logged.append(await monitor.log_restart("manual", {"i": i}))
                else:
                    await monitor.sample_once()
                assert not proxy.armed, "the write's reply was not cut"
                assert (
                    monitor.sampler.redis_available and not monitor.sampler.pending
                )  # the resend did it
        samples = await client.llen(keys.samples(0))
        events = await client.zrange(keys.restarts, 0, -1)
        rollups = [await client.hgetall(k) for k in await client.keys(keys.rollup_minute_pattern)]
        counted = sum(int(r.get("n", 0)) for r in rollups)
        print(f"connection cut after {len(proxy.cuts)} writes reached Redis: 6 sampling ticks "
              f"of 2 shards, in the lists {samples} a shard, in the rollups {counted // 2} a "
              f"shard; restart events logged {len(logged)}, in Redis {len(events)}")  # fmt: skip
        assert len(proxy.cuts) == 10 and all("EVALSHA" in cut.upper() for cut in proxy.cuts)
        assert samples == 6 and counted == 12  # each write applied once, resend or not
        assert sorted(events) == sorted(e.to_json() for e in logged)
        assert "kept in the journal" not in caplog.text and "unreachable" not in caplog.text
    finally:
        await monitor.stop()
        await client.aclose()
        await proxy.stop()
