"""`python -m shardmon.demo`: one demo node, a monitor with synthetic load.

SIGUSR1 makes it hold a memory spike and SIGUSR2 lets it go; SIGWINCH drops its shards' (synthetic)
gateway while the process runs on, and SIGURG resumes it; `SHARDMON_DEMO_CRASH_AFTER_S` makes it
crash as a real bot would (its traceback on stderr and an exit without a clean stop; a crash
event of its own where no `shardmon run` supervises it), while `SHARDMON_DEMO_CRASH_FILE`, if
set, exists.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import sys
import traceback
from pathlib import Path

from shardmon.api import persist_restart
from shardmon.gateway import GatewayTracker
from shardmon.models import crash_metadata
from shardmon.monitor import GatewayStats
from shardmon.node import run_node
from shardmon.settings import load_settings
from shardmon.supervisor import SUPERVISOR_ENV
from shardmon.tasks import spawn

#: The signals that drop the demo node's gateway and resume it.
GATEWAY_DROP, GATEWAY_BACK = signal.SIGWINCH, signal.SIGURG


def _synthetic_gateway(tracker: GatewayTracker, shard: int) -> GatewayStats:
    state = tracker.state(shard)
    if state is not None and state.connected:
        tracker.dispatched(shard)  # a connected demo shard always has events
    return GatewayStats(
        latency_ms=round(random.uniform(35, 90), 1),
        guilds=900 + 37 * shard,
        users=45_000 + 1_800 * shard,
        gateway=tracker.state(shard),
    )


async def _demo_node() -> None:
    """A node with synthetic load; SIGUSR1 holds a memory spike, SIGUSR2 lets it go, and
    SHARDMON_DEMO_CRASH_AFTER_S makes it crash as a real bot would."""
    ballast: list[bytearray] = []

    def spike() -> None:
        """Allocate and touch the spike in 64 MB blocks (in a thread, so that the node goes
        on sampling while the pages come in)."""
        remaining = int(os.environ.get("SHARDMON_DEMO_SPIKE_MB", "256"))
        while remaining > 0:
            block = bytearray(min(64, remaining) * 1024 * 1024)
            block[::4096] = b"\x01" * len(block[::4096])  # touch every page: really resident
            ballast.append(block)
            remaining -= 64

    shards = load_settings().shard_ids
    tracker = GatewayTracker(shards)
    for shard in shards:
        tracker.connected(shard)
        tracker.ready(shard)

    def gateway(connected: bool) -> None:
        for shard in shards:
            (tracker.resumed if connected else tracker.disconnected)(shard)

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, lambda: loop.run_in_executor(None, spike))
    loop.add_signal_handler(signal.SIGUSR2, ballast.clear)
    loop.add_signal_handler(GATEWAY_DROP, gateway, False)
    loop.add_signal_handler(GATEWAY_BACK, gateway, True)
    crash_after = float(os.environ.get("SHARDMON_DEMO_CRASH_AFTER_S", "0"))
    crash_file = os.environ.get("SHARDMON_DEMO_CRASH_FILE", "")

    async def crash() -> None:
        await asyncio.sleep(crash_after)
        if crash_file and not await asyncio.to_thread(Path(crash_file).exists):
            return  # the demo mended this shard: it runs on
        try:
            raise RuntimeError("demo: the gateway loop died")
        except RuntimeError as exc:
            traceback.print_exc()  # to stderr, as a bot's crash: `shardmon run` keeps its tail
            if not os.environ.get(SUPERVISOR_ENV):  # unsupervised, the node records it
                event = (
                    load_settings()
                    .monitor_config()
                    .event("crash", crash_metadata(str(exc), traceback.format_exc()))
                )
                await asyncio.to_thread(persist_restart, event)
        os._exit(1)  # a crash: no clean stop, no lease handed over

    crash_task = spawn(crash(), name="shardmon-demo-crash") if crash_after else None
    await run_node(gateway=lambda shard: _synthetic_gateway(tracker, shard))
    if crash_task is not None:
        crash_task.cancel()


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    sys.exit(asyncio.run(_demo_node()))
