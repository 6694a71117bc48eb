"""The discord.py-facing parts of shardmon, together: the cog (slash commands, sampling, gateway
counts, alert channels), its embeds, the webhook and channel sinks, and the reference bot.

The core (`shardmon` and its modules) never imports this package, so a node sidecar beside a
bot written in another language runs without it; only a webhook sink loads its `sinks` module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from discord.ext import commands

    from shardmon.discordpy.cog import ShardmonCog

__all__ = ["ShardmonCog", "setup", "teardown"]


def __getattr__(name: str) -> object:
    if name == "ShardmonCog":
        from shardmon.discordpy.cog import ShardmonCog

        return ShardmonCog
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


async def setup(bot: commands.Bot) -> None:
    """The extension's entry point (`cogs.shardmon` re-exports it)."""
    from shardmon.discordpy.cog import ShardmonCog
    from shardmon.settings import load_settings

    await bot.add_cog(ShardmonCog(bot, load_settings()))


async def teardown(bot: commands.Bot) -> None:
    """Remove the cog on `unload_extension`: discord.py removes by itself only the cogs
    defined inside the extension's package, and this one is defined here."""
    await bot.remove_cog("Shardmon")
