"""`python -m shardmon.bot`: the reference sharded bot, kept under this name for the command
line; its code is `shardmon.discordpy.bot`."""

from __future__ import annotations

import sys

from shardmon.discordpy.bot import build_bot, main

__all__ = ["build_bot", "main"]

if __name__ == "__main__":
    sys.exit(main())
