"""The plain values the core takes: the edges (`shardmon.settings`) build a `MonitorConfig`."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shardmon.clock import CLOCK_SKEW_WARN_S
from shardmon.models import RestartEvent, RestartType, new_event
from shardmon.rules import Limits

__all__ = ["MonitorConfig", "default_node"]


def default_node() -> str:
    """This process's node id, `host:pid`."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True, slots=True)
class MonitorConfig:
    """Deployment, shards, intervals and limits of one monitor.

    `rule_settings` holds the rules' settings by name (`memory_critical`, `restart_window_s`,
    ...: see each rule's `Limit`); a rule's default applies to any not given.
    """

    deployment: str = "default"
    shard_ids: tuple[int, ...] = (0,)
    shard_count: int = 1
    system_name: str = "Discord Bot"
    environment: str = "Production"
    version: str = "0.0.0"
    node: str = field(default_factory=default_node)
    sample_interval_s: float = 60
    history_size: int = 1000
    sample_buffer_size: int = 1000
    rule_settings: Mapping[str, float] = field(default_factory=dict)
    journal_path: Path = Path("logs/system_restarts.log")
    leader_eligible: bool = True
    leader_lease_s: float = 15
    alert_dedupe_s: int = 300
    health_port: int | None = None
    clock_skew_warn_s: float = CLOCK_SKEW_WARN_S

    @property
    def limits(self) -> Limits:
        """What the rules judge by, before the runtime overrides."""
        return Limits(self.rule_settings, self.sample_interval_s)

    def event(
        self,
        restart_type: RestartType | str,
        metadata: dict[str, Any] | None = None,
        *,
        version: str | None = None,
    ) -> RestartEvent:
        """A new restart event of this process's shards."""
        return new_event(
            restart_type,
            shards=self.shard_ids,
            node=self.node,
            system=self.system_name,
            environment=self.environment,
            version=version or self.version,
            metadata=metadata,
        )
