"""Every Redis key shardmon uses, spelled once (the contract of DESIGN.md, "Keys").

`LAYOUT` is the one table of keys: each name (after the prefix, as DESIGN.md writes it), its
type and what it holds; `shardmon keys` prints it and `Keys` builds every name from it. All
keys of a deployment share the hash tag `{<deployment>}`, so they live in one Redis Cluster
slot and multi-key scripts work on standalone Redis, Sentinel and Cluster alike.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = [
    "ALERTS_CAP",
    "DEPLOYMENT_PATTERN",
    "DEPLOYMENT_RULE",
    "FLEET_TTL_S",
    "GATEWAY_EVENTS_TTL_S",
    "LAYOUT",
    "RECENT_RESTARTS_S",
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
#: `recent_restarts` keeps 7 days: the longest restart storm window (`restart_window_s`).
RECENT_RESTARTS_S = 7 * 86400
#: `gateway:<shard>:identify|resume` keep 7 days of events: "the last 24 h" with room to spare.
GATEWAY_EVENTS_TTL_S = 7 * 86400
#: `fleet`, `shard_states` and `shard_nodes` outlive their leader by a day at most: a
#: deployment that stopped leaves no litter.
FLEET_TTL_S = 86400
#: `resolved:<rule>[:<shard>]` outlives any resend of its claim (5 s timeout, 1 retry).
RESOLUTION_CLAIM_TTL_S = 60
#: `alerts` keeps the newest 100 alerts: the answer to "why did no alert reach Discord?".
ALERTS_CAP = 100

#: Every key of a deployment: name after the prefix -> (type, what it holds). A name with a
#: `<part>` is a family, one key per shard, rule, minute or hour (a `[...]` part may be left
#: out). Keys that DESIGN.md does not list are additions, explained in README and CHANGELOG.
LAYOUT: dict[str, tuple[str, str]] = {
    "samples:<shard>": ("list", "newest-first samples of one shard, LTRIMmed to history_size"),
    "seq": ("hash", "shard -> last applied sequence number: a retried write is ignored"),
    "latest": ("hash", "shard -> newest sample: the fleet's state in one HGETALL"),
    "heartbeats": ("zset", "shard by last-seen time: stale shards are one ZRANGEBYSCORE"),
    "fleet": ("hash", "fleet figures of the last leader tick: what /uptime reads (addition)"),
    "shard_states": ("string", "a character a shard: its state at the last tick (addition)"),
    "shard_nodes": ("hash", "node -> its shards as ranges (0-15,32), last tick (addition)"),
    "shard:<shard>": ("hash", "who runs a shard, since when: started_at, host, pid, version"),
    "restarts": ("zset", "every restart event of the fleet, score = event time"),
    "restarts:<shard>": ("zset", "restarts of one shard: the storm count is a ZCOUNT here"),
    "recent_restarts": ("zset", "<shard>:<event id> per restart of a shard, 7 days (addition)"),
    "gateway:<shard>:identify": ("zset", "IDENTIFYs of one shard, score = time, 7 days"),
    "gateway:<shard>:resume": ("zset", "RESUMEs of one shard, score = time, 7 days"),
    "identifies": ("zset", "<shard>:<time>:<id> per IDENTIFY of the fleet, 7 days (addition)"),
    "session_start_limit": ("hash", "the bot's IDENTIFY budget, read by the leader (addition)"),
    "leader": ("string", "the leading node, SET NX with a PX lease"),
    "leader:epoch": ("string", "INCRed on every new leadership: the fencing epoch"),
    "alert:<rule>[:<shard>]": ("string", "dedupe guard SET NX EX dedupe_s: muted while it lives"),
    "active_alerts": ("hash", "<rule>:<shard> alerted, not yet resolved: resolutions owed"),
    "resolved:<rule>[:<shard>]": ("string", "token of a resolution claim, 60 s (addition)"),
    "alerts": ("list", "newest-first alerts sent and resolved, with delivery; 100 kept"),
    "alert_counts": ("hash", "<rule>:<kind> -> alerts delivered ever (addition)"),
    "rollup:<minute>": ("hash", "fleet aggregates of one minute, 2 days"),
    "rollup:h:<hour>": ("hash", "fleet aggregates of one hour, 30 days"),
    "thresholds": ("hash", "<rule> or <rule>:<shard> -> runtime threshold override"),
    "retention": ("hash", "restarts_before: cutoff of the last prune (addition)"),
    "restart_counts": ("hash", "<shard>:<type> -> restarts ever, by type (addition)"),
    "restart_types": ("hash", "<type> -> events in restarts, and malformed (addition)"),
    "alert_channels": ("hash", "guild id -> its first dev-logs, admin-logs, ... channel"),
    "doctor": ("string", "scratch key of shardmon doctor's permission probe, 60 s (addition)"),
    "supervisors": ("hash", "node -> what its shardmon run does with its child (addition)"),
    "run_requests": ("hash", "shard -> a restart or resume asked of its supervisor (addition)"),
}

#: What a `<part>` of a family name becomes in its SCAN pattern (minutes: digits, so that
#: `rollup:<minute>` does not match `rollup:h:<hour>`).
_PATTERN_PARTS = {"<minute>": "[0-9]*"}
_PART = re.compile(r"<(\w+)>")
_OPTIONAL = re.compile(r"\[([^\]]*)\]")


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """One entry of the key layout: a single key, or a family matched by a SCAN pattern."""

    name: str  # as DESIGN.md writes it, after the prefix
    type: str
    key: str  # the key itself, or the SCAN pattern of the family
    family: bool
    holds: str


def _attribute(name: str) -> str:
    return name.replace(":", "_")


def _template(name: str, *, optional: bool) -> str:
    """`restarts:<shard>` -> `restarts:{}`, with or without its optional `[...]` part."""
    name = _OPTIONAL.sub(lambda match: match[1] if optional else "", name)
    return _PART.sub("{}", name.replace("{", "{{").replace("}", "}}"))


#: The single keys, each an attribute of `Keys` of its name (`leader:epoch` -> `leader_epoch`).
_SINGLE = [name for name in LAYOUT if "<" not in name]


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names of one deployment: `Keys("acme").restarts == "shardmon:{acme}:restarts"`.

    A single key of `LAYOUT` is an attribute (`keys.latest`, `keys.leader_epoch`); a family
    is a method that fills its parts in (`keys.samples(3)`, `keys.alert("memory", 3)`).
    """

    deployment: str
    prefix: str = field(init=False, repr=False)
    seq: str = field(init=False, repr=False)
    latest: str = field(init=False, repr=False)
    heartbeats: str = field(init=False, repr=False)
    fleet: str = field(init=False, repr=False)
    shard_states: str = field(init=False, repr=False)
    shard_nodes: str = field(init=False, repr=False)
    restarts: str = field(init=False, repr=False)
    recent_restarts: str = field(init=False, repr=False)
    identifies: str = field(init=False, repr=False)
    session_start_limit: str = field(init=False, repr=False)
    leader: str = field(init=False, repr=False)
    leader_epoch: str = field(init=False, repr=False)
    active_alerts: str = field(init=False, repr=False)
    alerts: str = field(init=False, repr=False)
    alert_counts: str = field(init=False, repr=False)
    thresholds: str = field(init=False, repr=False)
    retention: str = field(init=False, repr=False)
    restart_counts: str = field(init=False, repr=False)
    restart_types: str = field(init=False, repr=False)
    alert_channels: str = field(init=False, repr=False)
    doctor: str = field(init=False, repr=False)
    supervisors: str = field(init=False, repr=False)
    run_requests: str = field(init=False, repr=False)
    _templates: dict[str, tuple[str, str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.deployment, str) or not DEPLOYMENT_PATTERN.fullmatch(
            self.deployment
        ):
            raise ValueError(f"deployment {self.deployment!r}: {DEPLOYMENT_RULE}")
        prefix = f"shardmon:{{{self.deployment}}}:"
        object.__setattr__(self, "prefix", prefix)
        for name in _SINGLE:
            object.__setattr__(self, _attribute(name), prefix + name)
        escaped = prefix.replace("{", "{{").replace("}", "}}")
        templates = {
            name: tuple(escaped + _template(name, optional=flag) for flag in (True, False))
            for name in LAYOUT
        }
        object.__setattr__(self, "_templates", templates)

    def _fill(self, name: str, *parts: object) -> str:
        """The key of a family of `LAYOUT`, its `<part>`s filled in, in order (an optional
        `[...]` only when its parts are given): a `str.format` of a template made once, as
        cheap as an f-string, since the leader builds two keys a shard each tick."""
        full, short = self._templates[name]
        return (short if None in parts else full).format(*parts)

    def of_shards(self, name: str, shards: Sequence[int]) -> list[str]:
        """The key of each shard in a family of one `<shard>` part (`restarts:<shard>`): the
        leader's thousands of keys a tick, at a `str.format` each."""
        template = self._templates[name][0]
        return [template.format(shard) for shard in shards]

    def pattern(self, name: str) -> str:
        """The SCAN pattern of a family of `LAYOUT` (or the name of a single key)."""
        if name not in LAYOUT:
            raise KeyError(name)
        general = _OPTIONAL.sub("", name)  # `alert:*` matches guards with and without a shard
        pattern = _PART.sub(lambda m: _PATTERN_PARTS.get(m[0], "*"), general)
        return self.prefix + pattern.replace("*:*", "*")  # `resolved:*`: a `*` spans a `:`

    def samples(self, shard: int) -> str:
        return self._fill("samples:<shard>", shard)

    def shard_info(self, shard: int) -> str:
        return self._fill("shard:<shard>", shard)

    def shard_restarts(self, shard: int) -> str:
        return self._fill("restarts:<shard>", shard)

    def gateway_identify(self, shard: int) -> str:
        return self._fill("gateway:<shard>:identify", shard)

    def gateway_resume(self, shard: int) -> str:
        return self._fill("gateway:<shard>:resume", shard)

    def alert(self, rule: str, shard: int | None = None) -> str:
        """The dedupe guard of a rule on one shard (or of the rule fleet-wide: no shard)."""
        return self._fill("alert:<rule>[:<shard>]", rule, shard)

    def resolution(self, rule: str, shard: int | None = None) -> str:
        return self._fill("resolved:<rule>[:<shard>]", rule, shard)

    def rollup_minute(self, minute_start: int) -> str:
        return self._fill("rollup:<minute>", minute_start)

    def rollup_hour(self, hour_start: int) -> str:
        return self._fill("rollup:h:<hour>", hour_start)

    @property
    def rollup_minute_pattern(self) -> str:
        """SCAN/KEYS pattern of every rollup, minutes and hours: where malformed ones count."""
        return self._fill("rollup:<minute>", "*")

    def layout(self) -> list[KeyInfo]:
        """Every key of the deployment, for `shardmon keys` and operators' redis-cli."""
        return [
            KeyInfo(name, kind, self.pattern(name), "<" in name, holds)
            for name, (kind, holds) in LAYOUT.items()
        ]
