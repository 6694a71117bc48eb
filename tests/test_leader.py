from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from redis_server import RedisServer

from shardmon.connection import create_redis
from shardmon.keys import Keys
from shardmon.leader import LeaderElection, LeaseTiming
from shardmon.store import Store
from shardmon.tasks import Stopping


def test_timing_scales_with_the_lease() -> None:
    default = LeaseTiming()
    assert (default.lease_s, default.renew_s, default.stand_down_s) == (15, 2, 10)
    assert default.call_timeout_s == 2
    short = LeaseTiming(1.5)
    assert (short.renew_s, short.stand_down_s) == pytest.approx((0.2, 1.0))


async def test_one_leader_with_a_new_epoch_per_leadership(
    client: aioredis.Redis, keys: Keys
) -> None:
    a = LeaderElection(Store(client, keys), "a:1", LeaseTiming(15))
    b = LeaderElection(Store(client, keys), "b:2", LeaseTiming(15))
    assert await a.campaign_once() and a.epoch == 1
    assert not await b.campaign_once() and b.epoch is None
    assert await a.campaign_once() and a.epoch == 1  # a renewal keeps the epoch
    assert await client.get(keys.leader) == "a:1"
    assert 14_000 < await client.pttl(keys.leader) <= 15_000  # reset to a full lease

    await a.release()
    assert not a.is_leader and await client.get(keys.leader) is None
    assert await b.campaign_once() and b.epoch == 2
    await a.release()  # not the holder: must not delete b's lease
    assert await client.get(keys.leader) == "b:2"


async def test_a_lost_lease_is_noticed_at_the_next_renewal(
    client: aioredis.Redis, keys: Keys
) -> None:
    a = LeaderElection(Store(client, keys), "a:1", LeaseTiming(15))
    assert await a.campaign_once()
    await client.set(keys.leader, "usurper:9")  # e.g. a's lease expired while it was paused
    assert not await a.campaign_once()
    assert a.epoch is None


async def test_a_leader_cut_off_from_redis_stands_down(own_redis: RedisServer, keys: Keys) -> None:
    client = create_redis(own_redis.url)
    election = LeaderElection(Store(client, keys), "a:1", LeaseTiming(1.5))
    assert await election.campaign_once()
    own_redis.freeze()
    try:
        deadline = asyncio.get_running_loop().time() + 5
        while election.is_leader and asyncio.get_running_loop().time() < deadline:
            await election.campaign_once()  # each call is bounded, so this loop keeps going
        assert not election.is_leader and election.epoch is None
    finally:
        own_redis.thaw()
    await client.aclose()


async def test_run_campaigns_until_stopped(client: aioredis.Redis, keys: Keys) -> None:
    election = LeaderElection(Store(client, keys), "a:1", LeaseTiming(1.5))
    stopping = Stopping()
    task = asyncio.create_task(election.run(stopping))
    await asyncio.sleep(0.5)  # two renew periods and more
    assert election.is_leader and await client.get(keys.leader) == "a:1"
    stopping.set()
    await asyncio.wait_for(task, 2)
    await election.release()
    assert await client.get(keys.leader) is None
