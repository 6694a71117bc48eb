"""The `shardmon` command."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from shardmon.settings import SettingsError

__all__ = ["main"]


def _positive_int(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError(f"{value} is outside 1..64")
    return value


def _duration(text: str) -> float:
    value = float(text)
    if not 4 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"{value} is outside 4..3600 seconds")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shardmon", description="Monitor a sharded Discord bot through Redis."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="run a small monitored fleet against SHARDMON_REDIS_URL or an embedded Redis",
        description="Run a small monitored fleet with synthetic load and print what it recorded.",
    )
    demo.add_argument("--shards", type=_positive_int, default=4, help="shards (default 4)")
    demo.add_argument("--duration", type=_duration, default=20, help="seconds to run (default 20)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "demo":
            from shardmon.demo import run_demo

            run_demo(shards=args.shards, duration_s=args.duration)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
