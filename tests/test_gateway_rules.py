"""The gateway's tracker and rules, on data made by hand: connections, zombies, stalls, the
IDENTIFY budget, and an outage that is one incident."""

from __future__ import annotations

import json
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest
from helpers import sample

from shardmon.alerts import Alerter
from shardmon.clock import FleetClock
from shardmon.gateway import COUNT_WINDOW_S, GatewayTracker
from shardmon.judge import FleetJudge
from shardmon.models import GatewayState, MalformedData, Sample, SessionStartLimit, parse_sample
from shardmon.rules import (
    DEFAULT_RULES,
    DisconnectedRule,
    FleetView,
    GatewayOutageRule,
    IdentifyBudgetRule,
    Limits,
    LoopStallRule,
    ZombieRule,
    connection_state,
)
from shardmon.store._base import parse_all

NOW = time.time()
LIMITS = Limits(interval_s=60)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def gateway(**fields: Any) -> GatewayState:
    values: dict[str, Any] = {"connected": True, "since_s": 600.0, "last_connect": NOW - 600,
                              "dispatch_age_s": 1.0}  # fmt: skip
    values.update(fields)
    return GatewayState(**values)


def fleet(gateways: dict[int, GatewayState], **overrides: Any) -> FleetView:
    latest = {s: sample(s, ts=NOW - 10, gateway=g) for s, g in gateways.items()}
    values: dict[str, Any] = {
        "now": NOW,
        "latest": latest,
        "heartbeats": dict.fromkeys(latest, NOW - 10),
        "restarts_in_window": {},
        "shard_count": len(latest),
    }
    values.update(overrides)
    return FleetView(**values)


# -- the tracker ----------------------------------------------------------------------------


def test_tracker_follows_connects_disconnects_and_resumes_on_its_clock() -> None:
    clock = Clock()
    tracker = GatewayTracker([0, 1], clock=clock, wall=lambda: 5.0)
    first = tracker.state(0)
    assert first is not None and not first.connected and first.last_connect is None
    tracker.connected(0)
    clock.now += 30
    tracker.disconnected(0)
    tracker.disconnected(0)  # discord.py may say it twice for one close
    clock.now += 50
    state = tracker.state(0)
    assert state is not None
    assert (state.connected, state.since_s, state.disconnects_1h, state.disconnects_total) == (
        False, 50.0, 1, 1,
    )  # fmt: skip
    assert state.last_connect == state.last_disconnect == 5.0
    tracker.resumed(0)
    resumed = tracker.state(0)
    assert resumed is not None and resumed.connected and resumed.since_s == 0
    assert resumed.last_resume == 5.0
    assert tracker.state(7) is None  # not this process's shard
    tracker.connected(7)  # a stray event is ignored, not a crash


def test_tracker_counts_an_hour_of_disconnects_and_stalls_and_ages_dispatches() -> None:
    clock = Clock()
    tracker = GatewayTracker([0], clock=clock)
    assert tracker.state(0).dispatch_age_s is None  # type: ignore[union-attr]
    for _ in range(3):
        tracker.connected(0)
        tracker.disconnected(0)
        tracker.stalled(0)
        clock.now += 1000
    tracker.dispatched(0, at=clock.now - 7)
    state = tracker.state(0)
    assert state is not None and state.dispatch_age_s == 7
    assert (state.disconnects_1h, state.stalls_1h) == (3, 3)
    clock.now += COUNT_WINDOW_S - 1500  # the first two are over an hour old
    state = tracker.state(0)
    assert state is not None
    assert (state.disconnects_1h, state.stalls_1h, state.stalls_total) == (1, 1, 3)


def test_tracker_takes_stalls_from_other_threads() -> None:
    tracker = GatewayTracker([0])
    threads = [threading.Thread(target=lambda: [tracker.stalled(0) for _ in range(500)])
               for _ in range(4)]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert tracker.state(0).stalls_total == 2000  # type: ignore[union-attr]


# -- the sample field -------------------------------------------------------------------------


def test_a_sample_keeps_its_process_when_its_gateway_part_is_nonsense() -> None:
    good = sample(3, gateway=gateway())
    assert parse_sample(good.to_json()).gateway == good.gateway
    data = json.loads(good.to_json())
    for nonsense in ({"connected": "perhaps", "since_s": 1}, {"connected": True, "since_s": -1},
                     {"connected": True, "since_s": 1, "stalls_1h": 1.5}, "up"):  # fmt: skip
        with pytest.raises(MalformedData, match="gateway part dropped") as caught:
            parse_sample(json.dumps({**data, "gateway": nonsense}))
        salvaged = caught.value.salvaged  # counted as malformed, and the process kept
        assert isinstance(salvaged, Sample) and salvaged.gateway is None
        assert salvaged.memory == 40
    [kept], skipped = parse_all([json.dumps({**data, "gateway": "up"})], parse_sample)
    assert (kept.shard, skipped) == (3, 1)
    with pytest.raises(MalformedData) as both_bad:
        parse_sample(json.dumps({**data, "gateway": "up", "memory": 140}))
    assert both_bad.value.salvaged is None
    older = parse_sample(json.dumps({k: v for k, v in data.items() if k != "gateway"}))
    assert older.gateway is None


# -- the rules ----------------------------------------------------------------------------------


def test_disconnected_fires_after_the_threshold_and_resolves_when_connected() -> None:
    rule = DisconnectedRule()
    quick = fleet({0: gateway(connected=False, since_s=100)})  # + 10 s of sample age
    assert rule.judge(quick, LIMITS) == []
    assert connection_state(quick.latest[0], NOW, LIMITS) == "resuming"
    down = fleet({0: gateway(), 1: gateway(connected=False, since_s=170)})
    [finding] = rule.judge(down, LIMITS)
    assert (finding.shard, finding.value, finding.threshold) == (1, 180, 120)
    text = rule.describe([finding], down, LIMITS)
    assert "Shard 1: gateway disconnected for 3m" in text.body and "testhost:1" in text.body
    assert connection_state(down.latest[1], NOW, LIMITS) == "disconnected for 3m"
    assert rule.resolution(1, down, LIMITS) is None
    back = fleet({1: gateway(last_resume=NOW)})
    resolved = rule.resolution(1, back, LIMITS)
    assert resolved is not None and resolved.body == "Shard 1 resumed again"
    tighter = Limits(interval_s=60, overrides={"disconnected:1": 60})
    assert rule.judge(fleet({1: gateway(connected=False, since_s=90)}), tighter)


def test_a_shard_not_yet_connected_gets_the_fleets_identify_time_first() -> None:
    rule = DisconnectedRule()
    waiting = {s: gateway(connected=False, since_s=300, last_connect=None) for s in range(16)}
    limit = SessionStartLimit(total=1000, remaining=990, reset_after_ms=3_600_000,
                              max_concurrency=1, read_at=NOW)  # fmt: skip
    view = fleet(waiting, session_limit=limit)  # 16 shards x 5 s + 120 s = 200 s: too long
    assert len(rule.judge(view, LIMITS)) == 16
    assert connection_state(view.latest[0], NOW, LIMITS) == "connecting"
    fast = limit.model_copy(update={"max_concurrency": 16})  # 5 s + 120 s
    assert len(rule.judge(fleet(waiting, session_limit=fast), LIMITS)) == 16
    patient = fleet({s: gateway(connected=False, since_s=60, last_connect=None) for s in range(16)})
    assert rule.judge(patient, LIMITS) == []


def test_a_sample_without_gateway_state_is_judged_as_before() -> None:
    view = FleetView(now=NOW, latest={0: sample(0, ts=NOW - 10)}, heartbeats={0: NOW - 10},
                     restarts_in_window={})  # fmt: skip
    for rule in DEFAULT_RULES:
        assert rule.judge(view, LIMITS) == [], rule.name
    assert connection_state(view.latest[0], NOW, LIMITS) == "-"


def test_zombie_is_a_connected_shard_with_servers_and_no_dispatch() -> None:
    rule = ZombieRule()
    silent = gateway(dispatch_age_s=895.0)  # + 10 s of sample age: 905 s
    view = fleet({0: silent, 1: gateway(), 2: gateway(dispatch_age_s=None)})
    [finding] = rule.judge(view, LIMITS)
    assert (finding.shard, finding.value) == (0, 905)
    assert "Shard 0: connected, 100 servers, no gateway event for 15m" in (
        rule.describe([finding], view, LIMITS).body
    )
    assert connection_state(view.latest[0], NOW, LIMITS) == "zombie"
    no_guilds = fleet({0: silent}, latest={0: sample(0, ts=NOW - 10, guilds=0, gateway=silent)})
    assert rule.judge(no_guilds, LIMITS) == []
    assert rule.judge(view, Limits({"zombie_after_s": 0})) == []  # 0 turns it off
    assert rule.resolution(0, view, LIMITS) is None
    assert rule.resolution(0, fleet({0: gateway()}), LIMITS) is not None


def test_loop_stall_counts_the_warnings_of_the_last_hour() -> None:
    rule = LoopStallRule()
    view = fleet({0: gateway(stalls_1h=3), 1: gateway()})
    [finding] = rule.judge(view, LIMITS)
    assert (finding.shard, finding.value) == (0, 3)
    assert "Shard 0: 3 heartbeat-blocked or can't-keep-up warning(s)" in (
        rule.describe([finding], view, LIMITS).body
    )
    assert rule.judge(view, Limits({"loop_stall_threshold": 5})) == []
    assert rule.resolution(0, fleet({0: gateway()}), LIMITS) is not None


def budget(
    remaining: int, reset_in_s: float = 36_000, total: int = 1000, read_at: float = NOW
) -> SessionStartLimit:
    reset_after_ms = int(reset_in_s * 1000)
    return SessionStartLimit(total=total, remaining=remaining, reset_after_ms=reset_after_ms,
                             max_concurrency=1, read_at=read_at)  # fmt: skip


def test_identify_budget_fires_when_low_or_burning_and_resolves() -> None:
    rule = IdentifyBudgetRule()
    low = fleet({0: gateway()}, session_limit=budget(200))
    [finding] = rule.judge(low, LIMITS)
    assert finding.shard is None and finding.value == 200
    body = rule.describe([finding], low, LIMITS).body
    assert "200 of 1,000 session starts left (20%), resets in 10h 0m" in body
    assert "resets the bot token" in body
    # 900 left, 10 h to the reset, 100 IDENTIFYs in the last hour: out in 9 h
    burning = fleet({0: gateway()}, session_limit=budget(900), identifies_1h=100)
    assert rule.judge(burning, LIMITS) and "runs out in 9h 0m" in (
        rule.describe(rule.judge(burning, LIMITS), burning, LIMITS).body
    )
    # one IDENTIFY a shard (a deployment) is not projected
    deploy = fleet({s: gateway() for s in range(200)}, session_limit=budget(800, total=1000),
                   identifies_1h=200)  # fmt: skip
    assert rule.judge(deploy, LIMITS) == []
    stale = fleet({0: gateway()}, session_limit=budget(10, 60, read_at=NOW - 61))
    assert rule.judge(stale, LIMITS) == []  # reset since it was read
    assert rule.judge(fleet({0: gateway()}), LIMITS) == []  # never read
    assert rule.resolution(None, low, LIMITS) is None
    assert rule.resolution(None, fleet({0: gateway()}, session_limit=budget(990)), LIMITS)


def test_an_outage_of_60_percent_is_one_incident_holding_the_disconnects() -> None:
    rule = GatewayOutageRule()
    shards = {s: gateway() for s in range(10)}
    shards |= {s: gateway(connected=False, since_s=200 + s) for s in range(6)}  # within 2 ticks
    view = fleet(shards)
    [finding] = rule.judge(view, LIMITS)
    assert (finding.shard, finding.value, finding.threshold) == (None, 6, 5)
    text = rule.describe([finding], view, LIMITS)
    assert text.title == "🌩️ Discord gateway outage suspected"
    assert text.body.startswith("6 of 10 shards disconnected: 0, 1, 2, 3, 4, 5")
    verdict = FleetJudge.__new__(FleetJudge)
    verdict.rules, verdict.shard_count = list(DEFAULT_RULES), None
    judged = verdict._judge(view, LIMITS)
    assert [rule.name for rule, _ in judged.alerts] == ["gateway_outage"]  # no disconnects
    announced = fleet(shards, active={"gateway_outage": NOW - 840})
    held = verdict._judge(announced, LIMITS)
    assert held.alerts == [] and held.resolutions == []  # announced once; still down
    mostly_back = {s: gateway() for s in range(10)} | {0: gateway(connected=False, since_s=900)}
    back = verdict._judge(fleet(mostly_back, active={"gateway_outage": NOW - 840}), LIMITS)
    [(name, shard, resolved)] = back.resolutions
    assert (name, shard) == ("gateway_outage", None)
    assert resolved.body == "9 of 10 shards connected again; it lasted 14m"


def test_disconnects_spread_over_hours_are_not_an_outage() -> None:
    shards = {s: gateway(connected=False, since_s=200 + 600 * s) for s in range(6)}
    shards |= {s: gateway() for s in range(6, 10)}
    view = fleet(shards)
    assert GatewayOutageRule().judge(view, LIMITS) == []
    assert len(DisconnectedRule().judge(view, LIMITS)) == 6
    lone = fleet({0: gateway(connected=False, since_s=200)})
    assert GatewayOutageRule().judge(lone, LIMITS) == []  # one shard is not an outage


@pytest.mark.parametrize("reply", [{"total": 1000}, ["total"], None, {"total": "x", "remaining": 1,
                                   "reset_after": 1, "max_concurrency": 1}])  # fmt: skip
def test_a_session_start_limit_reply_that_is_not_one_is_refused(reply: object) -> None:
    with pytest.raises(MalformedData):
        SessionStartLimit.from_discord(reply, read_at=NOW)


def test_the_alerter_records_a_fleet_wide_alert_without_shards() -> None:
    alerter = Alerter.__new__(Alerter)
    alerter.node = "n:1"
    alerter.store = SimpleNamespace(clock=FleetClock())
    from shardmon.rules import AlertText, Finding

    alert = alerter._new_alert("alert", "gateway_outage", [Finding("gateway_outage", None, 6, 5)],
                               AlertText("t", "b"), 3)  # fmt: skip
    assert alert.shards == ()
