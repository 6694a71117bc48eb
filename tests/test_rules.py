from __future__ import annotations

import time

from helpers import sample

from shardmon.rules import (
    DEFAULT_RULES,
    CpuRule,
    FleetView,
    IdentifyStormRule,
    Limits,
    MemoryRule,
    OfflineRule,
    RestartStormRule,
    rule_limits,
    window_words,
)

NOW = time.time()


def fleet(**overrides: object) -> FleetView:
    values: dict[str, object] = {
        "now": NOW,
        "latest": {
            s: sample(s, ts=NOW - 5, memory=40, cpu=10, started_at=NOW - 90_061) for s in range(4)
        },
        "heartbeats": dict.fromkeys(range(4), NOW - 5),
        "restarts_in_window": {},
    }
    values.update(overrides)
    return FleetView(**values)  # type: ignore[arg-type]


def test_memory_rule_names_the_shard_with_the_seed_details() -> None:
    view = fleet(
        latest={**fleet().latest, 2: sample(2, ts=NOW - 5, memory=91.24, started_at=NOW - 90_061)}
    )
    findings = MemoryRule().judge(view, Limits())
    assert [(f.shard, f.value, f.threshold) for f in findings] == [(2, 91.24, 85)]
    text = MemoryRule().describe(findings, view, Limits())
    assert text.title == "⚠️ High Resource Usage Detected"
    assert text.body.splitlines() == [
        "Critical thresholds exceeded: MEMORY",
        "Memory: 91.2% (800/2000 MB)",
        "CPU: 20.0% (2 cores)",
        "Disk: 50.0%",
        "Servers: 100",
        "Uptime: 1d 1h 1m",
        "Shard: 2 (testhost:1)",
    ]


def test_many_shards_in_one_tick_make_one_grouped_message() -> None:
    latest = {s: sample(s, ts=NOW, memory=86 + s * 0.1) for s in range(30)}
    view = fleet(latest=latest)
    findings = MemoryRule().judge(view, Limits())
    assert len(findings) == 30
    body = MemoryRule().describe(findings, view, Limits()).body
    assert "30 shards above 85% memory: 0, 1, 2," in body
    assert "… (+10 more)" in body and "Highest: shard 29 at 88.9%" in body


def test_cpu_rule_and_overrides_per_rule_and_shard() -> None:
    latest = {s: sample(s, ts=NOW, cpu=60) for s in range(3)}
    limits = Limits(overrides={"cpu": 50, "cpu:1": 70})
    assert [f.shard for f in CpuRule().judge(fleet(latest=latest), limits)] == [0, 2]
    assert (
        CpuRule()
        .describe(CpuRule().judge(fleet(latest=latest), limits), fleet(latest=latest), limits)
        .body.startswith("Critical thresholds exceeded: CPU")
    )


def test_stale_samples_are_not_judged_or_resolved() -> None:
    latest = {0: sample(0, ts=NOW - 600, memory=99)}
    view = fleet(latest=latest)
    assert MemoryRule().judge(view, Limits()) == []
    assert MemoryRule().resolution(0, view, Limits()) is None


def test_resolution_only_when_fresh_data_is_below_the_threshold() -> None:
    view = fleet()
    text = MemoryRule().resolution(1, view, Limits())
    assert text is not None and text.title == "✅ Resolved: MEMORY on shard 1"
    assert "back to 40.0% (threshold 85%)" in text.body
    hot = fleet(latest={1: sample(1, ts=NOW, memory=90)})
    assert MemoryRule().resolution(1, hot, Limits()) is None


def test_restart_storm() -> None:
    view = fleet(restarts_in_window={1: 2, 3: 3, 5: 7})
    findings = RestartStormRule().judge(view, Limits())
    assert [(f.shard, f.value) for f in findings] == [(3, 3), (5, 7)]
    single = RestartStormRule().describe(findings[:1], view, Limits())
    assert single.title == "🚨 Restart Storm Detected"
    assert single.body.splitlines() == [
        "3 restarts in the last hour - possible loop detected",
        "Time period: 1 hour",
        "Restart count: 3",
        "Threshold: 3",
        "Shard: 3",
    ]
    grouped = RestartStormRule().describe(findings, view, Limits()).body
    assert "2 shards restarting in a loop: 3, 5" in grouped
    assert RestartStormRule().resolution(1, view, Limits()) is not None
    assert RestartStormRule().resolution(5, view, Limits()) is None


def test_offline_after_three_intervals_without_heartbeat() -> None:
    view = fleet(heartbeats={0: NOW - 5, 1: NOW - 200, 2: NOW - 179})
    findings = OfflineRule().judge(view, Limits())
    assert [f.shard for f in findings] == [1]
    assert "Shard 1: no heartbeat for 3m" in OfflineRule().describe(findings, view, Limits()).body
    assert OfflineRule().resolution(0, view, Limits()) is not None
    assert OfflineRule().resolution(1, view, Limits()) is None


def test_identify_storm() -> None:
    view = fleet(identifies_24h={0: 3, 4: 40})
    findings = IdentifyStormRule().judge(view, Limits())
    assert [(f.shard, f.value) for f in findings] == [(4, 40)]
    text = IdentifyStormRule().describe(findings, view, Limits())
    assert text.title == "🔁 Gateway Identify Storm"
    assert "Shard 4: 40 IDENTIFYs in 24 hours (threshold 25)" in text.body
    assert IdentifyStormRule().resolution(0, view, Limits()) is not None


def test_restart_storm_words_follow_the_window_setting() -> None:
    """SHARDMON_RESTART_WINDOW_S=600: the alert, the grouped alert and the resolution say ten
    minutes, not an hour."""
    limits = Limits({"restart_window_s": 600})
    view = fleet(restarts_in_window={1: 1, 3: 3, 5: 4})
    findings = RestartStormRule().judge(view, limits)
    single = RestartStormRule().describe(findings[:1], view, limits).body.splitlines()
    assert single[:2] == [
        "3 restarts in the last 10 minutes - possible loop detected",
        "Time period: 10 minutes",
    ]
    grouped = RestartStormRule().describe(findings, view, limits).body
    assert grouped.endswith("with 4 restarts in the last 10 minutes")
    resolved = RestartStormRule().resolution(1, view, limits)
    assert resolved is not None and "1 restart(s) in the last 10 minutes now" in resolved.body
    assert "hour" not in " ".join([*single, grouped, resolved.body])


def test_window_words() -> None:
    assert window_words(3600) == ("the last hour", "1 hour")
    assert window_words(600) == ("the last 10 minutes", "10 minutes")
    assert window_words(86400) == ("the last 24 hours", "24 hours")
    assert window_words(7 * 86400) == ("the last 7 days", "7 days")
    assert window_words(90) == ("the last 90 seconds", "90 seconds")


def test_an_override_beats_the_setting_per_shard_then_for_the_fleet() -> None:
    limits = Limits({"memory_critical": 90}, overrides={"memory": 80, "memory:2": 95})
    rule = MemoryRule()
    assert (limits.threshold(rule), limits.threshold(rule, 1), limits.threshold(rule, 2)) == (
        80,
        80,
        95,
    )
    assert Limits({"memory_critical": 90}).threshold(rule, 1) == 90
    assert Limits().threshold(rule) == 85  # the rule's own default


def test_offline_is_three_sample_intervals_and_an_override_moves_only_the_offline_alert() -> None:
    assert Limits(interval_s=60).offline_after_s == 180
    assert Limits(interval_s=1).offline_after_s == 3
    limits = Limits(interval_s=60, overrides={"offline": 600})
    assert limits.offline_after_s == 180  # staleness and the fleet's figures: 3 intervals
    assert limits.threshold(OfflineRule()) == 600
    stale = fleet(latest={0: sample(0, ts=NOW - 300, memory=95)}, heartbeats={0: NOW - 300})
    assert MemoryRule().judge(stale, limits) == []  # a 5-minute-old sample is not judged
    assert OfflineRule().judge(stale, limits) == []  # and the shard is not offline yet


def test_every_rule_owns_its_metadata() -> None:
    """Each rule names its threshold's unit, bounds and default, and every setting it owns is
    a distinct SHARDMON_* name: the settings, the CLI and the validation are built from these."""
    names = [rule.name for rule in DEFAULT_RULES]
    assert len(set(names)) == len(names)
    settings = [limit.setting for limit in rule_limits(DEFAULT_RULES)]
    assert len(set(settings)) == len(settings)
    for rule in DEFAULT_RULES:
        limit = rule.threshold
        assert (limit.unit and limit.low <= limit.default <= limit.high) or limit.setting is None
