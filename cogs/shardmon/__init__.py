"""shardmon's discord.py extension: `await bot.load_extension("cogs.shardmon")`.

Settings come from `SHARDMON_*` variables (see the README); the bot's own shard ids should
match `SHARDMON_SHARD_IDS`.
"""

from __future__ import annotations

from discord.ext import commands

from shardmon.settings import load_settings

from ._cog import ShardmonCog

__all__ = ["ShardmonCog", "setup"]


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(ShardmonCog(bot, load_settings()))
