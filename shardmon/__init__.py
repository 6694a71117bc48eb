"""shardmon: health, restarts and alerts of a sharded Discord bot, through one Redis."""

from shardmon.api import get_system_monitor, log_bot_crash, log_bot_restart, log_deployment
from shardmon.connection import create_redis
from shardmon.keys import Keys
from shardmon.models import RestartEvent, RestartType, Sample
from shardmon.monitor import GatewayStats, MonitorConfig, SystemMonitor
from shardmon.store import Store

__all__ = [
    "GatewayStats",
    "Keys",
    "MonitorConfig",
    "RestartEvent",
    "RestartType",
    "Sample",
    "Store",
    "SystemMonitor",
    "create_redis",
    "get_system_monitor",
    "log_bot_crash",
    "log_bot_restart",
    "log_deployment",
]
