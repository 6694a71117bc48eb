"""shardmon: health, restarts and alerts of a sharded Discord bot, through one Redis.

Names are loaded on first use, so `import shardmon` costs no more than what is used: the seed
helpers (`log_bot_restart` and the others) bring settings in, the core does not.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shardmon.api import (
        get_restart_history,
        get_system_monitor,
        log_bot_crash,
        log_bot_restart,
        log_deployment,
    )
    from shardmon.connection import create_redis
    from shardmon.keys import Keys
    from shardmon.models import RestartEvent, RestartType, Sample
    from shardmon.monitor import GatewayStats, MonitorConfig, SystemMonitor, build_monitor
    from shardmon.store import Store

#: Each public name -> the module that defines it.
_HOMES = {
    "GatewayStats": "monitor",
    "Keys": "keys",
    "MonitorConfig": "monitor",
    "RestartEvent": "models",
    "RestartType": "models",
    "Sample": "models",
    "Store": "store",
    "SystemMonitor": "monitor",
    "build_monitor": "monitor",
    "create_redis": "connection",
    "get_restart_history": "api",
    "get_system_monitor": "api",
    "log_bot_crash": "api",
    "log_bot_restart": "api",
    "log_deployment": "api",
}

__all__ = [
    "GatewayStats",
    "Keys",
    "MonitorConfig",
    "RestartEvent",
    "RestartType",
    "Sample",
    "Store",
    "SystemMonitor",
    "build_monitor",
    "create_redis",
    "get_restart_history",
    "get_system_monitor",
    "log_bot_crash",
    "log_bot_restart",
    "log_deployment",
]


def __getattr__(name: str) -> object:
    if name not in _HOMES:
        raise AttributeError(f"module 'shardmon' has no attribute {name!r}")
    value = getattr(import_module(f"shardmon.{_HOMES[name]}"), name)
    globals()[name] = value  # once found, an ordinary attribute
    return value
