"""Every Redis key shardmon uses, spelled once (the contract of DESIGN.md, "Keys").

All keys of a deployment share the hash tag `{<deployment>}`, so they live in one Redis Cluster
slot and multi-key scripts work on standalone Redis, Sentinel and Cluster alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "ALERTS_CAP",
    "DEPLOYMENT_PATTERN",
    "DEPLOYMENT_RULE",
    "FLEET_TTL_S",
    "GATEWAY_EVENTS_TTL_S",
    "RESOLUTION_CLAIM_TTL_S",
    "ROLLUP_HOUR_TTL_S",
    "ROLLUP_MINUTE_TTL_S",
    "KeyInfo",
    "Keys",
]

#: A deployment name: it goes inside the hash tag `{...}` and between `:`, so none of those,
#: and no spaces, which redis-cli users would have to quote.
DEPLOYMENT_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
DEPLOYMENT_RULE = "use 1-64 letters, digits, '_', '.' or '-' (it goes into Redis key names)"

#: `rollup:<minute>` lives two days: enough for "the last 24 hours" at minute resolution.
ROLLUP_MINUTE_TTL_S = 2 * 86400
#: `rollup:h:<hour>` lives 30 days: the long-term history, at 24 small hashes a day.
ROLLUP_HOUR_TTL_S = 30 * 86400
#: `gateway:<shard>:identify|resume` keep 7 days of events: "the last 24 h" with room to spare.
GATEWAY_EVENTS_TTL_S = 7 * 86400
#: `fleet` outlives its leader by a day at most: a deployment that stopped leaves no litter.
FLEET_TTL_S = 86400
#: `resolved:<rule>:<shard>` outlives any resend of its claim (5 s timeout, 1 retry).
RESOLUTION_CLAIM_TTL_S = 60
#: `alerts` keeps the newest 100 alerts: the answer to "why did no alert reach Discord?".
ALERTS_CAP = 100


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """One entry of the key layout: a single key, or a family matched by a SCAN pattern."""

    name: str  # as DESIGN.md writes it, after the prefix
    type: str
    key: str  # the key itself, or the SCAN pattern of the family
    family: bool
    holds: str


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names of one deployment: `Keys("acme").restarts == "shardmon:{acme}:restarts"`."""

    deployment: str

    def __post_init__(self) -> None:
        if not isinstance(self.deployment, str) or not DEPLOYMENT_PATTERN.fullmatch(
            self.deployment
        ):
            raise ValueError(f"deployment {self.deployment!r}: {DEPLOYMENT_RULE}")

    @property
    def prefix(self) -> str:
        return f"shardmon:{{{self.deployment}}}:"

    def samples(self, shard: int) -> str:
        """LIST: newest-first sample JSON of one shard, LTRIMmed to `history_size`."""
        return f"{self.prefix}samples:{shard}"

    @property
    def seq(self) -> str:
        """HASH shard -> sequence number of its last applied sample (retried writes ignored)."""
        return f"{self.prefix}seq"

    @property
    def latest(self) -> str:
        """HASH shard -> newest sample JSON: the fleet's state in one HGETALL."""
        return f"{self.prefix}latest"

    @property
    def fleet(self) -> str:
        """HASH the fleet's figures at the leader's last tick (online, offline, sums, spreads,
        oldest and newest start, `ts`): /uptime reads this one small key (not in DESIGN.md)."""
        return f"{self.prefix}fleet"

    @property
    def heartbeats(self) -> str:
        """ZSET member shard, score last-seen time: stale shards are one ZRANGEBYSCORE."""
        return f"{self.prefix}heartbeats"

    def shard_info(self, shard: int) -> str:
        """HASH started_at, host, pid, version, shard_count, node of the process running it."""
        return f"{self.prefix}shard:{shard}"

    @property
    def restarts(self) -> str:
        """ZSET of every restart event JSON of the fleet, score = event time."""
        return f"{self.prefix}restarts"

    def shard_restarts(self, shard: int) -> str:
        """ZSET of the same events per shard: the storm count is a ZCOUNT here."""
        return f"{self.prefix}restarts:{shard}"

    def gateway_identify(self, shard: int) -> str:
        """ZSET one member per gateway IDENTIFY, score = time, trimmed to 7 days."""
        return f"{self.prefix}gateway:{shard}:identify"

    def gateway_resume(self, shard: int) -> str:
        """ZSET one member per gateway RESUME, score = time, trimmed to 7 days."""
        return f"{self.prefix}gateway:{shard}:resume"

    @property
    def leader(self) -> str:
        """STRING node id of the leader, set NX with a PX lease."""
        return f"{self.prefix}leader"

    @property
    def leader_epoch(self) -> str:
        """STRING INCRed on every new leadership: the fencing number on alerts."""
        return f"{self.prefix}leader:epoch"

    def alert(self, rule: str, shard: int | None = None) -> str:
        """STRING dedupe guard, SET NX EX <dedupe_s>: while it exists the alert is muted."""
        suffix = "" if shard is None else f":{shard}"
        return f"{self.prefix}alert:{rule}{suffix}"

    def resolution(self, rule: str, shard: int) -> str:
        """STRING token of the claim that announced a condition cleared, EX 60: a resend of
        that claim (redis-py retries after a timeout) is known as ours (not in DESIGN.md)."""
        return f"{self.prefix}resolved:{rule}:{shard}"

    @property
    def active_alerts(self) -> str:
        """HASH `<rule>:<shard>` -> JSON of a condition alerted and not yet resolved: tells any
        future leader which "resolved" messages are owed (not in DESIGN.md; see README)."""
        return f"{self.prefix}active_alerts"

    @property
    def alert_counts(self) -> str:
        """HASH `<rule>:<kind>` -> alerts delivered ever: the exporter's counters (the capped
        `alerts` list cannot count; not in DESIGN.md, see CHANGELOG)."""
        return f"{self.prefix}alert_counts"

    @property
    def alerts(self) -> str:
        """LIST newest-first JSON of alerts sent and resolved, capped at `ALERTS_CAP`."""
        return f"{self.prefix}alerts"

    def rollup_minute(self, minute_start: int) -> str:
        """HASH fleet aggregates of the minute starting at that epoch second."""
        return f"{self.prefix}rollup:{minute_start}"

    @property
    def rollup_minute_pattern(self) -> str:
        """SCAN/KEYS pattern of the minute rollups (it also matches the hourly ones)."""
        return f"{self.prefix}rollup:*"

    def rollup_hour(self, hour_start: int) -> str:
        """HASH fleet aggregates of the hour starting at that epoch second, kept 30 days."""
        return f"{self.prefix}rollup:h:{hour_start}"

    @property
    def restart_counts(self) -> str:
        """HASH `<shard>:<type>` -> restarts ever recorded: the exporter's counters, which a
        prune does not lower (not in DESIGN.md, see CHANGELOG)."""
        return f"{self.prefix}restart_counts"

    @property
    def restart_types(self) -> str:
        """HASH `<type>` -> events of that type in `restarts`, and `malformed` -> members that
        do not parse: /restart_stats without reading the whole set. Kept by the record script,
        rebuilt from `restarts` when its sum and ZCARD disagree (not in DESIGN.md: CHANGELOG)."""
        return f"{self.prefix}restart_types"

    @property
    def retention(self) -> str:
        """HASH `restarts_before` -> epoch seconds of the last prune: journal replays skip
        older events, so a prune is not undone by another host's journal (see CHANGELOG)."""
        return f"{self.prefix}retention"

    @property
    def thresholds(self) -> str:
        """HASH `<rule>` or `<rule>:<shard>` -> value: runtime overrides read by the leader."""
        return f"{self.prefix}thresholds"

    def layout(self) -> list[KeyInfo]:
        """Every key of the deployment, for `shardmon keys` and operators' redis-cli."""
        p = self.prefix
        return [
            KeyInfo("samples:<shard>", "list", f"{p}samples:*", True, "newest-first samples"),
            KeyInfo("seq", "hash", self.seq, False, "shard -> last applied sequence number"),
            KeyInfo("latest", "hash", self.latest, False, "shard -> newest sample"),
            KeyInfo("heartbeats", "zset", self.heartbeats, False, "shard by last-seen time"),
            KeyInfo("fleet", "hash", self.fleet, False, "fleet figures of the last leader tick"),
            KeyInfo("shard:<shard>", "hash", f"{p}shard:*", True, "who runs a shard, since when"),
            KeyInfo("restarts", "zset", self.restarts, False, "every restart event"),
            KeyInfo("restarts:<shard>", "zset", f"{p}restarts:*", True, "restarts of one shard"),
            KeyInfo(
                "gateway:<shard>:identify",
                "zset",
                f"{p}gateway:*:identify",
                True,
                "IDENTIFYs, 7 days",
            ),
            KeyInfo(
                "gateway:<shard>:resume", "zset", f"{p}gateway:*:resume", True, "RESUMEs, 7 days"
            ),
            KeyInfo("leader", "string", self.leader, False, "the leading node (PX lease)"),
            KeyInfo("leader:epoch", "string", self.leader_epoch, False, "fencing epoch"),
            KeyInfo("alert:<rule>:<shard>", "string", f"{p}alert:*", True, "muted alerts (TTL)"),
            KeyInfo("active_alerts", "hash", self.active_alerts, False, "resolutions owed"),
            KeyInfo(
                "resolved:<rule>:<shard>", "string", f"{p}resolved:*", True, "resolution claims"
            ),
            KeyInfo("alerts", "list", self.alerts, False, "alerts sent, with delivery"),
            KeyInfo("alert_counts", "hash", self.alert_counts, False, "alerts delivered ever"),
            KeyInfo("rollup:<minute>", "hash", f"{p}rollup:[0-9]*", True, "fleet minutes, 2 days"),
            KeyInfo("rollup:h:<hour>", "hash", f"{p}rollup:h:*", True, "fleet hours, 30 days"),
            KeyInfo("thresholds", "hash", self.thresholds, False, "runtime threshold overrides"),
            KeyInfo("retention", "hash", self.retention, False, "cutoff of the last prune"),
            KeyInfo("restart_counts", "hash", self.restart_counts, False, "restarts ever, by type"),
            KeyInfo(
                "restart_types", "hash", self.restart_types, False, "events in restarts, by type"
            ),
            KeyInfo("alert_channels", "hash", self.alert_channels, False, "guild -> channel"),
        ]

    @property
    def alert_channels(self) -> str:
        """HASH guild id -> channel id of its first dev-logs/admin-logs/... channel."""
        return f"{self.prefix}alert_channels"
