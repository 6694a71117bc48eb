"""The leader's loop: every interval, judge the fleet by the rules and alert or resolve."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

from shardmon.alerts import Alerter
from shardmon.failures import REDIS_FAILURES, classify
from shardmon.leader import LeaderElection
from shardmon.rules import DEFAULT_RULES, AlertText, Finding, FleetView, Limits, Rule
from shardmon.stats import FleetSummary, summarize_fleet
from shardmon.store import Store

__all__ = ["FleetJudge"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Verdict:
    """One tick's judgement, made off the event loop: the (filtered) fleet, the findings to
    alert by rule, the resolutions owed, and the fleet figures for `/uptime`."""

    fleet: FleetView
    alerts: list[tuple[Rule, list[Finding]]]
    resolutions: list[tuple[str, int, AlertText]]
    summary: FleetSummary


class FleetJudge:
    """Judges the fleet while `election` says this node leads; idles otherwise. Each tick
    also keeps the pre-aggregated history (`rollup:h:<hour>`) and fleet figures (`fleet`).

    Args:
        store: the deployment's store (reads the fleet in one round trip a tick).
        election: tells whether this node leads, and the epoch to fence alerts with.
        alerter: claims and sends alerts.
        limits: the settings' values of the rules (runtime overrides are read each tick).
        interval_s: seconds between ticks (the sample interval of `limits` by default).
        rules: what to judge (`DEFAULT_RULES`: memory, CPU, restart storm, offline, identify).
        shard_count: the fleet's size; heartbeats of shard ids beyond it are ignored.
    """

    def __init__(
        self,
        store: Store,
        election: LeaderElection,
        alerter: Alerter,
        limits: Limits,
        interval_s: float | None = None,
        rules: Sequence[Rule] = DEFAULT_RULES,
        shard_count: int | None = None,
    ) -> None:
        self.store = store
        self.election = election
        self.alerter = alerter
        self.limits = limits
        self.interval_s = limits.interval_s if interval_s is None else interval_s
        self.rules = list(rules)
        self.shard_count = shard_count
        self.ticks = 0
        self._judged_epoch: int | None = None

    async def tick(self) -> bool:
        """Judge once if leading; returns whether it judged."""
        epoch = self.election.epoch
        if epoch is None or not self.election.is_leader:
            return False
        view = await self.store.leader_view(self.limits.restart_window_s, self.shard_count or 0)
        fleet = view.fleet
        limits = replace(self.limits, overrides=view.overrides)
        # The rules and the fleet figures cost CPU in proportion to the shard count (tens of
        # ms at 5,000 shards): a worker thread keeps the bot's event loop free meanwhile.
        verdict = await asyncio.to_thread(self._judge, fleet, limits, view.active)
        for rule, findings in verdict.alerts:
            await self.alerter.alert(rule, findings, verdict.fleet, limits, epoch)
        for rule_name, shard, text in verdict.resolutions:
            await self.alerter.resolve(rule_name, shard, text, epoch)
        await self._roll_up_hours(fleet.now)
        await self.store.write_fleet_totals(verdict.summary)
        if epoch != self._judged_epoch:
            log.info("epoch %d: first judgement, %d shards", epoch, len(verdict.fleet.latest))
            self._judged_epoch = epoch
        self.ticks += 1
        return True

    def _judge(self, fleet: FleetView, limits: Limits, active: Sequence[str]) -> _Verdict:
        """What to alert, what to resolve, and the fleet's figures (pure: runs in a thread)."""
        if self.shard_count is not None:  # shards of a smaller, resharded fleet are not offline
            count = self.shard_count
            fleet = replace(
                fleet,
                heartbeats={s: t for s, t in fleet.heartbeats.items() if s < count},
                latest={s: sample for s, sample in fleet.latest.items() if s < count},
            )
        active_by_rule: dict[str, list[int]] = {}
        for field in active:
            rule_name, _, shard_id = field.rpartition(":")
            if shard_id.isdigit():
                active_by_rule.setdefault(rule_name, []).append(int(shard_id))
        alerts: list[tuple[Rule, list[Finding]]] = []
        resolutions: list[tuple[str, int, AlertText]] = []
        for rule in self.rules:
            findings = rule.judge(fleet, limits)
            if findings:
                alerts.append((rule, findings))
            firing = {f.shard for f in findings}
            for shard in active_by_rule.get(rule.name, []):
                text = None if shard in firing else rule.resolution(shard, fleet, limits)
                if text is not None:
                    resolutions.append((rule.name, shard, text))
        summary = summarize_fleet(
            fleet.latest, fleet.heartbeats, now=fleet.now, offline_after_s=limits.offline_after_s
        )
        return _Verdict(fleet, alerts, resolutions, summary)

    async def _roll_up_hours(self, now: float) -> None:
        """Keep the hourly history: this hour, and the last one during a new hour's first
        5 minutes (so that its last minutes get in)."""
        hour = int(now // 3600 * 3600)
        await self.store.roll_up_hour(hour)
        if now - hour < 300:
            await self.store.roll_up_hour(hour - 3600)

    async def run(self, stopping: asyncio.Event) -> None:
        """Tick every interval until `stopping` is set; errors are logged, the loop goes on."""
        while not stopping.is_set():
            try:
                await self.tick()
            except REDIS_FAILURES as exc:
                failure = classify(exc)
                if failure.outage:
                    log.warning("leader tick skipped, Redis unavailable (%s)", failure)
                else:
                    log.error("leader tick skipped, Redis refused: %s", failure)
            except Exception:  # the judge must outlive any one bad tick; logged here
                log.exception("leader tick failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.interval_s)
