"""/shard, the one command for every member: which shard serves a server and whether it is up,
and nothing an operator alone may see."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path

import discord
import pytest
import redis.asyncio as aioredis
from discord.ext import commands
from discord_standins import RecordedInteraction
from fake_discord import FakeDiscord

from cogs.shardmon import ShardmonCog
from shardmon.gateway import shard_for_guild
from shardmon.keys import Keys
from shardmon.models import GatewayState
from shardmon.monitor import GatewayStats, build_monitor
from shardmon.settings import Settings, load_settings

SHARDS = 16
#: What the public answer must never hold: the sample's and the shard registration's private
#: values (a test sample says each of them).
PRIVATE = ("testhost", "host-", "1.2.3", "memory", "cpu", "disk", "rss", "error", "%")


@pytest.fixture
def settings(redis_url: str, monkeypatch: pytest.MonkeyPatch, deployment: str) -> Settings:
    for name, value in {
        "REDIS_URL": redis_url, "DEPLOYMENT": deployment, "SHARD_IDS": "0",
        "SHARD_COUNT": str(SHARDS), "VERSION": "1.2.3",
    }.items():  # fmt: skip
        monkeypatch.setenv(f"SHARDMON_{name}", value)
    return load_settings()


@pytest.fixture
async def cog(settings: Settings, client: aioredis.Redis) -> AsyncIterator[ShardmonCog]:
    bot = commands.AutoShardedBot(command_prefix="!", intents=discord.Intents.default(),
                                  shard_ids=[0], shard_count=SHARDS)  # fmt: skip
    cog = ShardmonCog(bot, settings, client)
    yield cog
    await cog.monitor.stop()


def guild_on(shard: int, n: int = 0) -> int:
    """A server id Discord routes to `shard` of SHARDS."""
    return FakeDiscord.guild_id_on(shard, SHARDS, n)


async def _fleet(settings: Settings, client: aioredis.Redis, tmp_path: Path) -> None:
    """Every shard reporting in its own monitor; shard 5's gateway is down, shard 9 silent."""
    base = settings.monitor_config()
    for shard in range(SHARDS):
        gateway = GatewayState(connected=shard != 5, since_s=900.0, last_connect=1.0)
        stats = GatewayStats(latency_ms=40.0 + shard, guilds=10, users=100, gateway=gateway)
        config = dataclasses.replace(base, shard_ids=(shard,), node=f"host-{shard}:1",
                                     journal_path=tmp_path / f"{shard}.log")  # fmt: skip
        await build_monitor(config, client, gateway=lambda s, g=stats: g).sample_once()
    await client.zadd(Keys(settings.deployment).heartbeats, {"9": time.time() - 3600})


async def _ask(
    cog: ShardmonCog, guild_id: int | None, server_id: str | None
) -> RecordedInteraction:
    interaction = RecordedInteraction(guild_id=guild_id)
    await cog.shard.callback(cog, interaction, server_id)  # type: ignore[arg-type]
    return interaction


async def test_every_server_is_told_its_shard_by_discords_formula(
    cog: ShardmonCog, settings: Settings, client: aioredis.Redis, tmp_path: Path
) -> None:
    await _fleet(settings, client, tmp_path)
    for shard in range(SHARDS):
        guild_id = guild_on(shard, n=shard)
        assert shard_for_guild(guild_id, SHARDS) == shard == (guild_id >> 22) % SHARDS
        [reply] = (await _ask(cog, guild_id, None)).replies  # asked in that server
        assert reply.ephemeral and reply.embed is not None
        embed = reply.embed
        assert embed.title is not None and embed.title.endswith(f"Shard {shard} of {SHARDS}")
        fields = {f.name: f.value for f in embed.fields}
        assert fields["Server"] == str(guild_id)
        if shard == 5:
            assert fields["Status"] == "🔌 disconnected (disconnected for 15m)"
        elif shard == 9:
            assert fields["Status"] == "🔴 down" and fields["Latency"] == "-"
        else:
            assert fields["Status"] == "🟢 up" and fields["Latency"] == f"{40 + shard} ms"
            assert fields["Running since"].startswith("<t:")
        assert fields["Fleet"].startswith(f"14 of {SHARDS} shards up · ")
        text = " ".join([embed.title or "", embed.description or "", embed.footer.text or "",
                         *(f"{f.name} {f.value}" for f in embed.fields)]).lower()  # fmt: skip
        for private in PRIVATE:
            assert private not in text, (shard, private, text)


async def test_a_dm_asks_with_a_server_id_and_garbage_gets_a_polite_reply(
    cog: ShardmonCog, settings: Settings, client: aioredis.Redis, tmp_path: Path
) -> None:
    await _fleet(settings, client, tmp_path)
    [reply] = (await _ask(cog, None, str(guild_on(3)))).replies  # from a DM, with an id
    assert reply.embed is not None and reply.embed.title.endswith(f"Shard 3 of {SHARDS}")  # type: ignore[union-attr]
    [other] = (await _ask(cog, guild_on(1), f" {guild_on(7)} ")).replies  # another server
    assert other.embed is not None and other.embed.title.endswith(f"Shard 7 of {SHARDS}")  # type: ignore[union-attr]
    [without] = (await _ask(cog, None, None)).replies
    assert without.ephemeral and without.embed is None and "server id" in str(without.content)
    for garbage in ("hello", "-5", "12", "1" * 25, "1e18", "0x1f"):
        [refused] = (await _ask(cog, guild_on(1), garbage)).replies
        assert refused.ephemeral and refused.embed is None
        assert "not a server id" in str(refused.content)


async def test_a_member_asking_too_often_is_asked_to_wait(cog: ShardmonCog) -> None:
    from discord import app_commands

    interaction = RecordedInteraction(guild_id=guild_on(0))
    cooldown = app_commands.Cooldown(2, 10.0)
    cooldown.update_rate_limit()
    await cog.cog_app_command_error(
        interaction,  # type: ignore[arg-type]
        app_commands.CommandOnCooldown(cooldown, 7.4),
    )
    [reply] = interaction.replies
    assert reply.ephemeral and reply.content == "Please wait 7 s before asking again."
    checks = [check.__qualname__ for check in cog.shard.checks]
    assert any("cooldown" in name for name in checks)  # per member: key is the user id
