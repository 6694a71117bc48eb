"""The command line's views and the cog's embeds are pure: tested on data made by hand."""

from __future__ import annotations

import time

from helpers import event, sample

from shardmon import views
from shardmon.discordpy.embeds import restart_stats_embed, shards_pages
from shardmon.keys import Keys
from shardmon.models import GatewayState, SessionStartLimit
from shardmon.rules import DEFAULT_RULES, Limits, storm_report
from shardmon.settings import load_settings
from shardmon.stats import RestartStats, summarize_fleet
from shardmon.store import FleetStatus, GatewayCounts, Leadership, PruneResult

NOW = 1_800_000_000.0


def _status() -> FleetStatus:
    latest = {0: sample(0, ts=NOW - 5, started_at=NOW - 3700), 1: sample(1, ts=NOW - 900)}
    beats = {0: NOW - 5, 1: NOW - 900}
    summary = summarize_fleet(latest, beats, now=NOW, offline_after_s=180)
    gateway = {0: GatewayCounts(3, 1), 1: GatewayCounts()}
    return FleetStatus(summary, gateway, Leadership("host:1", 12_300, 7), NOW)


def test_status_view_names_every_shard_and_the_leader() -> None:
    settings = load_settings(shard_count=3, deployment="acme")
    text = views.status_view(_status(), settings)
    lines = text.splitlines()
    assert lines[0] == (
        "deployment acme: 🔴 needs attention: 1 shard(s) offline, 1 shard(s) never seen"
    )
    assert "🟢 1 up, 🔌 0 disconnected, 🔴 1 offline, ⚪ 1 never seen (3 configured)" in lines[1]
    assert "host:1 (epoch 7, lease 12.3 s left)" in text
    rows = [line.split() for line in lines if line.strip().startswith(("0 ", "1 "))]
    assert [row[:3] for row in rows] == [["0", "🟢", "up"], ["1", "🔴", "down"]]
    assert rows[0][-2:] == ["3", "1"]  # IDENTIFYs and RESUMEs of 24 h

    as_json = views.status_view(_status(), settings, as_json=True)
    assert (as_json["online"], as_json["offline"], as_json["leader"], as_json["epoch"]) == (
        1, 1, "host:1", 7
    )  # fmt: skip
    assert [s["identifies_24h"] for s in as_json["shards"]] == [3, 0]
    assert as_json["healthy"] is False and len(as_json["attention"]) == 2


def test_a_fleet_needs_attention_when_a_shard_is_down_or_no_node_leads() -> None:
    latest = {0: sample(0, ts=NOW - 5), 1: sample(1, ts=NOW - 5)}
    summary = summarize_fleet(latest, dict.fromkeys(latest, NOW - 5), now=NOW, offline_after_s=180)
    healthy = FleetStatus(summary, {}, Leadership("host:1", 12_300, 7), NOW)
    limits = load_settings().limits
    assert views.attention_reasons(healthy, 2, limits) == []
    leaderless = FleetStatus(summary, {}, Leadership(None, 0, 0), NOW)
    assert views.attention_reasons(leaderless, 2, limits) == ["no leader"]
    assert views.attention_reasons(_status(), 3, limits) == [
        "1 shard(s) offline", "1 shard(s) never seen",
    ]  # fmt: skip
    # Shard 1 is down past the 120 s threshold and shard 2 a zombie; shard 3, resuming after
    # a short drop, is what discord.py does on its own.
    assert views.attention_reasons(_gateway_status(), 4, limits) == [
        "1 shard(s) disconnected", "1 shard(s) zombie",
    ]  # fmt: skip


def _gateway_status() -> FleetStatus:
    def gw(**fields: object) -> GatewayState:
        return GatewayState(**{"connected": True, "since_s": 60, "last_connect": NOW - 60,
                               "dispatch_age_s": 2, **fields})  # fmt: skip

    gateways = {0: gw(), 1: gw(connected=False, since_s=175), 2: gw(dispatch_age_s=2000),
                3: gw(connected=False, since_s=30)}  # fmt: skip
    latest = {s: sample(s, ts=NOW - 5, gateway=g) for s, g in gateways.items()}
    summary = summarize_fleet(latest, dict.fromkeys(latest, NOW - 5), now=NOW, offline_after_s=180)
    limit = SessionStartLimit(total=1000, remaining=812, reset_after_ms=18_180_000,
                              max_concurrency=1, read_at=NOW, synthetic=True)  # fmt: skip
    counts = dict.fromkeys(latest, GatewayCounts())
    return FleetStatus(summary, counts, Leadership("host:1", 12_300, 7), NOW, limit)


def test_status_view_shows_each_gateway_and_the_identify_budget() -> None:
    settings = load_settings(shard_count=4)
    text = views.status_view(_gateway_status(), settings)
    lines = text.splitlines()
    assert lines[0].endswith("🔴 needs attention: 1 shard(s) disconnected, 1 shard(s) zombie")
    assert "🟢 2 up, 🔌 2 disconnected, 🔴 0 offline (4 configured)" in lines[1]
    assert (
        "  identify  812 of 1,000 left, resets in 5h 3m, max_concurrency 1: a full restart of "
        "4 shards takes 20s (synthetic: the demo's, not Discord's)"
    ) in lines
    rows = {line.split()[0]: line for line in lines if line[:5].strip().isdigit()}
    assert "🟢 up" in rows["0"] and "connected" in rows["0"]
    assert "🔌 disconnected" in rows["1"] and "disconnected for 3m" in rows["1"]
    assert "🧟 zombie" in rows["2"]
    assert "🟡 resuming" in rows["3"]
    as_json = views.status_view(_gateway_status(), settings, as_json=True)
    assert [s["gateway"] for s in as_json["shards"]] == [
        "connected", "disconnected for 3m", "zombie", "resuming",
    ]  # fmt: skip
    assert as_json["session_start_limit"]["remaining"] == 812


def test_the_shards_embed_shows_each_gateway_and_the_identify_budget() -> None:
    status = _gateway_status()
    [page] = shards_pages(status.summary, status.gateway, limits=Limits(), shard_count=4,
                          session_limit=status.session_limit, now=NOW)  # fmt: skip
    assert page.title == "🧩 Shards: 2 up, 2 disconnected, 0 offline"
    lines = (page.description or "").splitlines()
    assert lines[0].startswith("🟢 `   0` 45 ms")
    assert lines[1].startswith("🔌 `   1` disconnected for 3m · 45 ms")
    assert lines[2].startswith("🧟 `   2` zombie · ")
    assert page.footer.text is not None and page.footer.text.startswith(
        "IDENTIFY budget: 812 of 1,000 left, resets in 5h 3m"
    )
    [unknown] = shards_pages(status.summary, status.gateway, limits=Limits(), shard_count=4,
                             now=NOW)  # fmt: skip
    assert "unknown (the leader reads it" in str(unknown.footer.text)


def test_stats_view_says_the_storm_window_and_threshold_of_the_settings() -> None:
    stats = RestartStats(8, {"crash": 6, "startup": 2}, 2.0, 60.0, 5, 8, NOW - 86400)
    limits = Limits({"restart_window_s": 600, "restart_alert_threshold": 4})
    storms = storm_report({3: 5, 4: 1}, limits, NOW)
    text = views.stats_view(stats, storms)
    assert "🚨 restart storm (4+ in 600 s): shard 3 (5)" in text
    assert "by type: crash 6, startup 2" in text
    assert views.stats_view(stats, storms, as_json=True)["storms"] == {3: 5}
    calm = storm_report({4: 1}, limits, NOW)
    assert views.stats_view(stats, calm).endswith("🟢 no restart storm")


def test_the_storm_embed_says_the_window_of_the_settings() -> None:
    stats = RestartStats(8, {"crash": 8}, 2.0, 60.0, 5, 8, NOW - 86400)
    storms = storm_report({3: 5}, Limits({"restart_window_s": 600}), NOW)
    fields = {f.name: f.value for f in restart_stats_embed(stats, storms).fields}
    assert fields["Storm status"] == "🚨 3+ restarts in the last 10 minutes: shard 3 (5)"


def test_thresholds_view_has_a_row_per_rule_from_the_rules_themselves() -> None:
    limits = Limits({"memory_critical": 90}, interval_s=60)
    overrides = {"memory": "95.0", "cpu:3": "70.0"}
    text = views.thresholds_view(limits, overrides)
    for rule in DEFAULT_RULES:
        assert f"{rule.name} " in text and rule.threshold.unit in text
    memory_row = next(line.split() for line in text.splitlines() if line.startswith("memory"))
    assert memory_row == ["memory", "90", "percent", "95.0"]
    as_json = views.thresholds_view(limits, overrides, as_json=True)
    assert as_json["settings"] == {
        "memory": 90, "cpu": 85, "restart_storm": 3, "offline": 180, "identify_storm": 25,
        "disconnected": 120, "zombie": 900, "loop_stall": 1, "identify_budget": 25,
        "gateway_outage": 0.5, "restarts_held": 0,
    }  # fmt: skip
    assert "cpu:3" in text  # the per-shard overrides have a table of their own


def test_keys_view_has_a_redis_cli_command_for_every_key_of_the_layout() -> None:
    layout = Keys("acme").layout()
    counts = {info.name: 1 for info in layout}
    text = views.keys_view(layout, counts, "redis-cli -u redis://h:6379/0")
    for info in layout:
        assert info.key in text
    assert "--scan --pattern 'shardmon:{acme}:samples:*'" in text
    assert "HGETALL 'shardmon:{acme}:latest'" in text
    rows = views.keys_view(layout, counts, "redis-cli", as_json=True)
    assert len(rows) == len(layout) and all(row["count"] == 1 for row in rows)


def test_restarts_alerts_performance_and_prune_views() -> None:
    crash = event("crash", shards=(2,), at=NOW, error="boom")
    assert "crash" in views.restarts_view([crash]) and "boom" in views.restarts_view([crash])
    assert views.restarts_view([]) == "no restarts"
    record = {"ts": NOW, "kind": "alert", "rule": "memory", "shards": [1], "epoch": 3,
              "delivered": True, "delivery": {"log": "ok"}}  # fmt: skip
    assert "memory" in views.alerts_view([record]) and views.alerts_view([]) == "no alerts"
    pruned = PruneResult(before=time.time() - 86400, fleet_removed=4, shard_removed=5)
    assert "4 removed from Redis (5 from shard sets)" in views.prune_view(pruned, 0, 2, "a.gz")
    assert views.prune_view(pruned, 3, 2, "a.gz", as_json=True)["archive"] == "a.gz"


def _skewed_status() -> FleetStatus:
    """Seven nodes: one right, one 3 ms off, five off by more than 2 s (one sample without a
    measured clock, from an older monitor, is left out)."""
    skews = {"ok:1": 0.0, "near:2": 0.003, "a:3": 3600.0, "b:4": -600.0, "c:5": 2.5,
             "d:6": -30.0, "e:7": 90.0, "f:8": -4.0}  # fmt: skip
    latest = {shard: sample(shard, ts=NOW - 1, node=node, clock_skew_s=skew)
              for shard, (node, skew) in enumerate(skews.items())}  # fmt: skip
    latest[8] = sample(8, ts=NOW - 1, node="old:9")
    summary = summarize_fleet(latest, dict.fromkeys(latest, NOW - 1), now=NOW, offline_after_s=180)
    return FleetStatus(summary, {s: GatewayCounts() for s in latest}, Leadership("ok:1", 1, 1), NOW)


def test_the_clocks_of_the_nodes_are_shown_worst_first_for_operators() -> None:
    settings = load_settings(shard_count=9)
    text = views.status_view(_skewed_status(), settings)
    [line] = [line for line in text.splitlines() if line.startswith("  clocks")]
    assert line == (
        "  clocks    ⚠️ 6 of 8 node(s) off by over 2 s: a:3 +3600.0 s, b:4 -600.0 s, "
        "e:7 +90.0 s, d:6 -30.0 s, f:8 -4.0 s and 1 more"
    )
    as_json = views.status_view(_skewed_status(), settings, as_json=True)
    assert as_json["clock_skew_s"]["a:3"] == 3600.0 and "old:9" not in as_json["clock_skew_s"]
    [page] = shards_pages(_skewed_status().summary, {}, limits=Limits(), shard_count=9, now=NOW)
    [field] = page.fields
    assert field.name == "Clocks" and field.value == line.removeprefix("  clocks    ")
    calm = views.status_view(_status(), settings)
    assert "  clocks    not measured yet" in calm


def test_restarts_are_listed_in_fleet_time_with_the_skewed_hosts_marked() -> None:
    right = event("crash", at=NOW - 60)
    skewed = event("deployment", at=NOW + 3600).with_fleet_time(NOW)
    lines = views.restarts_view([skewed, right]).splitlines()
    assert lines[2].startswith("2027-01-15 08:00:00*  deployment")
    assert lines[3].startswith("2027-01-15 07:59:00   crash")
    assert lines[-1].startswith("* the host's clock was off")
    assert views.restarts_view([right]).splitlines()[-1].startswith("2027-01-15 07:59:00")
