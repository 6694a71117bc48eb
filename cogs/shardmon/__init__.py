"""shardmon's discord.py extension: `await bot.load_extension("cogs.shardmon")`.

The extension's code lives with shardmon's other Discord-facing parts in `shardmon.discordpy`;
this package is only the name discord.py loads (`teardown` removes the cog on unload).
Settings come from `SHARDMON_*` variables (see the README); the bot's own shard ids should
match `SHARDMON_SHARD_IDS`.
"""

from __future__ import annotations

from shardmon.discordpy import ShardmonCog, setup, teardown

__all__ = ["ShardmonCog", "setup", "teardown"]
