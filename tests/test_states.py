"""The grid of the dashboard and the status page: a character a shard, judged by the leader,
on data made by hand; and the incidents of the status page, from alert records."""

from __future__ import annotations

import time
from typing import Any

import pytest
from helpers import sample

from shardmon.incidents import incidents
from shardmon.models import GatewayState, MalformedData
from shardmon.rules import DEFAULT_RULES, FleetView, Limits
from shardmon.states import (
    TILE_STATES,
    check_shard_ranges,
    first_shard,
    fleet_grid,
    format_shard_ranges,
    judge_fleet,
    parse_shard_range,
    parse_shard_ranges,
    shard_code,
)

NOW = time.time()
LIMITS = Limits(interval_s=60)  # offline after 180 s without a heartbeat


def gateway(**fields: Any) -> GatewayState:
    values: dict[str, Any] = {"connected": True, "since_s": 600.0, "last_connect": NOW - 600,
                              "dispatch_age_s": 1.0}  # fmt: skip
    return GatewayState(**(values | fields))


def test_each_shard_gets_the_state_a_bot_operator_would_give_it() -> None:
    latest = {
        0: sample(0, ts=NOW - 5, gateway=gateway()),  # up
        1: sample(1, ts=NOW - 5, memory=97.0, gateway=gateway()),  # up, but above 85% memory
        2: sample(2, ts=NOW - 5, gateway=gateway(connected=False, since_s=20)),  # resuming
        3: sample(3, ts=NOW - 5, gateway=gateway(connected=False, since_s=900)),  # disconnected
        4: sample(4, ts=NOW - 5, gateway=gateway(dispatch_age_s=3600.0)),  # a zombie
        5: sample(5, ts=NOW - 600, gateway=gateway()),  # offline: its heartbeat is 10 min old
        6: sample(6, ts=NOW - 5),  # a node sidecar: no gateway state, judged by its process
        # shard 7 never reported
    }
    fleet = FleetView(
        now=NOW,
        latest=latest,
        heartbeats={shard: s.ts for shard, s in latest.items()},
        restarts_in_window={6: 5},  # and shard 6 is in a restart storm
        shard_count=8,
    )
    judged = judge_fleet(fleet, LIMITS, DEFAULT_RULES)
    assert judged.grid.states == "UWRXZOW."
    assert judged.grid.nodes == {"testhost:1": "0-6"}
    assert judged.summary.online == 6 and judged.summary.offline == 1
    tones = {state.code: state.tone for state in TILE_STATES}
    assert [tones[c] for c in judged.grid.states] == [
        "up", "degraded", "degraded", "disconnected", "disconnected", "offline", "degraded",
        "unknown",
    ]  # fmt: skip
    public = {state.code: state.public for state in TILE_STATES}
    assert [public[c] for c in judged.grid.states] == [
        "up", "up", "degraded", "down", "down", "down", "up", "unknown",
    ]  # fmt: skip


def test_the_grid_groups_shards_by_node_and_leaves_out_a_resharded_fleets_old_shards() -> None:
    latest = {s: sample(s, ts=NOW - 1, node=f"bot-{s // 4}:10{s // 4}") for s in range(10)}
    fleet = FleetView(now=NOW, latest=latest, heartbeats=dict.fromkeys(latest, NOW - 1),
                      restarts_in_window={}, shard_count=8)  # fmt: skip
    judged = judge_fleet(fleet, LIMITS, DEFAULT_RULES)
    assert judged.grid.states == "U" * 8
    assert judged.grid.nodes == {"bot-0:100": "0-3", "bot-1:101": "4-7"}


def test_a_heartbeat_without_a_sample_and_a_sample_without_a_heartbeat() -> None:
    fleet = FleetView(now=NOW, latest={1: sample(1, ts=NOW - 1)}, heartbeats={0: NOW - 1},
                      restarts_in_window={}, shard_count=3)  # fmt: skip
    assert fleet_grid(fleet, LIMITS, []).states == "UO."


def test_shard_ranges_round_trip_and_refuse_what_is_not_one() -> None:
    assert format_shard_ranges([8, 0, 1, 2, 3, 3, 10, 11]) == "0-3,8,10-11"
    assert format_shard_ranges([]) == ""
    assert parse_shard_ranges("0-3,8,10-11", 12) == [0, 1, 2, 3, 8, 10, 11]
    assert parse_shard_range(" 4-6 ") == [4, 5, 6]
    assert check_shard_ranges("0-3,8,10-11", 12) == "0-3,8,10-11"
    assert first_shard("10-11,4") == 10
    with pytest.raises(MalformedData):
        check_shard_ranges(" 1", 12)  # what a leader writes has no spaces (a setting may)
    for bad in ("0-999999999", "x", "3-1", "1,,2", "-1", "1-2-3", "12"):
        with pytest.raises(MalformedData):
            parse_shard_ranges(bad, 12)
        with pytest.raises(MalformedData):
            check_shard_ranges(bad, 12)


def test_one_shard_is_judged_from_its_own_sample_and_heartbeat() -> None:
    up = sample(0, ts=NOW - 1, gateway=gateway())
    assert shard_code(up, NOW - 1, NOW, LIMITS) == "U"
    assert shard_code(up, NOW - 600, NOW, LIMITS) == "O"
    assert shard_code(None, None, NOW, LIMITS) == "."
    down = sample(0, ts=NOW - 1, gateway=gateway(connected=False, since_s=900))
    assert shard_code(down, NOW - 1, NOW, LIMITS) == "X"
    assert shard_code(sample(0, ts=NOW - 1), NOW - 1, NOW, LIMITS) == "U"


def _record(kind: str, rule: str, shards: list[int], ts: float, **more: Any) -> dict[str, Any]:
    return {"id": f"{kind}{rule}{ts}", "kind": kind, "rule": rule, "shards": shards, "ts": ts,
            "title": "t", "node": "host:1", "body": "MemoryError at /srv/bot", **more}  # fmt: skip


def test_incidents_are_conditions_from_their_start_to_their_resolution_in_public_words() -> None:
    records = [  # newest first, as the alerts list holds them
        _record("resolved", "offline", [3], NOW - 100),
        _record("resolved", "offline", [2], NOW - 200),
        _record("alert", "offline", [3], NOW - 700, since=NOW - 900),  # joins the open incident
        _record("alert", "memory", [2], NOW - 800),  # infrastructure: not an incident
        _record("alert", "offline", [2], NOW - 800, since=NOW - 1000),  # a repeat: same one
        _record("alert", "offline", [2], NOW - 1100, since=NOW - 1200),
        _record("alert", "restart_storm", [5], NOW - 5000),
        _record("resolved", "gateway_outage", [], NOW - 6000),
        _record("alert", "gateway_outage", [], NOW - 6500),
    ]
    active = {"restart_storm:5": NOW - 5000, "zombie:7": NOW - 50, "memory:2": NOW - 800}
    found = [incident.public(NOW) for incident in incidents(records, active)]
    assert [i["title"] for i in found] == [
        "Shard receiving no events", "Shard offline", "Restart storm", "Discord gateway outage",
    ]  # fmt: skip
    zombie, offline, storm, outage = found
    assert zombie == {"title": "Shard receiving no events", "shards": [7], "started": NOW - 50,
                      "ended": None, "ongoing": True, "lasted_s": 50}  # fmt: skip
    assert offline["shards"] == [2, 3] and offline["started"] == NOW - 1200
    assert offline["ended"] == NOW - 100 and offline["lasted_s"] == 1100
    assert not offline["ongoing"]
    assert storm["ongoing"] and storm["lasted_s"] == 5000
    assert outage["shards"] == [] and outage["lasted_s"] == 500
    assert all("MemoryError" not in str(i) and "host" not in str(i) for i in found)
