"""Each shard's state at a glance, one character a shard: the grid of the dashboard and of the
status page, as the leader judges it each tick.

The leader writes `shard_states`, a string whose character `i` is shard `i`'s state
(`redis-cli GETRANGE <prefix>shard_states 3 3` is shard 3's), and `shard_nodes`, each node's
shards as ranges (`0-15,32-47`). A page of 5,000 tiles then reads 5 KB and a few hundred bytes,
not 5,000 samples. `TILE_STATES` is the one table of what a character means, to operators and to
the public; the pages receive it with the grid, so that no colour is decided twice.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from shardmon.models import MalformedData, Sample
from shardmon.rules import (
    DisconnectedRule,
    Finding,
    FleetView,
    Limits,
    OfflineRule,
    Rule,
    ZombieRule,
    connection_state,
)
from shardmon.stats import FleetSummary, summarize_fleet

__all__ = [
    "TILE_CODES",
    "TILE_STATES",
    "FleetGrid",
    "Judgement",
    "TileState",
    "check_shard_ranges",
    "first_shard",
    "fleet_grid",
    "format_shard_ranges",
    "judge_fleet",
    "parse_shard_list",
    "parse_shard_range",
    "parse_shard_ranges",
    "public_state",
    "publicly_up",
    "shard_code",
]


@dataclass(frozen=True, slots=True)
class TileState:
    """What one character of `shard_states` means.

    `tone` is the operator's colour (up, degraded, disconnected, offline, unknown); `public` is
    what the status page says of it to anyone (up, degraded, down, unknown): a shard whose
    process runs hot is still up for the servers it serves.
    """

    code: str
    label: str
    tone: str
    public: str


#: Every state, by precedence: where several hold, the later one is shown.
TILE_STATES: tuple[TileState, ...] = (
    TileState(".", "never seen", "unknown", "unknown"),
    TileState("U", "up", "up", "up"),
    TileState("W", "up, a rule fires on it (resources, restarts, stalls)", "degraded", "up"),
    TileState("R", "connecting or resuming its gateway", "degraded", "degraded"),
    TileState("Z", "zombie: connected, no gateway dispatch", "disconnected", "down"),
    TileState("X", "gateway disconnected", "disconnected", "down"),
    TileState("O", "offline: no heartbeat", "offline", "down"),
)
_RANK = {state.code: rank for rank, state in enumerate(TILE_STATES)}
TILE_CODES = frozenset(_RANK)
_PUBLIC = {state.code: state.public for state in TILE_STATES}
#: Per-shard findings shown as their own state; any other rule on a shard marks it `W`.
_FINDING_CODES = {DisconnectedRule.name: "X", ZombieRule.name: "Z", OfflineRule.name: ""}


@dataclass(frozen=True, slots=True)
class FleetGrid:
    """The grid of one leader tick: `states[i]` is shard `i`'s code, `nodes` each node's shards
    as ranges (shards never seen belong to none)."""

    states: str
    nodes: dict[str, str]


def fleet_grid(fleet: FleetView, limits: Limits, findings: Iterable[Finding]) -> FleetGrid:
    """The grid from the leader's view and this tick's findings (pure; runs in the judge's
    thread). A shard is offline after `limits.offline_after_s` without a heartbeat, as the
    fleet's figures count it; among live shards, a gateway that is down but not past the
    `disconnected` rule's threshold is connecting or resuming.

    One pass in shard order makes the codes and each node's ranges together (a node runs a
    block of shard ids, as AutoShardedBot processes do): at 20,000 shards, a few ms."""
    latest, heartbeats = fleet.latest, fleet.heartbeats
    count = max(fleet.shard_count, max([*latest, *heartbeats], default=-1) + 1)
    oldest = fleet.now - limits.offline_after_s
    codes: list[str] = []
    code_of, beat_of, sample_of = codes.append, heartbeats.get, latest.get  # a hot loop
    ranges: dict[str, list[str]] = {}
    node, first, last = "", -1, -2  # the run of shards of one node being read
    for shard in range(count):
        beat, sample = beat_of(shard), sample_of(shard)
        if sample is None:
            code_of("." if beat is None else "U" if beat >= oldest else "O")
            continue
        gateway = sample.gateway
        if beat is None or beat < oldest:  # a sample without a heartbeat never beat
            code_of("O")
        elif gateway is not None and not gateway.connected:
            code_of("R")
        else:
            code_of("U")
        owner = sample.node or "unknown"
        if owner != node or shard != last + 1:
            if node:
                ranges.setdefault(node, []).append(_run(first, last))
            node, first = owner, shard
        last = shard
    if node:
        ranges.setdefault(node, []).append(_run(first, last))
    for finding in findings:
        on = finding.shard
        if on is None or on >= count or codes[on] in (".", "O"):
            continue
        code = _FINDING_CODES.get(finding.rule, "W")
        if code and _RANK[code] > _RANK[codes[on]]:
            codes[on] = code
    return FleetGrid("".join(codes), {node: ",".join(runs) for node, runs in ranges.items()})


def _run(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}-{last}"


@dataclass(frozen=True, slots=True)
class Judgement:
    """The rules' findings on a fleet, with what follows from them for every view: the
    fleet's figures (without a shard list) and its grid."""

    fleet: FleetView  # without the shards beyond the shard count
    findings: list[tuple[Rule, list[Finding]]]
    summary: FleetSummary
    grid: FleetGrid


def judge_fleet(fleet: FleetView, limits: Limits, rules: Sequence[Rule]) -> Judgement:
    """Judge `fleet` by `rules` (pure: the leader runs it in a thread each tick, and a page
    when no leader has lately). Shards at or beyond `fleet.shard_count` (when it is set) are
    left out: a resharded fleet's old shards are neither offline nor shown."""
    count = fleet.shard_count
    beyond = count and max((*fleet.latest, *fleet.heartbeats), default=-1) >= count
    if beyond:
        fleet = replace(
            fleet,
            heartbeats={s: t for s, t in fleet.heartbeats.items() if s < count},
            latest={s: sample for s, sample in fleet.latest.items() if s < count},
        )
    findings = [(rule, rule.judge(fleet, limits)) for rule in rules]
    summary = summarize_fleet(
        fleet.latest,
        fleet.heartbeats,
        now=fleet.now,
        offline_after_s=limits.offline_after_s,
        with_shards=False,  # totals only: at 20,000 shards a status object a shard costs more
    )
    grid = fleet_grid(fleet, limits, (f for _, found in findings for f in found))
    return Judgement(fleet, findings, summary, grid)


def shard_code(sample: Sample | None, last_seen: float | None, now: float, limits: Limits) -> str:
    """One shard's state from its own sample and heartbeat, as a page that asks of one shard
    sees it: offline, its gateway (`connection_state`), else up. Resources and restarts are
    the leader's to judge: they show in the grid, not here."""
    if last_seen is None and sample is None:
        return "."
    if last_seen is None or now - last_seen > limits.offline_after_s:
        return "O"
    state = connection_state(sample, now, limits)
    if state.startswith("disconnected"):
        return "X"
    return {"zombie": "Z", "connecting": "R", "resuming": "R"}.get(state, "U")


def public_state(code: str) -> str:
    """What the status page says of a shard in state `code`: up, degraded, down, unknown."""
    return _PUBLIC[code]


def publicly_up(code: str) -> bool:
    """Whether the public is told a shard in state `code` is up: its process reports and its
    gateway is connected, or on its way back (resuming)."""
    return public_state(code) in ("up", "degraded")


def format_shard_ranges(shards: Iterable[int]) -> str:
    """`[0, 1, 2, 3, 8]` -> `0-3,8`: a node's shards, short enough for a key's value."""
    runs: list[list[int]] = []
    for shard in sorted(set(shards)):
        if runs and shard == runs[-1][1] + 1:
            runs[-1][1] = shard
        else:
            runs.append([shard, shard])
    return ",".join(str(low) if low == high else f"{low}-{high}" for low, high in runs)


def parse_shard_range(part: str) -> list[int]:
    """`3` -> [3]; `0-3` -> [0, 1, 2, 3]; ValueError for anything else."""
    low, dash, high = part.strip().partition("-")
    if dash and low.strip().isdigit() and high.strip().isdigit() and int(low) <= int(high):
        return list(range(int(low), int(high) + 1))
    if not dash and low.isdigit():
        return [int(low)]
    raise ValueError(f"{part!r} is not a shard id or a range like 0-3")


#: Shard ranges as `shard_nodes` holds them: `0-3,8,10-11`.
_RANGES = re.compile(r"\d+(?:-\d+)?(?:,\d+(?:-\d+)?)*")
_RANGE = re.compile(r"(\d+)(?:-(\d+))?")


def check_shard_ranges(text: str, limit: int) -> str:
    """`text` if it is shard ranges below `limit`, each low end at most its high end; else
    MalformedData. What a reader that passes the ranges on checks, without expanding them."""
    if not _RANGES.fullmatch(text):
        raise MalformedData(f"not shard ranges: {text[:40]!r}")
    for match in _RANGE.finditer(text):
        low, high = int(match[1]), int(match[2] or match[1])
        if not low <= high < limit:
            raise MalformedData(f"not shard ranges below {limit}: {match[0]!r}")
    return text


def first_shard(ranges: str) -> int:
    """The first shard of checked ranges (`check_shard_ranges`): `4-7,12` -> 4."""
    found = _RANGE.match(ranges)
    return int(found[1]) if found else 0


def parse_shard_list(text: str) -> list[int]:
    """`0,1` or `0-3,8`, as a person types it: the shard ids; ValueError otherwise."""
    return [shard for part in text.split(",") for shard in parse_shard_range(part)]


def parse_shard_ranges(text: str, limit: int) -> list[int]:
    """`0-3,8` -> [0, 1, 2, 3, 8], each below `limit`; MalformedData otherwise (a value
    written by hand), so that a range like `0-999999999` cannot make a reader allocate it."""
    shards: list[int] = []
    try:
        for part in text.split(","):
            low, _, high = part.partition("-")
            if int(high or low) >= limit:
                raise ValueError(f"{part!r} is beyond shard {limit - 1}")
            shards.extend(parse_shard_range(part))
    except ValueError as exc:
        raise MalformedData(f"not shard ranges ({exc})") from None
    return shards
