"""`python -m shardmon.node`: a monitor process without a bot.

It samples its shards, logs its startup, joins the leader election and, when it leads, judges
the fleet, all from `SHARDMON_*` settings, until SIGTERM or SIGINT stops it cleanly (handing
leadership over at once). Useful as a sidecar beside a bot written in another language, for the
demo, and for the tests' real OS processes.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from shardmon.api import claim_process_startup
from shardmon.connection import create_redis
from shardmon.monitor import GatewayProvider, build_monitor
from shardmon.settings import SettingsError, load_settings

__all__ = ["main", "run_node"]

log = logging.getLogger(__name__)


async def run_node(gateway: GatewayProvider | None = None) -> None:
    """Run one monitor until SIGTERM/SIGINT (`gateway`: the shards' figures, if known)."""
    settings = load_settings()
    client = create_redis(settings.redis_target())
    monitor = build_monitor(
        settings.monitor_config(), client, gateway=gateway, sinks=settings.alert_sinks()
    )
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    if claim_process_startup():  # not under `shardmon run`: its supervisor logged the start
        await monitor.log_restart("startup")
    await monitor.start()
    log.info("node %s running shards %s", monitor.config.node, list(monitor.config.shard_ids))
    await stopping.wait()
    await monitor.stop()
    await client.aclose()
    log.info("node %s stopped", monitor.config.node)


def main() -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        asyncio.run(run_node())
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
