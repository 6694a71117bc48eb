"""`python -m shardmon.bot`: a reference sharded bot that runs the shardmon extension.

It reads the bot token (`SHARDMON_BOT_TOKEN`), shard ids and shard count from settings, runs an
AutoShardedBot with `cogs.shardmon` (which logs the startup and samples every shard), logs a
crash when the bot dies of an error, and stops cleanly on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import traceback

import discord
from discord.ext import commands

from shardmon.api import log_bot_crash
from shardmon.discordpy.access import sync_commands
from shardmon.settings import Settings, SettingsError, load_settings
from shardmon.tasks import spawn

__all__ = ["build_bot", "main"]

log = logging.getLogger(__name__)


async def build_bot(settings: Settings) -> commands.AutoShardedBot:
    """An AutoShardedBot for this process's shards, with the shardmon extension loaded."""
    bot = commands.AutoShardedBot(
        command_prefix=commands.when_mentioned,
        intents=discord.Intents.default(),
        shard_ids=list(settings.shard_ids),
        shard_count=settings.shard_count,
    )
    await bot.load_extension("cogs.shardmon")
    return bot


async def run(settings: Settings, sync: bool) -> int:
    if settings.bot_token is None:
        print(
            "SHARDMON_BOT_TOKEN is not set: the reference bot needs a Discord bot token "
            "(put it in the environment or in .env).",
            file=sys.stderr,
        )
        return 2
    bot = await build_bot(settings)
    stopping = asyncio.Event()

    def stop() -> None:
        stopping.set()
        spawn(bot.close(), name="shardmon-bot-close")

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop)
    try:
        async with bot:
            await bot.login(settings.bot_token.get_secret_value())
            if sync:
                for guild_id, count in (await sync_commands(bot, settings)).items():
                    where = "globally" if guild_id is None else f"to guild {guild_id}"
                    log.info("synced %d slash commands %s", count, where)
            await bot.connect(reconnect=True)
    except discord.LoginFailure:
        print("Discord refused the bot token (SHARDMON_BOT_TOKEN).", file=sys.stderr)
        return 2
    except Exception as exc:  # the bot died: say so in the restart log, then fail
        if stopping.is_set():  # a stop cut a request short: not a crash
            return 0
        log_bot_crash(f"{type(exc).__name__}: {exc}", traceback.format_exc())
        log.exception("the bot crashed")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shardmon.bot", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--sync-commands",
        action="store_true",
        help="register the slash commands: /shard globally, the others in the operator guilds",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return asyncio.run(run(load_settings(), args.sync_commands))
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
