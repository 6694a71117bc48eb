"""The cog watching its shards' gateways, through discord.py's real gateway client (its
websockets, heartbeat threads, RESUME logic) against a local fake Discord (fake_discord.py):
the state in every sample, and the rules firing and resolving once through the real leader."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis
from fake_discord import FakeDiscord, QuickBot, make_bot, running_bot
from helpers import wait_until

from cogs.shardmon import ShardmonCog
from shardmon.keys import Keys
from shardmon.models import GatewayState
from shardmon.rules import CpuRule, MemoryRule, connection_state
from shardmon.settings import Settings, load_settings
from shardmon.store import Store


@pytest.fixture
def settings(redis_url: str, monkeypatch: pytest.MonkeyPatch, deployment: str) -> Settings:
    for name, value in {
        "REDIS_URL": redis_url, "DEPLOYMENT": deployment, "SHARD_IDS": "0-3",
        "SHARD_COUNT": "4", "SAMPLE_INTERVAL_S": "3600",  # the test samples and ticks itself
    }.items():  # fmt: skip
        monkeypatch.setenv(f"SHARDMON_{name}", value)
    return load_settings()


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(shard_count=4) as server:
        yield server


async def _cog(bot: QuickBot, settings: Settings, client: aioredis.Redis) -> ShardmonCog:
    cog = ShardmonCog(bot, settings, client)
    await bot.add_cog(cog)  # cog_load: the monitor starts and joins the election
    await wait_until(cog.monitor.election.campaign_once)
    return cog


async def _gateways(cog: ShardmonCog) -> dict[int, GatewayState]:
    """Sample now, as the cog's loop does, and read back what Redis holds."""
    await cog.refresh_gateway()
    await cog.monitor.sample_once()
    latest = await cog.store.latest_samples()
    return {shard: sample.gateway for shard, sample in latest.items() if sample.gateway}


async def _judge(cog: ShardmonCog) -> list[tuple[str, str, list[int]]]:
    """One leader tick; (kind, rule, shards) of every alert record so far, oldest first, but
    those of this machine's own CPU and memory (a busy test machine may cross 85%)."""
    assert await cog.monitor.judge.tick()
    await cog.monitor.alerter.wait_for_deliveries()
    records = [json.loads(r) for r in await cog.client.lrange(Keys(cog.settings.deployment).alerts,
                                                               0, -1)]  # fmt: skip
    return [(r["kind"], r["rule"], r["shards"]) for r in reversed(records)
            if r["rule"] not in (MemoryRule.name, CpuRule.name)]  # fmt: skip


async def _until(check: Callable[[], bool]) -> None:
    async def holds() -> bool:
        return check()

    await wait_until(holds)


def _fresh_dispatch(cog: ShardmonCog, shard: int) -> bool:
    """Whether the cog has credited the shard with a dispatch in the last quarter second."""
    cog.watch.before_sample()
    age = _now(cog, shard).dispatch_age_s
    return age is not None and age < 0.25


def _now(cog: ShardmonCog, shard: int) -> GatewayState:
    """The shard's state as the cog's tracker has it now (before any sample)."""
    state = cog.watch.tracker.state(shard)
    assert state is not None
    return state


async def test_samples_carry_each_shards_connection_drops_resumes_and_dispatches(
    fake: FakeDiscord, settings: Settings, client: aioredis.Redis
) -> None:
    bot = make_bot(shard_count=4, shard_ids=[0, 1, 2, 3])
    cog = await _cog(bot, settings, client)
    try:
        async with running_bot(bot, fake):
            gateways = await _gateways(cog)
            assert sorted(gateways) == [0, 1, 2, 3]
            for state in gateways.values():
                assert state.connected and state.last_connect and state.last_ready
                assert state.dispatch_age_s is not None  # READY moved each shard's sequence
            await fake.drop(1)
            await _until(lambda: _now(cog, 1).last_resume is not None)
            await fake.dispatch(3, "SHARDMON_TEST", {})
            await _until(lambda: _fresh_dispatch(cog, 3))
            gateways = await _gateways(cog)
            assert gateways[1].connected and gateways[1].disconnects_total == 1
            assert gateways[1].last_resume is not None and fake.resumes == [1]
            assert fake.identifies == [0, 1, 2, 3]  # a RESUME spends no IDENTIFY
            ages = {s: g.dispatch_age_s for s, g in gateways.items()}
            assert ages[3] is not None and ages[0] is not None and ages[3] < ages[0]
            counts = await Store(client, Keys(settings.deployment)).gateway_counts(range(4))
            assert counts[1].resumes == 1 and counts[1].identifies == 1
    finally:
        await bot.remove_cog(cog.qualified_name)


async def test_a_shard_held_disconnected_is_alerted_once_and_resolved_on_resume(
    fake: FakeDiscord, settings: Settings, client: aioredis.Redis
) -> None:
    keys = Keys(settings.deployment)
    await client.hset(keys.thresholds, "disconnected:1", "0.5")  # half a second, for the test
    bot = make_bot(shard_count=4, shard_ids=[0, 1, 2, 3])
    cog = await _cog(bot, settings, client)
    try:
        async with running_bot(bot, fake):
            fake.hold(1)
            await fake.drop(1)
            await fake.wait_held(1)  # discord.py asked to RESUME; nobody answers
            await _until(lambda: not _now(cog, 1).connected)
            await _gateways(cog)
            sample = (await cog.store.latest_samples())[1]
            assert connection_state(sample, time.time(), cog.limits) == "resuming"
            await _until(lambda: _now(cog, 1).since_s > 0.6)
            await _gateways(cog)
            assert await _judge(cog) == [("alert", "disconnected", [1])]
            assert await _judge(cog) == [("alert", "disconnected", [1])]  # once a window
            totals = await cog.store.fleet_totals(180)
            assert (totals.up, totals.disconnected) == (3, 1)
            await fake.release(1)
            await _until(lambda: _now(cog, 1).connected)
            await _gateways(cog)
            assert await _judge(cog) == [
                ("alert", "disconnected", [1]), ("resolved", "disconnected", [1]),
            ]  # fmt: skip
    finally:
        await bot.remove_cog(cog.qualified_name)


async def test_an_outage_of_most_shards_is_one_incident_through_discord_py(
    settings: Settings, client: aioredis.Redis
) -> None:
    """Three of four shards (75%) lose their sessions at once: one outage alert, no per-shard
    disconnect alert although each is past its threshold, one resolution once they resume."""
    keys = Keys(settings.deployment)
    await client.hset(keys.thresholds, "disconnected", "0.5")
    async with FakeDiscord(shard_count=4) as fake:
        bot = make_bot(shard_count=4, shard_ids=[0, 1, 2, 3])
        cog = await _cog(bot, settings, client)
        try:
            async with running_bot(bot, fake):
                for shard in (1, 2, 3):
                    fake.hold(shard)
                    await fake.drop(shard)
                for shard in (1, 2, 3):
                    await fake.wait_held(shard)
                await _until(lambda: all(_now(cog, s).since_s > 0.6 for s in (1, 2, 3)))
                await _gateways(cog)
                assert await _judge(cog) == [("alert", "gateway_outage", [])]
                assert await _judge(cog) == [("alert", "gateway_outage", [])]  # held, once
                for shard in (1, 2, 3):
                    await fake.release(shard)
                await _until(lambda: all(_now(cog, s).connected for s in (1, 2, 3)))
                await _gateways(cog)
                assert await _judge(cog) == [
                    ("alert", "gateway_outage", []), ("resolved", "gateway_outage", []),
                ]  # fmt: skip
        finally:
            await bot.remove_cog(cog.qualified_name)


async def test_a_zombie_shard_is_alerted_and_resolved_by_its_next_dispatch(
    fake: FakeDiscord, settings: Settings, client: aioredis.Redis
) -> None:
    keys = Keys(settings.deployment)
    await client.hset(keys.thresholds, "zombie", "0.5")
    fake.add_guild(fake.guild_id_on(2, 4), name="lively")  # shard 2 has a server; others none
    bot = make_bot(shard_count=4, shard_ids=[0, 1, 2, 3])
    cog = await _cog(bot, settings, client)
    try:
        async with running_bot(bot, fake):
            await asyncio.sleep(0.7)  # the scenario: half a second and more without an event
            gateways = await _gateways(cog)
            assert all(g.connected for g in gateways.values())
            assert await _judge(cog) == [("alert", "zombie", [2])]
            await fake.dispatch(2, "SHARDMON_TEST", {})
            await _until(lambda: _fresh_dispatch(cog, 2))
            await _gateways(cog)
            assert await _judge(cog) == [("alert", "zombie", [2]), ("resolved", "zombie", [2])]
    finally:
        await bot.remove_cog(cog.qualified_name)


async def test_the_leader_reads_the_session_start_limit_through_discord_py(
    fake: FakeDiscord, settings: Settings, client: aioredis.Redis
) -> None:
    fake.session_start_limit = {"total": 1000, "remaining": 120, "reset_after": 7_200_000,
                                "max_concurrency": 16}  # fmt: skip
    bot = make_bot(shard_count=4, shard_ids=[0, 1, 2, 3])
    cog = await _cog(bot, settings, client)
    try:
        async with running_bot(bot, fake):
            await _gateways(cog)
            assert await _judge(cog) == [("alert", "identify_budget", [])]
            limit = await cog.store.session_limit()
            assert limit is not None and (limit.remaining, limit.max_concurrency) == (120, 16)
            [page] = await _shards_pages(cog)
            assert "120 of 1,000 left" in str(page.footer.text)
    finally:
        await bot.remove_cog(cog.qualified_name)


async def _shards_pages(cog: ShardmonCog) -> list[object]:
    from shardmon.discordpy.embeds import shards_pages

    status = await cog.store.fleet_status(cog.limits.offline_after_s)
    return list(shards_pages(status.summary, status.gateway, limits=cog.limits, shard_count=4,
                             session_limit=status.session_limit, now=status.now))  # fmt: skip


@pytest.mark.timeout(60)
async def test_a_blocked_event_loop_is_a_loop_stall_on_its_shards(
    settings: Settings, client: aioredis.Redis
) -> None:
    """SLOW (~11 s): discord.py waits 10 s for a heartbeat to go out before it warns that the
    heartbeat was blocked, so the loop is blocked for longer than that."""
    async with FakeDiscord(shard_count=4, heartbeat_interval_ms=200) as fake:
        bot = make_bot(shard_count=4, shard_ids=[0, 1, 2, 3])
        cog = await _cog(bot, settings, client)
        try:
            async with running_bot(bot, fake):
                time.sleep(11)  # noqa: ASYNC251 - a blocking call in a handler: the scenario
                await _until(lambda: all(_now(cog, s).stalls_1h for s in range(4)))
                gateways = await _gateways(cog)
                assert all(g.stalls_1h >= 1 and g.stalls_total >= 1 for g in gateways.values())
                [(kind, rule, shards)] = await _judge(cog)
                assert (kind, rule, shards) == ("alert", "loop_stall", [0, 1, 2, 3])
        finally:
            await bot.remove_cog(cog.qualified_name)
