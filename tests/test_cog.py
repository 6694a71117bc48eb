"""The discord.py extension through discord.py's own objects: a real AutoShardedBot, its
command tree, real Embeds; fleet data written to a real Redis by real monitors."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import discord
import pytest
import redis.asyncio as aioredis
from discord.ext import commands
from discord_standins import LocalDiscord, RecordedInteraction, self_signed
from helpers import artifacts
from PIL import Image

from cogs.shardmon import ShardmonCog
from shardmon import api
from shardmon.connection import create_redis
from shardmon.discordpy import cog as cog_module
from shardmon.discordpy.sinks import ChannelSink
from shardmon.keys import Keys
from shardmon.models import RunState
from shardmon.monitor import GatewayStats, build_monitor
from shardmon.settings import Settings, load_settings
from shardmon.sinks import Alert
from shardmon.store import Store

COMMANDS = {"uptime", "restarts", "restart_stats", "performance", "shards", "shard", "restart"}


@pytest.fixture
def settings(redis_url: str, monkeypatch: pytest.MonkeyPatch, deployment: str) -> Settings:
    for name, value in {
        "REDIS_URL": redis_url, "DEPLOYMENT": deployment, "SHARD_IDS": "0,1",
        "SHARD_COUNT": "4", "SAMPLE_INTERVAL_S": "60",
    }.items():  # fmt: skip
        monkeypatch.setenv(f"SHARDMON_{name}", value)
    return load_settings()


def _bot(**options: object) -> commands.AutoShardedBot:
    return commands.AutoShardedBot(
        command_prefix="!", intents=discord.Intents.default(), shard_ids=[0, 1], shard_count=4,
        **options,  # type: ignore[arg-type]
    )  # fmt: skip


@pytest.fixture
async def cog(settings: Settings, client: aioredis.Redis) -> AsyncIterator[ShardmonCog]:
    cog = ShardmonCog(_bot(), settings, client)
    yield cog
    await cog.monitor.stop()


async def _fleet(settings: Settings, client: aioredis.Redis, tmp_path: Path) -> None:
    """Four shards in three real monitors; shard 3 crash-loops, shard 2 went silent."""
    base = settings.monitor_config()
    for shards, node in (((0, 1), "host-a:1"), ((2,), "host-b:2"), ((3,), "host-c:3")):
        config = dataclasses.replace(
            base, shard_ids=shards, node=node, journal_path=tmp_path / f"{node}.log"
        )
        gateway = {s: GatewayStats(latency_ms=40.0 + s, guilds=100 * (s + 1), users=1000 * (s + 1))
                   for s in shards}  # fmt: skip
        monitor = build_monitor(config, client, gateway=gateway.__getitem__)
        for _ in range(3):
            await monitor.sample_once()
        await monitor.log_restart("startup")
        if shards == (3,):
            for _ in range(3):
                await monitor.log_restart("crash", {"error": "boom @everyone"})
    await client.zadd(Keys(settings.deployment).heartbeats, {"2": time.time() - 3600})


async def test_extension_loads_into_an_autosharded_bot_beside_valid_commands(
    settings: Settings, client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api, "_startup_claimed", False)  # as in a fresh process
    bot = _bot()
    await bot.load_extension("cogs.shardmon")
    try:
        tree = bot.tree
        assert {c.name for c in tree.get_commands()} == COMMANDS
        for command in tree.get_commands():
            payload = command.to_dict(tree)
            assert re.fullmatch(r"[-_a-z0-9]{1,32}", payload["name"])
            assert 1 <= len(payload["description"]) <= 100
            if payload["name"] == "shard":  # for everyone, in servers and in DMs
                assert payload["default_member_permissions"] is None
                assert payload["contexts"] == [0, 1]
                [option] = payload["options"]
                assert (option["name"], option["type"], option["required"]) == (
                    "server_id", discord.AppCommandOptionType.string.value, False
                )  # fmt: skip
                continue
            assert (  # global (no operator guild): hidden from all but administrators
                payload["default_member_permissions"]
                == discord.Permissions(administrator=True).value
            )
            assert payload["dm_permission"] is False and payload["contexts"] == [0]
        options = {o["name"]: o for o in tree.get_command("restarts").to_dict(tree)["options"]}  # type: ignore[union-attr]
        assert options["limit"]["type"] == discord.AppCommandOptionType.integer.value
        assert (options["limit"]["min_value"], options["limit"]["max_value"]) == (1, 50)
        assert options["limit"]["required"] is False
        shard = tree.get_command("performance").to_dict(tree)["options"][0]  # type: ignore[union-attr]
        assert shard["name"] == "shard" and shard["min_value"] == 0 and shard["required"] is False
        cog = bot.get_cog("Shardmon")
        assert type(cog).__name__ == "ShardmonCog"
        assert cog.sample_loop.is_running()  # type: ignore[union-attr]
        # One startup per process: the extension logged it on load.
        history = await cog.store.restart_history(5)  # type: ignore[union-attr]
        assert [e.type.value for e in history] == ["startup"]
    finally:
        await bot.unload_extension("cogs.shardmon")
    assert tree.get_commands() == []


async def test_infrastructure_commands_can_be_shown_to_everyone(
    settings: Settings, client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHARDMON_OPERATOR_COMMANDS_HIDDEN", "false")
    cog = ShardmonCog(_bot(), load_settings(), client)
    assert all(c.default_permissions is None for c in cog.walk_app_commands())
    assert all(c.guild_only for c in cog.walk_app_commands() if c.name != "shard")


async def test_alerts_go_to_a_channel_only_when_one_is_named_or_guilds_are_given(
    settings: Settings, client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    def sinks() -> list[str]:
        return [s.name for s in ShardmonCog(_bot(), load_settings(), client).monitor.alerter.sinks]

    assert sinks() == ["log"]  # no channel of a stranger's server by default
    monkeypatch.setenv("SHARDMON_ALERT_GUILD_IDS", "100,200")
    assert sinks() == ["log", "discord_channel"]


async def test_uptime_answers_for_the_whole_fleet(
    cog: ShardmonCog, settings: Settings, client: aioredis.Redis, tmp_path: Path
) -> None:
    await _fleet(settings, client, tmp_path)
    interaction = RecordedInteraction()
    await cog.uptime.callback(cog, interaction)  # type: ignore[arg-type]
    assert interaction.deferred
    [reply] = interaction.replies
    embed = reply.embed
    assert isinstance(embed, discord.Embed) and embed.title == "🤖 Fleet uptime and health"
    fields = {f.name: f.value for f in embed.fields}
    assert fields["Servers"] == f"{100 + 200 + 400:,}"  # shard 2 is offline: not counted
    assert fields["Users"] == f"{1000 + 2000 + 4000:,}"
    assert fields["Shards"] == "🟢 3 up · 🔴 1 offline · 4 configured"
    assert fields["Overall health"] == "🔴 Needs attention"
    assert fields["Memory"].startswith(("🟢", "🟡", "🔴")) and "% avg" in fields["Memory"]
    assert fields["Gateway latency"] == f"{(40 + 41 + 43) / 3:.0f} ms avg"
    assert embed.timestamp is not None and embed.footer.text == "Figures as of"
    assert len(embed) <= 6000


async def test_restarts_lists_the_newest_with_relative_times_and_no_pings(
    cog: ShardmonCog, settings: Settings, client: aioredis.Redis, tmp_path: Path
) -> None:
    await _fleet(settings, client, tmp_path)
    interaction = RecordedInteraction()
    await cog.restarts.callback(cog, interaction, 3)  # type: ignore[arg-type]
    embed = interaction.replies[0].embed
    assert embed is not None and embed.title == "🔄 Last 3 restarts"
    lines = [line for line in (embed.description or "").splitlines() if not line.startswith("  ")]
    assert len(lines) == 3 and all("**crash** · shard 3 · v0.0.0 · <t:" in line for line in lines)
    assert "@everyone" not in (embed.description or "") and "boom @\u200beveryone" in (
        embed.description or ""
    )


@pytest.mark.parametrize("limit", [0, 51, -3])
async def test_restarts_out_of_range_gets_a_polite_reply(cog: ShardmonCog, limit: int) -> None:
    interaction = RecordedInteraction()
    await cog.restarts.callback(cog, interaction, limit)  # type: ignore[arg-type]
    [reply] = interaction.replies
    assert reply.ephemeral and reply.content == "Please choose a limit from 1 to 50."


async def test_restart_stats_shows_types_rates_and_the_storm(
    cog: ShardmonCog, settings: Settings, client: aioredis.Redis, tmp_path: Path
) -> None:
    await _fleet(settings, client, tmp_path)
    interaction = RecordedInteraction()
    await cog.restart_stats.callback(cog, interaction)  # type: ignore[arg-type]
    embed = interaction.replies[0].embed
    assert embed is not None
    fields = {f.name: f.value for f in embed.fields}
    assert (fields["Total"], fields["Last hour"], fields["Last 24 hours"]) == ("6", "6", "6")
    assert fields["Average per day"] == "6.0" and fields["Average per month"] == "180.0"
    assert fields["By type"] == "🚀 startup: 3\n💥 crash: 3"
    assert fields["Storm status"] == "🚨 3+ restarts in the last hour: shard 3 (4)"
    assert embed.colour == discord.Colour.red()


async def test_performance_for_the_fleet_and_one_shard_with_sparklines(
    cog: ShardmonCog, settings: Settings, client: aioredis.Redis, tmp_path: Path
) -> None:
    await _fleet(settings, client, tmp_path)
    fleet, shard = RecordedInteraction(), RecordedInteraction()
    await cog.performance.callback(cog, fleet, None)  # type: ignore[arg-type]
    await cog.performance.callback(cog, shard, 1)  # type: ignore[arg-type]
    fleet_embed, shard_embed = fleet.replies[0].embed, shard.replies[0].embed
    assert fleet_embed is not None and shard_embed is not None
    assert fleet_embed.title == "📈 Performance: whole fleet, last hour"
    fields = {f.name: f.value for f in fleet_embed.fields}
    assert fields["Samples"] == "12"
    assert fields["Memory"].startswith("avg ") and " · peak " in fields["Memory"]
    assert re.fullmatch(r"`[▁▂▃▄▅▆▇█]+`", fields["Memory trend"])
    assert shard_embed.title == "📈 Performance: shard 1, last 3 samples"
    shard_fields = {f.name: f.value for f in shard_embed.fields}
    assert shard_fields["Gateway latency"] == "avg 41.0 ms · peak 41.0 ms · low 41.0 ms"
    assert re.fullmatch(r"`[▁▂▃▄▅▆▇█]{3}`", shard_fields["CPU trend"])
    # with the charts extra (installed for the tests), each embed shows its window as a PNG
    for name, reply in (("fleet", fleet.replies[0]), ("shard", shard.replies[0])):
        assert reply.file is not None and reply.file.filename == "performance.png"
        assert reply.embed is not None and reply.embed.image.url == "attachment://performance.png"
        png = reply.file.fp.read()
        with Image.open(io.BytesIO(png)) as image:
            assert image.format == "PNG" and image.size == (800, 360)
        (artifacts() / f"performance-{name}.png").write_bytes(png)  # to look at


async def test_performance_without_the_charts_extra_is_its_embed_alone(
    cog: ShardmonCog,
    settings: Settings,
    client: aioredis.Redis,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await _fleet(settings, client, tmp_path)
    monkeypatch.setattr(cog_module, "CHARTS", False)  # as where matplotlib is not installed
    interaction = RecordedInteraction()
    await cog.performance.callback(cog, interaction, None)  # type: ignore[arg-type]
    [reply] = interaction.replies
    assert reply.file is None and reply.embed is not None and not reply.embed.image.url
    assert {f.name for f in reply.embed.fields} >= {"Samples", "Memory", "Memory trend"}


async def test_performance_of_a_shard_that_does_not_exist(cog: ShardmonCog) -> None:
    interaction = RecordedInteraction()
    await cog.performance.callback(cog, interaction, 9)  # type: ignore[arg-type]
    [reply] = interaction.replies
    assert reply.ephemeral and reply.content == "There is no shard 9: this bot has shards 0 to 3."


async def test_shards_lists_each_shard_and_pages_a_large_fleet(
    cog: ShardmonCog, settings: Settings, client: aioredis.Redis, tmp_path: Path
) -> None:
    await _fleet(settings, client, tmp_path)
    await cog.store.record_gateway_event(3, "identify")
    await cog.store.record_gateway_event(3, "resume")
    interaction = RecordedInteraction()
    await cog.shards.callback(cog, interaction)  # type: ignore[arg-type]
    embed = interaction.replies[0].embed
    assert embed is not None and interaction.replies[0].view is None
    lines = (embed.description or "").splitlines()
    assert len(lines) == 4 and lines[2].startswith("🔴 `   2`")
    assert (
        lines[3].startswith("🟢 `   3` 43 ms · 400 guilds · up ")
        and "1 id / 1 res (24 h)" in lines[3]
    )

    now = time.time()
    await client.zadd(Keys(settings.deployment).heartbeats, {str(s): now for s in range(100)})
    big = RecordedInteraction()
    await cog.shards.callback(cog, big)  # type: ignore[arg-type]
    view = big.replies[0].view
    assert isinstance(view, discord.ui.View) and len(view.pages) == 3  # type: ignore[attr-defined]
    assert all(len(page.description or "") <= 4096 for page in view.pages)  # type: ignore[attr-defined]


async def test_a_redis_outage_gets_a_polite_reply(settings: Settings, own_redis) -> None:  # type: ignore[no-untyped-def]
    client = create_redis(own_redis.url, timeout_s=0.3)
    cog = ShardmonCog(_bot(), settings, client)
    own_redis.kill()
    interaction = RecordedInteraction()
    await cog.uptime.callback(cog, interaction)  # type: ignore[arg-type]
    [reply] = interaction.replies
    assert reply.ephemeral and "not reachable" in (reply.content or "")
    await client.aclose()


@pytest.mark.parametrize("command", ["uptime", "restarts", "restart_stats", "performance"])
async def test_a_key_written_by_hand_gets_a_clear_reply_not_an_outage(
    cog: ShardmonCog, client: aioredis.Redis, settings: Settings, command: str
) -> None:
    keys = Keys(settings.deployment)
    for key in (keys.latest, keys.restarts):
        await client.set(key, "written by hand")
    await client.set(keys.rollup_minute(int(time.time() // 60 * 60)), "written by hand")
    interaction = RecordedInteraction()
    await getattr(cog, command).callback(cog, interaction)
    [reply] = interaction.replies
    if reply.embed is None:  # refused: say so, and where to look
        assert reply.ephemeral and "Redis refused this query (WRONGTYPE" in (reply.content or "")
        assert "`shardmon keys`" in (reply.content or "")


async def test_the_leader_posts_a_crash_alert_to_the_channel_without_pinging(
    settings: Settings, client: aioredis.Redis, tmp_path: Path
) -> None:
    discord_api = LocalDiscord()
    await discord_api.start(self_signed(tmp_path))
    bot = _bot(connector=discord_api.connector())
    try:
        await bot.login("a-token-that-only-the-local-stand-in-sees")
        store = Store(client, Keys(settings.deployment))
        await store.record_alert_channels({900: 555000000000000001, 100: 555000000000000002})
        sink = ChannelSink(bot, None, store.alert_channel)
        alert = Alert(id="a" * 32, kind="alert", rule="restart_storm", shards=(3,),
                      title="🚨 Restart Storm Detected", body="last error: boom @everyone <@&1>",
                      epoch=1, node="h:1", ts=time.time())  # fmt: skip
        await sink.send(alert)
    finally:
        await bot.close()
        await discord_api.stop()
    posts = [(p, body) for method, p, body in discord_api.requests if method == "POST"]
    [(path, payload)] = posts
    assert path == "/api/v10/channels/555000000000000002/messages"  # the lowest guild's channel
    assert payload["allowed_mentions"] == {"parse": []}
    assert payload["nonce"] == "a" * 25 and payload["enforce_nonce"] is True
    assert "@everyone" not in payload["content"] and "<@&1>" not in payload["content"]


def test_alert_channel_detection_takes_the_first_name_in_setting_order(cog: ShardmonCog) -> None:
    state = cog.bot._connection
    channels = [
        {"id": str(10 + i), "type": 0, "name": name, "position": i}
        for i, name in enumerate(["general", "bot-logs", "dev-logs", "admin"])
    ]
    guild = discord.Guild(data={"id": "1", "name": "g", "channels": channels}, state=state)  # type: ignore[typeddict-item]
    assert cog.alert_channel_of(guild) == 12  # dev-logs comes before bot-logs in the setting
    empty = discord.Guild(data={"id": "2", "name": "h", "channels": channels[:1]}, state=state)  # type: ignore[typeddict-item]
    assert cog.alert_channel_of(empty) is None


async def test_a_guild_the_bot_leaves_no_longer_receives_alerts(cog: ShardmonCog) -> None:
    await cog.store.record_alert_channels({1: 12, 2: 22})
    guild = discord.Guild(data={"id": "1", "name": "g"}, state=cog.bot._connection)  # type: ignore[typeddict-item]
    await cog.on_guild_remove(guild)
    assert await cog.store.alert_channel() == 22


@pytest.mark.parametrize("host_package", ["namespace", "regular-with-extend-path"])
def test_loads_beside_a_host_bots_own_cogs_package(tmp_path: Path, host_package: str) -> None:
    host = tmp_path / "bot"
    (host / "cogs").mkdir(parents=True)
    (host / "cogs" / "music.py").write_text(
        "from discord.ext import commands\n"
        "class Music(commands.Cog):\n"
        "    @commands.command()\n"
        "    async def play(self, ctx): ...\n"
        "async def setup(bot):\n"
        "    await bot.add_cog(Music())\n"
    )
    if host_package != "namespace":
        (host / "cogs" / "__init__.py").write_text(
            '__path__ = __import__("pkgutil").extend_path(__path__, __name__)\n'
        )
    script = (
        "import asyncio, discord\n"
        "from discord.ext import commands\n"
        "async def main():\n"
        "    bot = commands.Bot(command_prefix='!', intents=discord.Intents.default())\n"
        "    await bot.load_extension('cogs.music')\n"
        "    await bot.load_extension('cogs.shardmon')\n"
        "    print(sorted(bot.cogs), sorted(c.name for c in bot.tree.get_commands()))\n"
        "    await bot.unload_extension('cogs.shardmon')\n"
        "asyncio.run(main())\n"
    )
    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": f"{host}{os.pathsep}{repo}",
           "SHARDMON_REDIS_URL": "redis://127.0.0.1:1/0"}  # fmt: skip
    done = subprocess.run([sys.executable, "-c", script], cwd=host, env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "['Music', 'Shardmon']" in done.stdout and "'uptime'" in done.stdout


def test_reference_bot_without_a_token_exits_with_a_clear_message(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHARDMON_")}
    done = subprocess.run([sys.executable, "-m", "shardmon.bot"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2
    assert "SHARDMON_BOT_TOKEN is not set" in done.stderr and "Traceback" not in done.stderr


async def test_reference_bot_runs_this_process_shards_with_the_extension(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shardmon.bot import build_bot

    monkeypatch.setenv("SHARDMON_BOT_TOKEN", "secret-token-value")
    bot = await build_bot(load_settings())
    try:
        assert bot.shard_ids == [0, 1] and bot.shard_count == 4
        # load_extension imports the module anew after an unload: compare by name
        assert type(bot.get_cog("Shardmon")).__name__ == "ShardmonCog"
        assert "secret-token-value" not in repr(load_settings())
    finally:
        await bot.unload_extension("cogs.shardmon")


def test_an_error_that_ends_the_bot_is_logged_as_a_crash(redis_url: str, tmp_path: Path) -> None:
    script = (
        "import asyncio, discord\n"
        "from discord.ext import commands\n"
        "bot = commands.AutoShardedBot(command_prefix='!', intents=discord.Intents.default())\n"
        "async def main():\n"
        "    async with bot:  # as bot.run() does: the bot closes, unloading extensions, first\n"
        "        await bot.load_extension('cogs.shardmon')\n"
        "        raise RuntimeError('the gateway loop died @everyone')\n"
        "asyncio.run(main())\n"
    )
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SHARDMON_")},
           "SHARDMON_REDIS_URL": redis_url, "SHARDMON_DEPLOYMENT": "crashing"}  # fmt: skip
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 1 and "RuntimeError: the gateway loop died" in done.stderr
    import redis as sync_redis

    with sync_redis.Redis.from_url(redis_url, decode_responses=True) as client:
        types = [json.loads(m)["type"] for m in client.zrange(Keys("crashing").restarts, 0, -1)]
    assert sorted(types) == ["crash", "startup"]


async def test_restart_asks_the_supervisors_of_the_shards_it_names(
    cog: ShardmonCog, settings: Settings, client: aioredis.Redis
) -> None:
    store = Store(client, Keys(settings.deployment))
    now = store.clock.now()
    await store.report_supervisor(RunState(node="bot-1:42", shards=(1,), state="running",
                                           since=now, seen=now))  # fmt: skip
    interaction = RecordedInteraction()
    await cog.restart.callback(cog, interaction, "1,3", "hotfix @everyone")  # type: ignore[arg-type]
    [reply] = interaction.replies
    assert reply.content is not None
    lines = reply.content.splitlines()
    assert lines[0] == "🔁 Shard 1: restart asked of its supervisor `bot-1:42`."
    assert lines[-1] == "No supervisor (`shardmon run`) reports shard(s) 3: not asked."
    pending = await store.pending_requests([1, 3])
    assert list(pending) == [1] and pending[1].action == "restart"
    assert pending[1].reason == "hotfix @everyone" and pending[1].by.endswith("(4242) in Discord")
    for wrong, said in (("x", "Give shard ids like"), ("9", "There is no shard 9")):
        refused = RecordedInteraction()
        await cog.restart.callback(cog, refused, wrong, None)  # type: ignore[arg-type]
        assert refused.replies[0].ephemeral and said in (refused.replies[0].content or "")
