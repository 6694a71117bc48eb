"""The shardmon cog: fleet-wide slash commands, the sampling loop, gateway counts, alert channels.

It holds no Redis command: everything goes through the library's monitor and store.
"""

from __future__ import annotations

import asyncio
import io
import logging
import math
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import discord
import redis.asyncio as aioredis
from discord import app_commands
from discord.ext import commands, tasks

from shardmon.api import claim_process_startup, install_crash_hook
from shardmon.connection import create_redis
from shardmon.discordpy.access import REFUSAL, NotAnOperator, OperatorAccess
from shardmon.discordpy.charts import CHART_FILE, CHARTS, performance_png
from shardmon.discordpy.embeds import (
    performance_embed,
    public_shard_embed,
    restart_stats_embed,
    restarts_embed,
    shards_pages,
    uptime_embed,
)
from shardmon.discordpy.sinks import ChannelSink
from shardmon.discordpy.watch import GatewayWatch
from shardmon.failures import REDIS_FAILURES, RedisFailure, classify
from shardmon.gateway import parse_guild_id, shard_for_guild
from shardmon.monitor import GatewayStats, build_monitor
from shardmon.render import defuse_mentions
from shardmon.rules import CpuRule, MemoryRule
from shardmon.settings import Settings
from shardmon.states import format_shard_ranges, parse_shard_list

__all__ = ["ShardmonCog"]

log = logging.getLogger(__name__)

#: What a command's builder hands `_answer`: an embed, pages of embeds, or an embed with its
#: chart (None: none drawn).
Answer = discord.Embed | list[discord.Embed] | tuple[discord.Embed, discord.File | None]

#: /restarts shows between 1 and 50 events.
RESTARTS_MIN, RESTARTS_MAX = 1, 50
#: /shard answers a member this often at most: 2 times in 10 seconds.
SHARD_RATE, SHARD_PER_S = 2, 10.0
#: The commands for everyone; every other one is infrastructure, for the bot's operators.
PUBLIC_COMMANDS = frozenset({"shard"})


class PagesView(discord.ui.View):
    """◀ ▶ buttons over a list of embeds, for the member who asked."""

    def __init__(self, pages: list[discord.Embed], owner_id: int) -> None:
        super().__init__(timeout=180)
        self.pages = pages
        self.owner_id = owner_id
        self.index = 0

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        return interaction.user.id == self.owner_id

    async def _show(self, interaction: discord.Interaction, step: int) -> None:
        self.index = (self.index + step) % len(self.pages)
        await interaction.response.edit_message(embed=self.pages[self.index], view=self)

    @discord.ui.button(label="◀", style=discord.ButtonStyle.secondary)
    async def previous(
        self, interaction: discord.Interaction, _: discord.ui.Button[PagesView]
    ) -> None:
        await self._show(interaction, -1)

    @discord.ui.button(label="▶", style=discord.ButtonStyle.secondary)
    async def next(self, interaction: discord.Interaction, _: discord.ui.Button[PagesView]) -> None:
        await self._show(interaction, 1)


def _name(interaction: discord.Interaction) -> str:
    return interaction.command.name if interaction.command else "?"


class ShardmonCog(commands.Cog, name="Shardmon"):
    """Monitors this process's shards and answers for the whole fleet.

    Args:
        bot: a `commands.Bot` or `commands.AutoShardedBot`.
        settings: shardmon's settings (shard ids, Redis, thresholds, alert targets).
        client: the Redis client to use; one is made from settings (and closed) if omitted.
    """

    def __init__(
        self, bot: commands.Bot, settings: Settings, client: aioredis.Redis | None = None
    ) -> None:
        self.bot = bot
        self.settings = settings
        self._owns_client = client is None
        self.client = client or create_redis(settings.redis_target())
        self._gateway: dict[int, GatewayStats] = {}
        config = settings.monitor_config()
        sinks = settings.alert_sinks()
        guild_ids = settings.alert_guilds()
        if settings.alert_channel_id is not None or guild_ids:
            sinks.append(
                ChannelSink(
                    bot, settings.alert_channel_id, lambda: self.store.alert_channel(guild_ids)
                )
            )
        self.monitor = build_monitor(
            config,
            self.client,
            gateway=self._gateway_of,
            sinks=sinks,
            session_limits=self._session_limit,
        )
        self.limits = config.limits
        self.store = self.monitor.store
        self.watch = GatewayWatch(bot, config.shard_ids, wall=self.store.clock.now)
        self.access = OperatorAccess(bot, settings)
        for command in self.infrastructure_commands():
            self.access.scope(command)

    def infrastructure_commands(self) -> list[app_commands.Command[Any, ..., Any]]:
        """Every command of the cog but the public ones: for the bot's operators."""
        return [
            command
            for command in self.walk_app_commands()
            if isinstance(command, app_commands.Command) and command.name not in PUBLIC_COMMANDS
        ]

    # -- lifecycle ------------------------------------------------------------------------

    async def cog_load(self) -> None:
        self.access.log_scope([command.name for command in self.infrastructure_commands()])
        self.watch.install()
        await self.monitor.start(sample=False)
        if claim_process_startup():
            await self.monitor.log_restart("startup")
        install_crash_hook()
        self.sample_loop.change_interval(seconds=self.settings.sample_interval_s)
        self.sample_loop.start()

    async def cog_unload(self) -> None:
        # discord.py's Cog._eject removes every command after the first guild-scoped one
        # from that one's guilds: the global /shard would stay behind, bound to this cog.
        for name in PUBLIC_COMMANDS:
            command = self.bot.tree.get_command(name)
            if isinstance(command, app_commands.Command) and command.binding is self:
                self.bot.tree.remove_command(name)
        self.sample_loop.cancel()
        self.watch.uninstall()
        await self.monitor.stop()
        if self._owns_client:
            await self.client.aclose()

    # -- sampling -------------------------------------------------------------------------

    def _gateway_of(self, shard: int) -> GatewayStats:
        return self._gateway.get(shard, GatewayStats())

    def _latencies(self) -> dict[int, float]:
        if isinstance(self.bot, commands.AutoShardedBot):
            pairs = self.bot.latencies
        else:
            pairs = [(self.bot.shard_id or 0, self.bot.latency)]
        return {shard: value for shard, value in pairs if math.isfinite(value)}

    async def _session_limit(self) -> object:
        """The bot's session start limit, from GET /gateway/bot (what discord.py's
        `fetch_session_start_limits` reads), for the leader; an unsharded bot has one too."""
        _, _, limit = await self.bot.http.get_bot_gateway()
        return limit

    async def refresh_gateway(self) -> None:
        """Latency, guilds, users and connection of each local shard (the counting runs off
        the loop)."""
        guilds = list(self.bot.guilds)  # a cheap copy on the loop; the counting is in a thread

        def count() -> tuple[Counter[int], Counter[int]]:
            per_shard, users = Counter[int](), Counter[int]()
            for guild in guilds:
                shard = guild.shard_id or 0
                per_shard[shard] += 1
                users[shard] += guild.member_count or 0
            return per_shard, users

        per_shard, users = await asyncio.to_thread(count)
        latencies = self._latencies()
        self.watch.before_sample()
        self._gateway.clear()
        for shard in self.monitor.config.shard_ids:
            latency = latencies.get(shard)
            self._gateway[shard] = GatewayStats(
                latency_ms=None if latency is None else round(latency * 1000, 1),
                guilds=per_shard[shard],
                users=users[shard],
                gateway=self.watch.tracker.state(shard),
            )

    @tasks.loop(seconds=60)
    async def sample_loop(self) -> None:
        # Every error is caught here, so that the loop runs on: discord.py's loop would stop
        # at the first (it retries only OSError-like ones), and an `@sample_loop.error`
        # handler would never be reached.
        try:
            await self.refresh_gateway()
            await self.monitor.sample_once()
        except Exception:  # the loop must outlive any one bad tick; logged here
            log.exception("shardmon sampling tick failed")

    # -- gateway and channels -------------------------------------------------------------

    async def _gateway_event(self, shard: int | None, kind: str) -> None:
        try:
            await self.store.record_gateway_event(shard or 0, kind)
        except REDIS_FAILURES as exc:
            log.warning("gateway %s of shard %s not counted (%s)", kind, shard, classify(exc))

    # A sharded bot says each of these per shard (`on_shard_*`) and also without a shard id;
    # an unsharded one only without: `_unsharded` tells which of the two to follow.

    @property
    def _unsharded(self) -> bool:
        return not isinstance(self.bot, discord.AutoShardedClient)

    @commands.Cog.listener()
    async def on_socket_event_type(self, _: str) -> None:
        self.watch.event()

    @commands.Cog.listener()
    async def on_shard_connect(self, shard_id: int) -> None:
        self.watch.tracker.connected(shard_id)

    @commands.Cog.listener()
    async def on_shard_disconnect(self, shard_id: int) -> None:
        self.watch.tracker.disconnected(shard_id)

    @commands.Cog.listener()
    async def on_shard_ready(self, shard_id: int) -> None:
        self.watch.tracker.ready(shard_id)
        await self._gateway_event(shard_id, "identify")
        await self._detect_alert_channels([g for g in self.bot.guilds if g.shard_id == shard_id])

    @commands.Cog.listener()
    async def on_shard_resumed(self, shard_id: int) -> None:
        self.watch.tracker.resumed(shard_id)
        await self._gateway_event(shard_id, "resume")

    @commands.Cog.listener()
    async def on_connect(self) -> None:
        if self._unsharded:
            self.watch.tracker.connected(self.bot.shard_id or 0)

    @commands.Cog.listener()
    async def on_disconnect(self) -> None:
        if self._unsharded:
            self.watch.tracker.disconnected(self.bot.shard_id or 0)

    @commands.Cog.listener()
    async def on_ready(self) -> None:
        if self._unsharded:
            self.watch.tracker.ready(self.bot.shard_id or 0)
            await self._gateway_event(self.bot.shard_id, "identify")
            await self._detect_alert_channels(list(self.bot.guilds))

    @commands.Cog.listener()
    async def on_resumed(self) -> None:
        if self._unsharded:
            self.watch.tracker.resumed(self.bot.shard_id or 0)
            await self._gateway_event(self.bot.shard_id, "resume")

    @commands.Cog.listener()
    async def on_guild_join(self, guild: discord.Guild) -> None:
        await self._detect_alert_channels([guild])

    @commands.Cog.listener()
    async def on_guild_remove(self, guild: discord.Guild) -> None:
        """A server the bot left can no longer receive alerts."""
        try:
            await self.store.forget_alert_channel(guild.id)
        except REDIS_FAILURES as exc:
            log.warning("alert channel of guild %s not forgotten (%s)", guild.id, classify(exc))

    def alert_channel_of(self, guild: discord.Guild) -> int | None:
        """The first text channel of the guild named like an alert channel, by setting order,
        among those the bot may send to."""
        me = guild.me if self.bot.user is not None else None  # known once logged in
        by_name: dict[str, int] = {}
        for channel in guild.text_channels:  # in position order: the first of a name wins
            if me is not None and not channel.permissions_for(me).send_messages:
                continue
            by_name.setdefault(channel.name, channel.id)
        return next(
            (by_name[name] for name in self.settings.alert_channel_names if name in by_name), None
        )

    async def _detect_alert_channels(self, guilds: list[discord.Guild]) -> None:
        # Only in the operator's own servers: on a public bot, the lowest guild id with a
        # #bot-logs channel is usually a stranger's.
        allowed = set(self.settings.alert_guilds())
        found = {
            guild.id: channel
            for guild in guilds
            if guild.id in allowed and (channel := self.alert_channel_of(guild)) is not None
        }
        try:
            await self.store.record_alert_channels(found)
        except REDIS_FAILURES as exc:
            log.warning("alert channels not recorded (%s)", classify(exc))

    # -- commands -------------------------------------------------------------------------

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        """discord.py runs this before every command of the cog: the infrastructure ones are
        for the operators only (a refusal is answered in `cog_app_command_error`)."""
        if interaction.command is None or interaction.command.name in PUBLIC_COMMANDS:
            return True
        if not await self.access.allows(interaction):
            raise NotAnOperator
        return True

    async def _answer(
        self,
        interaction: discord.Interaction,
        build: Callable[[], Awaitable[Answer]],
    ) -> None:
        """Defer at once (Discord allows 3 s), then send what `build` made, or a polite error:
        in the channel in an operator guild, else to the operator alone (a public server's
        channel must not see the bot's infrastructure)."""
        private = not self.access.in_operator_guild(interaction)
        await interaction.response.defer(thinking=True, ephemeral=private)
        try:
            built = await build()
        except REDIS_FAILURES as exc:
            await self._failed(interaction, classify(exc))
            return
        if isinstance(built, list):
            view = (
                PagesView(built, interaction.user.id) if len(built) > 1 else discord.utils.MISSING
            )
            await interaction.followup.send(embed=built[0], view=view, ephemeral=private)
        elif isinstance(built, tuple):  # an embed and its chart
            embed, chart = built
            file = discord.utils.MISSING if chart is None else chart
            await interaction.followup.send(embed=embed, file=file, ephemeral=private)
        else:
            await interaction.followup.send(embed=built, ephemeral=private)

    async def _failed(self, interaction: discord.Interaction, failure: RedisFailure) -> None:
        """A polite ephemeral reply: try again shortly (an outage), or what Redis refused."""
        if failure.outage:
            log.warning("/%s: Redis unavailable (%s)", _name(interaction), failure)
            text = "⚠️ The monitoring store (Redis) is not reachable right now; try again shortly."
        else:  # Redis answered, but refused: a key written by hand
            log.error("/%s: Redis refused the query: %s", _name(interaction), failure)
            text = (
                f"⚠️ Redis refused this query ({failure.text[:300]}). A key of shardmon's may "
                "have been written by hand: `shardmon keys` lists them."
            )
        await interaction.followup.send(text, ephemeral=True)

    @app_commands.command(
        name="uptime", description="Uptime, resources and health of the whole fleet"
    )
    async def uptime(self, interaction: discord.Interaction) -> None:
        async def build() -> discord.Embed:
            summary = await self.store.fleet_totals(self.limits.offline_after_s)
            return uptime_embed(
                summary,
                now=self.store.clock.now(),
                warn=self.settings.warn_level,
                critical=self.limits.threshold(MemoryRule()),
                shard_count=self.settings.shard_count,
            )

        await self._answer(interaction, build)

    @app_commands.command(name="restarts", description="The most recent restarts of the fleet")
    @app_commands.describe(
        limit=f"How many restarts to show ({RESTARTS_MIN}-{RESTARTS_MAX}, default 10)"
    )
    async def restarts(
        self,
        interaction: discord.Interaction,
        limit: app_commands.Range[int, RESTARTS_MIN, RESTARTS_MAX] = 10,
    ) -> None:
        if not RESTARTS_MIN <= limit <= RESTARTS_MAX:
            await interaction.response.send_message(
                f"Please choose a limit from {RESTARTS_MIN} to {RESTARTS_MAX}.", ephemeral=True
            )
            return

        show_errors = self.access.shows_errors(interaction)

        async def build() -> discord.Embed:
            events = await self.store.restart_history(limit)
            return restarts_embed(events, limit, show_errors=show_errors)

        await self._answer(interaction, build)

    @app_commands.command(
        name="restart_stats", description="Restart totals, rates and storm status"
    )
    async def restart_stats(self, interaction: discord.Interaction) -> None:
        async def build() -> discord.Embed:
            stats = await self.store.restart_stats()
            storms = await self.store.restart_storms(self.limits, self.settings.shard_count)
            return restart_stats_embed(stats, storms)

        await self._answer(interaction, build)

    @app_commands.command(
        name="performance", description="Memory, CPU and latency of the fleet or one shard"
    )
    @app_commands.describe(shard="A shard id; leave empty for the whole fleet")
    async def performance(
        self, interaction: discord.Interaction, shard: app_commands.Range[int, 0] | None = None
    ) -> None:
        count = self.settings.shard_count
        if shard is not None and not 0 <= shard < count:
            await interaction.response.send_message(
                f"There is no shard {shard}: this bot has shards 0 to {count - 1}.", ephemeral=True
            )
            return

        async def build() -> tuple[discord.Embed, discord.File | None]:
            if shard is None:
                history = await self.store.history("hour")
                embed = performance_embed(history.performance, scope="whole fleet, last hour")
                c = history.columns
                chart = await self._chart(
                    "Whole fleet, last hour (minute rollups)", c["t"], c["memory_avg"],
                    c["cpu_avg"], memory_band=(c["memory_peak"], c["memory_low"]),
                    cpu_band=(c["cpu_peak"], c["cpu_low"]),
                )  # fmt: skip
            else:
                performance = await self.store.shard_performance(shard)
                scope = f"shard {shard}, last {performance.samples} samples"
                embed = performance_embed(performance, scope=scope)
                chart = await self._chart(
                    f"Shard {shard}, last {performance.samples} samples",
                    performance.trend_times, performance.memory_trend, performance.cpu_trend,
                )  # fmt: skip
            if chart is None:
                return embed, None
            embed.set_image(url=f"attachment://{CHART_FILE}")
            return embed, discord.File(io.BytesIO(chart), filename=CHART_FILE)

        await self._answer(interaction, build)

    async def _chart(self, title: str, *series: Any, **bands: Any) -> bytes | None:
        """/performance's PNG, drawn in a worker thread (None without the charts extra); a
        chart that fails is logged and left out: the embed goes on its own."""
        if not CHARTS:
            return None
        limits = (self.limits.threshold(MemoryRule()), self.limits.threshold(CpuRule()))
        try:
            return await asyncio.to_thread(performance_png, title, *series, limits=limits, **bands)
        except Exception:
            log.exception("/performance: the chart could not be drawn")
            return None

    @app_commands.command(
        name="shard", description="Which shard serves this server, and whether it is up"
    )
    @app_commands.describe(server_id="A server's id: to ask from a DM, or about another server")
    @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=False)
    @app_commands.checks.cooldown(SHARD_RATE, SHARD_PER_S, key=lambda i: i.user.id)
    async def shard(self, interaction: discord.Interaction, server_id: str | None = None) -> None:
        """For every member: the server's shard, up or down, and the fleet in one line."""
        guild_id = interaction.guild_id
        if server_id and server_id.strip():
            try:
                guild_id = parse_guild_id(server_id)
            except ValueError as exc:
                await interaction.response.send_message(str(exc), ephemeral=True)
                return
        if guild_id is None:
            await interaction.response.send_message(
                "Give a server id to look up its shard (in a server, /shard answers for it).",
                ephemeral=True,
            )
            return
        count = self.settings.shard_count
        shard = shard_for_guild(guild_id, count)
        await interaction.response.defer(ephemeral=True)
        try:
            sample, seen = await self.store.shard_now(shard)
            fleet = await self.store.fleet_totals(self.limits.offline_after_s)
        except REDIS_FAILURES as exc:
            await self._failed(interaction, classify(exc))
            return
        embed = public_shard_embed(
            guild_id,
            shard,
            count,
            sample,
            seen,
            fleet,
            limits=self.limits,
            now=self.store.clock.now(),
        )
        await interaction.followup.send(embed=embed, ephemeral=True)

    async def cog_app_command_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        """A member who is not an operator, or asks too often, gets a polite private reply;
        any other error is logged, as discord.py's tree would (a cog with a handler has its
        errors to itself)."""
        if isinstance(error, NotAnOperator):
            log.info(
                "/%s refused: user %s is not an operator", _name(interaction), interaction.user.id
            )
            await interaction.response.send_message(REFUSAL, ephemeral=True)
            return
        if isinstance(error, app_commands.CommandOnCooldown):
            await interaction.response.send_message(
                f"Please wait {error.retry_after:.0f} s before asking again.", ephemeral=True
            )
            return
        log.error("/%s failed", _name(interaction), exc_info=error)

    @app_commands.command(
        name="restart", description="Restart shards' bots through their supervisors (shardmon run)"
    )
    @app_commands.describe(
        shards="Shard ids: 3, 0,1 or 0-3", reason="Why: recorded with the restart"
    )
    async def restart(
        self, interaction: discord.Interaction, shards: str, reason: str | None = None
    ) -> None:
        """For operators: `shardmon restart`, from Discord."""
        count = self.settings.shard_count
        try:
            wanted = parse_shard_list(shards)
        except ValueError:
            await interaction.response.send_message(
                "Give shard ids like `3`, `0,1` or `0-3`.", ephemeral=True
            )
            return
        beyond = [shard for shard in wanted if shard >= count]
        if beyond:
            await interaction.response.send_message(
                f"There is no shard {beyond[0]}: this bot has shards 0 to {count - 1}.",
                ephemeral=True,
            )
            return
        await interaction.response.defer(ephemeral=not self.access.in_operator_guild(interaction))
        user = interaction.user
        try:
            fresh = self.store.clock.now() - self.limits.offline_after_s
            done = await self.store.ask_supervisors(
                wanted, "restart", (reason or "")[:500], f"{user} ({user.id}) in Discord", fresh
            )
        except REDIS_FAILURES as exc:
            await self._failed(interaction, classify(exc))
            return
        lines = [f"🔁 Shard {shard}: restart asked of its supervisor `{node}`."
                 for shard, node in done.asked.items()]  # fmt: skip
        if done.asked:
            lines.append(f"It restarts within {self.settings.sample_interval_s:g} s and records "
                         "a manual restart with your reason.")  # fmt: skip
        if done.nobody:
            lines.append(f"No supervisor (`shardmon run`) reports shard(s) "
                         f"{format_shard_ranges(done.nobody)}: not asked.")  # fmt: skip
        await interaction.followup.send(defuse_mentions("\n".join(lines)))

    @app_commands.command(name="shards", description="Every shard: status, latency, guilds, uptime")
    async def shards(self, interaction: discord.Interaction) -> None:
        async def build() -> list[discord.Embed]:
            status = await self.store.fleet_status(self.limits.offline_after_s)
            return shards_pages(
                status.summary,
                status.gateway,
                limits=self.limits,
                shard_count=self.settings.shard_count,
                session_limit=status.session_limit,
                now=status.now,
                clock_skew_warn_s=self.settings.clock_skew_warn_s,
            )

        await self._answer(interaction, build)
