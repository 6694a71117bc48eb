"""Who may use what, as Discord and discord.py decide it: the commands as Discord receives them
(synced through discord.py's tree to SimCord's in-memory Discord, which applies their scopes,
contexts and default permissions), and the operator check run by discord.py's own command
dispatch, for an owner, a member with and without the role, and a stranger."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import discord
import pytest
import redis.asyncio as aioredis
import simcord
from discord.ext import commands
from discord_standins import RecordedInteraction
from fake_discord import FakeDiscord, make_bot, running_bot

from cogs.shardmon import ShardmonCog
from shardmon.discordpy.access import REFUSAL, NotAnOperator, OperatorAccess, sync_commands
from shardmon.settings import Settings, load_settings

INFRASTRUCTURE = {"uptime", "restarts", "restart_stats", "performance", "shards", "restart"}
#: The options a command cannot be run without.
OPTIONS: dict[str, dict[str, str]] = {"restart": {"shards": "0"}}
OPS_GUILD = 1_150_000_000_000_000_001  # the operators' own server
SECRET_ERROR = "OperationalError: password authentication failed for user 'bot' on db-7.internal"

Scenario = Callable[[Any, commands.AutoShardedBot], Awaitable[None]]


@pytest.fixture
def environment(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, deployment: str
) -> Callable[..., Settings]:
    def settings(**extra: str) -> Settings:
        for name, value in {"REDIS_URL": redis_url, "DEPLOYMENT": deployment, **extra}.items():
            monkeypatch.setenv(f"SHARDMON_{name}", value)
        return load_settings()

    return settings


async def _in_simcord(scenario: Scenario) -> None:
    """Run `scenario(env, bot)` with a one-shard bot in SimCord; the scenario loads the cog
    (`_load`) once its servers and roles exist, and the cog is removed at the end."""
    bot = commands.AutoShardedBot(command_prefix="!", intents=discord.Intents.default(),
                                  shard_ids=[0], shard_count=1)  # fmt: skip
    async with simcord.run(bot) as env:
        try:
            await scenario(env, bot)
        finally:
            for name in list(bot.cogs):
                await bot.remove_cog(name)


async def _load(
    bot: commands.AutoShardedBot, settings: Settings, client: aioredis.Redis
) -> ShardmonCog:
    """The cog, loaded and synced, with a crash in its history whose error must stay private."""
    cog = ShardmonCog(bot, settings, client)
    await bot.add_cog(cog)
    await cog.monitor.log_restart("crash", {"error": SECRET_ERROR})
    await cog.monitor.sample_once()
    return cog


def _registered(env: Any, guild_id: int | None) -> dict[str, dict[str, Any]]:
    """The commands Discord holds for a guild (None: global), by name."""
    return {name: command for (name, _), command in env.backend.commands.get(guild_id, {}).items()}


def _refused(result: Any) -> bool:
    response = result.response
    return (
        response is not None
        and response.ephemeral
        and response.content == REFUSAL
        and not response.embeds
        and not result.followups
    )


async def _refused_by_every_command(env: Any, member: Any, channel: Any) -> None:
    """Each infrastructure command refuses `member`, privately. discord.py passes a refusal to
    the tree's error handler too, after the cog's handler answered it; SimCord records those,
    and they must be exactly the refusals."""
    for name in sorted(INFRASTRUCTURE):
        assert _refused(await member.slash(channel, name, **OPTIONS.get(name, {}))), name
    assert [type(error) for error in env.errors] == [NotAnOperator] * len(INFRASTRUCTURE)


def _member(env: Any, guild: Any, name: str, permissions: discord.Permissions) -> Any:
    """A new member of `guild` whose one role (named after them) grants `permissions`."""
    role = guild.create_role(name, permissions=permissions)
    return guild.add_member(env.create_user(name), roles=[role])


def _private(result: Any) -> bool:
    """Whether every message of the answer is one only its asker sees."""
    messages = [m for m in (result.response, *result.followups) if m is not None]
    return bool(messages) and all(message.ephemeral for message in messages)


def _embeds(result: Any) -> list[discord.Embed]:
    messages = [m for m in (result.response, *result.followups) if m is not None]
    return [embed for message in messages for embed in message.embeds]


def _text(embed: discord.Embed) -> str:
    return str(embed.to_dict())


async def test_with_an_operator_guild_the_infrastructure_commands_exist_there_only(
    environment: Callable[..., Settings], client: aioredis.Redis
) -> None:
    settings = environment(OPERATOR_GUILD_IDS=str(OPS_GUILD))

    async def scenario(env: Any, bot: commands.AutoShardedBot) -> None:
        owner = env.create_user("owner")
        bot.owner_id = owner.id
        ops = env.create_guild("ops", id=OPS_GUILD, owner=owner)
        stranger_guild = env.create_guild("a public server")
        await _load(bot, settings, client)
        assert await sync_commands(bot, settings) == {None: 1, OPS_GUILD: len(INFRASTRUCTURE)}

        assert set(_registered(env, None)) == {"shard"}
        public = _registered(env, None)["shard"]
        assert public["contexts"] == [0, 1] and public["default_member_permissions"] is None
        infrastructure = _registered(env, OPS_GUILD)
        assert set(infrastructure) == INFRASTRUCTURE
        for command in infrastructure.values():  # servers only, hidden from non-managers
            assert command["contexts"] == [0] and command["guild_id"] == str(OPS_GUILD)
            assert (
                command["default_member_permissions"]
                == discord.Permissions(manage_guild=True).value
            )
        assert _registered(env, stranger_guild.id) == {}

        admin = _member(env, stranger_guild, "admin", discord.Permissions.all())
        channel = stranger_guild.create_text_channel("general")
        assert admin.available_commands(channel) == ("shard",)
        answer = await admin.slash(channel, "shard")
        assert answer.ephemeral and _embeds(answer)

        desk = ops.create_text_channel("ops-desk")
        owner_member = ops.add_member(owner)
        assert set(owner_member.available_commands(desk)) == INFRASTRUCTURE | {"shard"}
        restarts = await owner_member.slash(desk, "restarts")
        [embed] = _embeds(restarts)
        assert "password authentication failed" in _text(embed)  # the operators see errors
        assert not _private(restarts)  # in the operators' own channel, for all of them
        # A member of the operators' server who is neither owner nor manager sees none of them;
        # one with Manage Server (a support server's moderator) sees them and is refused.
        member = ops.add_member(env.create_user("member"))
        assert member.available_commands(desk) == ("shard",)
        moderator = _member(env, ops, "moderator", discord.Permissions(manage_guild=True))
        await _refused_by_every_command(env, moderator, desk)

    await _in_simcord(scenario)


async def test_without_operator_guilds_every_stranger_is_refused_by_every_command(
    environment: Callable[..., Settings], client: aioredis.Redis
) -> None:
    settings = environment()

    async def scenario(env: Any, bot: commands.AutoShardedBot) -> None:
        owner = env.create_user("owner")
        bot.owner_id = owner.id
        guild = env.create_guild("a public server")
        await _load(bot, settings, client)
        await sync_commands(bot, settings)
        registered = _registered(env, None)
        assert set(registered) == INFRASTRUCTURE | {"shard"}
        for name in INFRASTRUCTURE:  # global, but hidden from all but administrators
            assert (
                registered[name]["default_member_permissions"]
                == discord.Permissions(administrator=True).value
            )
        channel = guild.create_text_channel("general")
        manager = _member(env, guild, "manager", discord.Permissions(manage_guild=True))
        assert manager.available_commands(channel) == ("shard",)
        admin = _member(env, guild, "admin", discord.Permissions.all())
        # An administrator sees them, and is refused.
        await _refused_by_every_command(env, admin, channel)
        answer = await manager.slash(channel, "shard")
        [embed] = _embeds(answer)
        assert answer.ephemeral and "Shard 0" in _text(embed)
        # The application's owner, in that same server, is answered and shown the error, in a
        # reply that only the owner sees.
        owner_member = guild.add_member(owner, roles=[guild.roles["admin"]])
        restarts = await owner_member.slash(channel, "restarts")
        [embed] = _embeds(restarts)
        assert "password authentication failed" in _text(embed) and _private(restarts)

    await _in_simcord(scenario)


async def test_a_role_check_answers_the_role_and_refuses_the_rest(
    environment: Callable[..., Settings], client: aioredis.Redis
) -> None:
    async def scenario(env: Any, bot: commands.AutoShardedBot) -> None:
        ops = env.create_guild("ops", id=OPS_GUILD)
        role = ops.create_role("on-call")
        settings = environment(OPERATOR_GUILD_IDS=str(OPS_GUILD), OPERATOR_CHECK=f"role:{role.id}")
        await _load(bot, settings, client)
        await sync_commands(bot, settings)
        # Discord cannot hide a command by role: the check alone decides, so all see them.
        for command in _registered(env, OPS_GUILD).values():
            assert command["default_member_permissions"] is None
        desk = ops.create_text_channel("ops-desk")
        on_call = ops.add_member(env.create_user("on-call"), roles=[role])
        [embed] = _embeds(await on_call.slash(desk, "uptime"))
        assert embed.title == "🤖 Fleet uptime and health"
        [embed] = _embeds(await on_call.slash(desk, "restarts"))
        assert "password authentication failed" in _text(embed)  # an operator guild
        member = ops.add_member(env.create_user("member"))
        await _refused_by_every_command(env, member, desk)

    await _in_simcord(scenario)


async def test_a_manage_guild_check_outside_operator_guilds_hides_crash_errors(
    environment: Callable[..., Settings], client: aioredis.Redis
) -> None:
    """The old rule, shown to everyone: a member without Manage Server is refused; a manager is
    answered, privately, without the crash errors (a stranger's server)."""
    settings = environment(OPERATOR_CHECK="manage_guild", OPERATOR_COMMANDS_HIDDEN="false")

    async def scenario(env: Any, bot: commands.AutoShardedBot) -> None:
        guild = env.create_guild("a public server")
        await _load(bot, settings, client)
        await sync_commands(bot, settings)
        assert all(c["default_member_permissions"] is None
                   for c in _registered(env, None).values())  # fmt: skip
        channel = guild.create_text_channel("general")
        manager = _member(env, guild, "manager", discord.Permissions(manage_guild=True))
        restarts = await manager.slash(channel, "restarts")
        [embed] = _embeds(restarts)
        assert "💥 **crash**" in (embed.description or "") and _private(restarts)
        assert "password" not in _text(embed) and "internal" not in _text(embed)
        assert embed.footer.text == "Crash errors are shown in the operators' servers only"
        member = guild.add_member(env.create_user("member"))
        await _refused_by_every_command(env, member, channel)

    await _in_simcord(scenario)


@pytest.mark.parametrize(
    ("check", "guilds", "hidden", "seen_by"),
    [
        ("owner", "", "true", "administrator"),
        ("owner", str(OPS_GUILD), "true", "manage_guild"),
        ("manage_guild", "", "true", "manage_guild"),
        ("manage_guild", str(OPS_GUILD), "true", "manage_guild"),
        ("role:1150000000000000077", "", "true", "administrator"),
        ("role:1150000000000000077", str(OPS_GUILD), "true", None),
        ("owner", "", "false", None),
    ],
)
def test_who_sees_the_commands_by_default(
    environment: Callable[..., Settings], check: str, guilds: str, hidden: str, seen_by: str | None
) -> None:
    settings = environment(OPERATOR_CHECK=check, OPERATOR_GUILD_IDS=guilds,
                           OPERATOR_COMMANDS_HIDDEN=hidden)  # fmt: skip
    expected = None if seen_by is None else discord.Permissions(**{seen_by: True})
    assert OperatorAccess(make_bot(), settings).default_permissions == expected


@pytest.fixture
async def team_discord() -> AsyncIterator[FakeDiscord]:
    """A Discord whose application belongs to a team: an admin, a developer, a read-only
    member."""
    async with FakeDiscord() as fake:
        fake.team = {
            "id": "1150000000000000500", "name": "ops", "icon": None,
            "owner_user_id": "1150000000000000501",
            "members": [
                {"membership_state": 2, "team_id": "1150000000000000500", "role": role,
                 "user": {"id": user_id, "username": role, "discriminator": "0",
                          "avatar": None, "global_name": None}}
                for user_id, role in (("1150000000000000501", "admin"),
                                      ("1150000000000000502", "developer"),
                                      ("1150000000000000503", "read_only"))
            ],
        }  # fmt: skip
        yield fake


async def test_the_owner_check_answers_the_team_as_discord_py_reads_it(
    team_discord: FakeDiscord, environment: Callable[..., Settings]
) -> None:
    """discord.py's `is_owner` reads the application through GET /oauth2/applications/@me:
    its team's admins and developers are owners; read-only members are not."""
    settings = environment()
    async with running_bot(make_bot(), team_discord) as bot:
        access = OperatorAccess(bot, settings)

        async def allows(user_id: int, guild_id: int | None = OPS_GUILD) -> bool:
            interaction = RecordedInteraction(guild_id=guild_id)
            interaction.user = discord.Object(user_id)
            return await access.allows(interaction)  # type: ignore[arg-type]

        assert await allows(1_150_000_000_000_000_501)
        assert await allows(1_150_000_000_000_000_502)
        assert not await allows(1_150_000_000_000_000_503)  # read-only
        assert not await allows(4242)  # a stranger
        assert not await allows(1_150_000_000_000_000_501, guild_id=None)  # never in DMs


async def test_the_owner_check_refuses_when_discord_cannot_say_who_the_owner_is(
    environment: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    async with FakeDiscord() as fake, running_bot(make_bot(), fake) as bot:
        fake.application_status = 403
        interaction = RecordedInteraction(guild_id=OPS_GUILD)
        interaction.user = discord.Object(fake.user_id + 1)  # the owner, as far as one knows
        assert not await OperatorAccess(bot, environment()).allows(interaction)  # type: ignore[arg-type]
    assert "the application's owner is unknown" in caplog.text


async def test_the_cog_unloads_and_loads_again_with_operator_guilds(
    environment: Callable[..., Settings], client: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """discord.py's cog removal takes the guilds of the first guild-scoped command for all that
    follow: the global /shard must not stay behind, or a reload fails."""
    caplog.set_level(logging.INFO, "shardmon")
    settings = environment(OPERATOR_GUILD_IDS=str(OPS_GUILD))
    bot = make_bot()
    ops = discord.Object(OPS_GUILD)
    for _ in range(2):
        await bot.add_cog(ShardmonCog(bot, settings, client))
        assert [c.name for c in bot.tree.get_commands()] == ["shard"]
        assert {c.name for c in bot.tree.get_commands(guild=ops)} == INFRASTRUCTURE
        await bot.remove_cog("Shardmon")
        assert bot.tree.get_commands() == [] and bot.tree.get_commands(guild=ops) == []
    assert "registered in operator guilds 1150000000000000001, for owner" in caplog.text
    assert "are global commands" not in caplog.text


async def test_the_start_log_says_once_how_to_scope_global_commands(
    environment: Callable[..., Settings], client: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    bot = make_bot()
    await bot.add_cog(ShardmonCog(bot, environment(), client))
    await bot.remove_cog("Shardmon")
    [warning] = [r for r in caplog.records if "are global commands" in r.message]
    assert warning.levelno == logging.WARNING and "SHARDMON_OPERATOR_GUILD_IDS" in warning.message


@pytest.mark.parametrize(
    "setting",
    [{"OPERATOR_GUILD_IDS": str(OPS_GUILD)}, {"ALERT_GUILD_IDS": str(OPS_GUILD)},
     {"ALERT_GUILD_IDS": str(OPS_GUILD), "OPERATOR_GUILD_IDS": str(OPS_GUILD - 1)}],
    ids=["operator-guilds", "alert-guilds", "alert-guilds-first"],
)  # fmt: skip
async def test_alert_channels_are_detected_in_the_operators_servers_only(
    environment: Callable[..., Settings], client: aioredis.Redis, setting: dict[str, str]
) -> None:
    """A stranger's older server with a #bot-logs must never receive the alerts; the older
    setting, SHARDMON_ALERT_GUILD_IDS, names the servers just as well, and first (there, the
    older server is an operator guild that is not for alerts)."""
    settings = environment(**setting)

    async def scenario(env: Any, bot: commands.AutoShardedBot) -> None:
        cog = await _load(bot, settings, client)
        stranger = env.create_guild("a public server", id=OPS_GUILD - 1)  # first by id
        stranger.create_text_channel("bot-logs")
        ops = env.create_guild("ops", id=OPS_GUILD)
        channel = ops.create_text_channel("bot-logs")
        for guild in bot.guilds:  # as on a shard's READY, which lists every server
            await cog.on_guild_join(guild)
        assert await cog.store.alert_channel() == channel.id
        sinks = [sink.name for sink in cog.monitor.alerter.sinks]
        assert sinks == ["log", "discord_channel"]

    await _in_simcord(scenario)
