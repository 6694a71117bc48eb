"""The cog in SimCord, an offline Discord that runs discord.py's own code on a virtual clock: an
AutoShardedBot whose shard disconnects and reconnects, with the monitor's sampling, election
and judging loops driven by `advance_time` (their waits are plain sleeps that it can drive)."""

from __future__ import annotations

import json

import discord
import pytest
import redis.asyncio as aioredis
import simcord
from discord.ext import commands

from cogs.shardmon import ShardmonCog
from shardmon.keys import Keys
from shardmon.rules import CpuRule, MemoryRule
from shardmon.settings import Settings, load_settings

#: SimCord gives an advance of its virtual clock 5 real seconds for what it sets off (the
#: monitor's Redis round trips are real): 180 virtual seconds of renewals, samples and ticks
#: took 4.96 s on this machine, and a busy CI ran past them. Advances go 30 s at a time.
STEP_S = 30


async def advance(env: simcord.Env, seconds: float) -> None:
    """`env.advance_time(seconds)` in steps of STEP_S, each with SimCord's own real deadline."""
    while seconds > 0:
        await env.advance_time(min(STEP_S, seconds))
        seconds -= STEP_S


@pytest.fixture
def settings(redis_url: str, monkeypatch: pytest.MonkeyPatch, deployment: str) -> Settings:
    for name, value in {
        "REDIS_URL": redis_url, "DEPLOYMENT": deployment, "SHARD_IDS": "0,1",
        "SHARD_COUNT": "2", "SAMPLE_INTERVAL_S": "30",
    }.items():  # fmt: skip
        monkeypatch.setenv(f"SHARDMON_{name}", value)
    return load_settings()


async def _alerts(client: aioredis.Redis, keys: Keys) -> list[tuple[str, str, list[int]]]:
    """(kind, rule, shards) of every alert record, oldest first, but those of this machine's own
    CPU and memory (a busy test machine may cross 85%)."""
    records = [json.loads(raw) for raw in await client.lrange(keys.alerts, 0, -1)]
    return [(r["kind"], r["rule"], r["shards"]) for r in reversed(records)
            if r["rule"] not in (MemoryRule.name, CpuRule.name)]  # fmt: skip


async def test_a_shard_that_disconnects_in_simcord_is_alerted_and_resolved_once(
    settings: Settings, client: aioredis.Redis
) -> None:
    keys = Keys(settings.deployment)
    bot = commands.AutoShardedBot(command_prefix="!", intents=discord.Intents.default(),
                                  shard_ids=[0, 1], shard_count=2)  # fmt: skip
    cog = ShardmonCog(bot, settings, client)

    async def setup_hook() -> None:
        await bot.add_cog(cog)

    async def on_guild_channel_create(channel: discord.abc.GuildChannel) -> None:
        """Shard 1's connection drops or comes back, as the bot's own code sees it (in the
        bot, on its clock: an action of the test itself runs on the test's)."""
        shard = bot.get_shard(1)
        assert shard is not None
        await (shard.disconnect() if channel.name == "drop" else shard.reconnect())

    bot.setup_hook = setup_hook  # type: ignore[method-assign]
    bot.add_listener(on_guild_channel_create)
    async with simcord.run(bot) as env:
        guild = env.create_guild("ops", shard_id=0)  # its events come through shard 0
        await advance(env, 60)  # two samples, elections and ticks, all virtual
        assert await client.get(keys.leader) == cog.monitor.config.node  # it leads
        guild.create_text_channel("drop")
        # past SHARDMON_DISCONNECTED_AFTER_S (120), and a sample and a tick more (30 s each)
        await advance(env, 180)
        assert await _alerts(client, keys) == [("alert", "disconnected", [1])]
        sample = (await cog.store.latest_samples())[1]
        assert sample.gateway is not None and not sample.gateway.connected
        assert sample.gateway.since_s >= 120  # virtual seconds, measured by the bot
        guild.create_text_channel("back")
        await advance(env, 90)
        assert await _alerts(client, keys) == [
            ("alert", "disconnected", [1]), ("resolved", "disconnected", [1]),
        ]  # fmt: skip
        await bot.remove_cog(cog.qualified_name)


async def test_performance_in_simcord_uploads_its_chart_through_discord_py(
    settings: Settings, client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/performance with the charts extra: discord.py uploads the PNG with the followup, and
    Discord holds it as the attachment the embed's image names."""
    monkeypatch.setenv("SHARDMON_OPERATOR_CHECK", "manage_guild")  # the guild's owner is one
    settings = load_settings()
    bot = commands.AutoShardedBot(command_prefix="!", intents=discord.Intents.default(),
                                  shard_ids=[0, 1], shard_count=2)  # fmt: skip
    cog = ShardmonCog(bot, settings, client)

    async def setup_hook() -> None:
        await bot.add_cog(cog)

    bot.setup_hook = setup_hook  # type: ignore[method-assign]
    async with simcord.run(bot) as env:
        await bot.tree.sync()
        owner = env.create_user("owner")
        guild = env.create_guild("ops", shard_id=0, owner=owner)
        channel = guild.create_text_channel("general")
        await advance(env, 90)  # three samples a shard, virtual
        answer = (await guild.add_member(owner).slash(channel, "performance")).response
        assert answer is not None and answer.ephemeral  # not an operator guild: to the asker
        [embed] = answer.embeds
        assert embed.title == "📈 Performance: whole fleet, last hour"
        assert embed.image.url == "attachment://performance.png"
        [attachment] = answer.attachments
        assert attachment.filename == "performance.png"
        assert (await attachment.read()).startswith(b"\x89PNG\r\n\x1a\n")
        await bot.remove_cog(cog.qualified_name)
