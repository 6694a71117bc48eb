"""Incidents in words for anyone: the outages and restart storms of the alert log, each with
when it began, how long it lasted and which shards it touched; nothing else of the alerts (no
error, host, version or figure).

An incident is made of the conditions of one rule (`<rule>[:<shard>]`) from their first alert
to their "resolved" record: a condition alerted again every dedupe window stays one condition,
and a condition that begins while another of the same rule is open joins its incident (a
gateway outage whose shards drop over two ticks is one). Only rules with an `incident` name
appear (`Rule.incident`); resources and the IDENTIFY budget stay with the operators.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shardmon.rules import DEFAULT_RULES, Rule
from shardmon.store import parse_condition

__all__ = ["Incident", "incidents"]


@dataclass(slots=True)
class Incident:
    """One incident: its words, its shards (none for a fleet-wide one), when it began and
    ended (None: still going on, or its end fell out of the alert log)."""

    rule: str
    title: str
    started: float
    shards: list[int] = field(default_factory=list)
    ended: float | None = None
    ongoing: bool = False
    _open: set[int | None] = field(default_factory=set, repr=False)

    def public(self, now: float) -> dict[str, Any]:
        """As the status page shows it: words, shards and times only."""
        end = now if self.ongoing else self.ended
        return {
            "title": self.title,
            "shards": sorted(self.shards),
            "started": self.started,
            "ended": None if self.ongoing else self.ended,
            "ongoing": self.ongoing,
            "lasted_s": None if end is None else max(0.0, end - self.started),
        }


def incidents(
    records: Sequence[Mapping[str, Any]],
    active: Mapping[str, float],
    *,
    rules: Sequence[Rule] = DEFAULT_RULES,
    limit: int = 10,
) -> list[Incident]:
    """The newest `limit` incidents of the alert records (given newest first, as the
    `alerts` list holds them) and of the conditions still announced (`active_alerts`:
    `<rule>[:<shard>]` -> since), newest first."""
    titles = {rule.name: rule.incident for rule in rules if rule.incident}
    open_by_rule: dict[str, Incident] = {}
    found: list[Incident] = []
    for record in sorted(records, key=lambda r: float(r["ts"])):
        rule, ts = str(record["rule"]), float(record["ts"])
        if rule not in titles:
            continue
        shards: list[int | None] = list(record["shards"]) or [None]
        current = open_by_rule.get(rule)
        if record["kind"] == "resolved":
            if current is not None:
                current._open.difference_update(shards)
                current.ended = max(current.ended or ts, ts)
                if not current._open:
                    del open_by_rule[rule]
            continue
        if current is None:
            current = open_by_rule[rule] = Incident(rule, titles[rule], ts)
            found.append(current)
        since = record.get("since")
        if isinstance(since, int | float) and since < current.started:
            current.started = float(since)  # the condition began before its alert
        for shard in shards:
            current._open.add(shard)
            if shard is not None and shard not in current.shards:
                current.shards.append(shard)
        current.ended = ts  # at least until its last alert
    for condition, since in active.items():
        rule, shard = parse_condition(condition)
        if rule not in titles:
            continue
        current = open_by_rule.get(rule)
        if current is None:  # its alert fell out of the capped log: begin it where it began
            current = open_by_rule[rule] = Incident(rule, titles[rule], since)
            found.append(current)
        current.ongoing = True
        current.started = min(current.started, since)
        if shard is not None and shard not in current.shards:
            current.shards.append(shard)
    return sorted(found, key=lambda incident: incident.started, reverse=True)[:limit]
