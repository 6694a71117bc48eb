"""Who may use the infrastructure commands: where they are registered, who sees them, who may
run them, and who is shown crash errors. /shard is for everyone and is left alone here.

A public bot's infrastructure (crash errors, hosts, versions, memory) belongs to its operators:
by default the commands answer only the application's owner or its team (discord.py's
`is_owner`), and live only in the operators' own servers when `SHARDMON_OPERATOR_GUILD_IDS`
names them.
"""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from shardmon.settings import Settings

__all__ = ["NotAnOperator", "OperatorAccess", "sync_commands"]

log = logging.getLogger(__name__)

#: What a member who may not run an infrastructure command is told, privately.
REFUSAL = (
    "🔒 This command is for the bot's operators: it shows the bot's own infrastructure. "
    "`/shard` tells anyone which shard serves this server and whether it is up."
)


class NotAnOperator(app_commands.CheckFailure):
    """An infrastructure command was asked for by someone who is not one of the operators."""


class OperatorAccess:
    """The operator scope of the settings, applied to commands and to interactions."""

    def __init__(self, bot: commands.Bot, settings: Settings) -> None:
        self.bot = bot
        self.guild_ids = frozenset(settings.operator_guild_ids)
        self.check = settings.operator_check
        self.hidden = settings.operator_commands_hidden
        kind, _, role = self.check.partition(":")
        self.role_id = int(role) if kind == "role" else None

    @property
    def default_permissions(self) -> discord.Permissions | None:
        """Who sees the commands until a server's admins say otherwise (Server Settings >
        Integrations): with the `manage_guild` check, members with Manage Server; else, where
        they are global (every server of the bot), Administrators; in the operator guilds,
        members with Manage Server, or everyone when a role decides (Discord cannot hide a
        command by role). Everyone when not hidden: the check still decides."""
        if not self.hidden:
            return None
        if self.check == "manage_guild":
            return discord.Permissions(manage_guild=True)
        if not self.guild_ids:
            return discord.Permissions(administrator=True)
        return None if self.role_id is not None else discord.Permissions(manage_guild=True)

    def scope(self, command: app_commands.Command[Any, ..., Any]) -> None:
        """Register an infrastructure command where it belongs: in servers only (never in
        DMs), in the operator guilds if any, seen by whom `default_permissions` says."""
        command.guild_only = True
        command.allowed_contexts = app_commands.AppCommandContext(guild=True)
        command.default_permissions = self.default_permissions
        if self.guild_ids:
            app_commands.guilds(*sorted(self.guild_ids))(command)

    async def allows(self, interaction: discord.Interaction) -> bool:
        """Whether this member may run an infrastructure command here."""
        if interaction.guild_id is None:
            return False
        user = interaction.user
        if self.check == "manage_guild":
            return interaction.permissions.manage_guild
        if self.role_id is not None:
            return isinstance(user, discord.Member) and user.get_role(self.role_id) is not None
        try:
            return await self.bot.is_owner(user)
        except discord.HTTPException as exc:  # the application's owners could not be read
            log.warning("operator check: the application's owner is unknown (%s)", exc)
            return False

    def in_operator_guild(self, interaction: discord.Interaction) -> bool:
        return interaction.guild_id in self.guild_ids

    def shows_errors(self, interaction: discord.Interaction) -> bool:
        """Crash errors go to the operators' own servers, or to the owner and team (the
        `owner` check); a server's manager elsewhere may not read them."""
        return self.in_operator_guild(interaction) or self.check == "owner"

    def log_scope(self, names: list[str]) -> None:
        """Say at start where the infrastructure commands are and who may run them."""
        listed = ", ".join(f"/{name}" for name in names)
        if self.guild_ids:
            log.info(
                "%s: registered in operator guilds %s, for %s",
                listed, ", ".join(map(str, sorted(self.guild_ids))), self.check,
            )  # fmt: skip
            return
        log.warning(
            "%s are global commands: they answer only %s, but every server of the bot has "
            "them. Set SHARDMON_OPERATOR_GUILD_IDS to your own servers' ids to register them "
            "there only, and sync again (python -m shardmon.bot --sync-commands).",
            listed, self.check,
        )  # fmt: skip


async def sync_commands(
    bot: commands.Bot | commands.AutoShardedBot, settings: Settings
) -> dict[int | None, int]:
    """Send the slash commands to Discord: the global ones (/shard, and the infrastructure
    commands when no operator guild is set), then each operator guild's. Returns how many
    each scope has (None: global)."""
    synced: dict[int | None, int] = {None: len(await bot.tree.sync())}
    for guild_id in settings.operator_guild_ids:
        synced[guild_id] = len(await bot.tree.sync(guild=discord.Object(guild_id)))
    return synced
