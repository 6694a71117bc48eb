"""Every Redis command of shardmon, by aggregate: `samples` (what shard processes write),
`restarts` (restart events, counts and storms), `alerting` (leadership, alert claims and records,
overrides, alert channels) and `fleet` (fleet-wide reads). `Store` is all of them on one client.

The store is handed a client and the deployment's `Keys`; it reads no settings. Values that do
not parse (someone wrote to a key by hand) are skipped, counted in `skipped` and logged. Each
Lua script sits in `lua/`, with the keys it touches and why it must be atomic.
"""

from __future__ import annotations

from shardmon.store._base import lua
from shardmon.store.alerting import Leadership, condition, parse_condition
from shardmon.store.fleet import FleetBoard, FleetStatus, FleetStore, LeaderView
from shardmon.store.history import SPANS, History
from shardmon.store.restarts import PruneResult, record_restart_sync
from shardmon.store.samples import GatewayCounts, SampleWrite, ShardInfo

__all__ = [
    "SPANS",
    "FleetBoard",
    "FleetStatus",
    "GatewayCounts",
    "History",
    "LeaderView",
    "Leadership",
    "PruneResult",
    "SampleWrite",
    "ShardInfo",
    "Store",
    "condition",
    "lua",
    "parse_condition",
    "record_restart_sync",
]


class Store(FleetStore):
    """Samples, restart events, alerts and fleet reads of one deployment in Redis.

    Args:
        client: an asyncio Redis client with `decode_responses=True` (see `create_redis`).
        keys: the deployment's key names.
        history_size: samples kept per shard (`samples:<shard>` is LTRIMmed to it), default 1000.
    """
