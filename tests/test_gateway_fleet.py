"""The gateway rules through a real Redis and the real leader: samples carrying gateway state,
the session start limit read from Discord and stored, an outage as one incident."""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

import pytest
import redis.asyncio as aioredis
from helpers import sample
from test_alerts import QUICK, RecordingSink

from shardmon.alerts import Alerter
from shardmon.judge import SESSION_LIMIT_EVERY_S, FleetJudge
from shardmon.keys import Keys
from shardmon.leader import LeaderElection, LeaseTiming
from shardmon.models import GatewayState, SessionStartLimit
from shardmon.rules import Limits
from shardmon.sinks import LogSink
from shardmon.store import Store

LIMIT = {"total": 1000, "remaining": 180, "reset_after": 7_200_000, "max_concurrency": 1}


class Discord:
    """What GET /gateway/bot answers: a session start limit, or an error."""

    def __init__(self, *replies: object) -> None:
        self.replies = list(replies)
        self.calls = 0

    async def __call__(self) -> object:
        self.calls += 1
        reply = self.replies[min(self.calls, len(self.replies)) - 1]
        if isinstance(reply, Exception):
            raise reply
        return reply


async def _leader(
    client: aioredis.Redis, keys: Keys, sink: RecordingSink, discord: Discord | None = None,
    shard_count: int = 10,
) -> FleetJudge:  # fmt: skip
    store = Store(client, keys)
    election = LeaderElection(store, "lead:1", LeaseTiming(15))
    assert await election.campaign_once()
    alerter = Alerter(store, "lead:1", [sink, LogSink()], policy=QUICK)
    return FleetJudge(store, election, alerter, Limits(interval_s=60), shard_count=shard_count,
                      session_limits=discord)  # fmt: skip


async def _push(client: aioredis.Redis, keys: Keys, gateways: dict[int, GatewayState]) -> None:
    seq = time.time_ns() // 1000
    await Store(client, keys).push_samples(
        [(sample(s, gateway=g), seq + i) for i, (s, g) in enumerate(gateways.items())]
    )


def up() -> GatewayState:
    return GatewayState(connected=True, since_s=600, last_connect=time.time() - 600,
                        dispatch_age_s=1)  # fmt: skip


def down(for_s: float) -> GatewayState:
    return GatewayState(connected=False, since_s=for_s, last_connect=time.time() - 900,
                        last_disconnect=time.time() - for_s)  # fmt: skip


async def _tick(judge: FleetJudge) -> None:
    assert await judge.tick()
    await judge.alerter.wait_for_deliveries()


async def test_a_disconnected_shard_of_a_live_process_is_alerted_once_and_resolved(
    client: aioredis.Redis, keys: Keys
) -> None:
    sink = RecordingSink()
    judge = await _leader(client, keys, sink)
    await _push(client, keys, {0: up(), 1: up(), 2: down(600)})
    for _ in range(3):
        await _tick(judge)
    assert [(a.rule, a.shards) for a in sink.sent] == [("disconnected", (2,))]
    assert "Shard 2: gateway disconnected for 10m" in sink.sent[0].body
    await _push(client, keys, {2: up()})
    await _tick(judge)
    await _tick(judge)
    assert [(a.kind, a.rule, a.shards) for a in sink.sent][1:] == [
        ("resolved", "disconnected", (2,))
    ]
    summary = await judge.store.fleet_totals(180)
    assert (summary.online, summary.connected, summary.up) == (3, 3, 3)


async def test_an_outage_of_60_percent_is_one_incident_with_one_resolution(
    client: aioredis.Redis, keys: Keys
) -> None:
    sink = RecordingSink()
    judge = await _leader(client, keys, sink)
    await _push(client, keys, {s: (down(300 + s) if s < 6 else up()) for s in range(10)})
    for _ in range(4):
        await _tick(judge)
    assert [(a.rule, a.shards) for a in sink.sent] == [("gateway_outage", ())]
    assert sink.sent[0].body.startswith("6 of 10 shards disconnected")
    totals = await judge.store.fleet_totals(180)
    assert (totals.online, totals.disconnected, totals.up) == (10, 6, 4)
    await _push(client, keys, {s: up() for s in range(10)})
    await _tick(judge)
    await _tick(judge)
    assert [(a.kind, a.rule) for a in sink.sent] == [
        ("alert", "gateway_outage"), ("resolved", "gateway_outage"),
    ]  # fmt: skip
    assert "10 of 10 shards connected again; it lasted" in sink.sent[1].body
    records = [json.loads(r) for r in await client.lrange(keys.alerts, 0, -1)]
    assert {r["rule"] for r in records} == {"gateway_outage"}  # not one disconnect alert


async def test_the_leader_reads_the_session_start_limit_rarely_and_alerts_when_low(
    client: aioredis.Redis, keys: Keys
) -> None:
    sink = RecordingSink()
    discord = Discord(LIMIT)
    judge = await _leader(client, keys, sink, discord)
    await _push(client, keys, {0: up()})
    await _tick(judge)
    await _tick(judge)
    assert discord.calls == 1  # at most every SESSION_LIMIT_EVERY_S
    stored = await judge.store.session_limit()
    assert stored is not None and (stored.remaining, stored.total) == (180, 1000)
    raw = await client.hgetall(keys.session_start_limit)  # as redis-cli shows it
    assert raw["remaining"] == "180" and raw["max_concurrency"] == "1"
    assert [(a.rule, a.shards) for a in sink.sent] == [("identify_budget", ())]
    assert re.search(r"180 of 1,000 session starts left \(18%\), resets in (2h 0m|1h 59m)",
                     sink.sent[0].body)  # fmt: skip
    assert SESSION_LIMIT_EVERY_S == 300


@pytest.mark.parametrize(
    "reply",
    [
        {"total": 1000, "remaining": 5},  # fields missing
        {"total": "lots", "remaining": 1, "reset_after": 1, "max_concurrency": 1},
        ConnectionError("Discord is down"),
        RuntimeError("500 Internal Server Error"),
    ],
)
async def test_a_bad_session_start_limit_reply_is_logged_and_skipped(
    client: aioredis.Redis, keys: Keys, reply: Any, caplog: pytest.LogCaptureFixture
) -> None:
    sink = RecordingSink()
    judge = await _leader(client, keys, sink, Discord(reply))
    await judge.store.write_session_limit(
        SessionStartLimit(
            total=1000, remaining=900, reset_after_ms=10**9, max_concurrency=1, read_at=time.time()
        )
    )
    await _push(client, keys, {0: up()})
    with caplog.at_level(logging.WARNING, logger="shardmon.judge"):
        await _tick(judge)
    assert "session start limit" in caplog.text
    kept = await judge.store.session_limit()
    assert kept is not None and kept.remaining == 900  # the stored one stays
    assert [a.rule for a in sink.sent] == []
    discord = judge.session_limits
    assert isinstance(discord, Discord) and discord.calls == 1
    await _tick(judge)
    assert discord.calls == 2  # a failed read is tried again at the next tick


async def test_a_malformed_gateway_part_is_counted_and_the_process_still_judged(
    client: aioredis.Redis, keys: Keys
) -> None:
    good = sample(0, memory=95, gateway=up())
    data = json.loads(good.to_json())
    data["gateway"] = {"connected": "sometimes", "since_s": -3}
    await client.hset(keys.latest, "0", json.dumps(data))
    await client.zadd(keys.heartbeats, {"0": time.time()})
    sink = RecordingSink()
    judge = await _leader(client, keys, sink)
    await _tick(judge)
    assert [a.rule for a in sink.sent] == ["memory"]
    assert judge.store.skipped[keys.latest] == 1
