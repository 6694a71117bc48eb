"""The leader's loop: every interval, judge the fleet by the rules and alert or resolve."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace

from shardmon.alerts import Alerter
from shardmon.failures import REDIS_FAILURES, classify
from shardmon.leader import LeaderElection
from shardmon.models import MalformedData, SessionStartLimit
from shardmon.rules import DEFAULT_RULES, AlertText, Finding, FleetView, Limits, Rule
from shardmon.states import FleetGrid, judge_fleet
from shardmon.stats import FleetSummary
from shardmon.store import Store, parse_condition
from shardmon.tasks import Stopping

#: The leader reads Discord's session start limit at most this often (and on its first tick).
SESSION_LIMIT_EVERY_S = 300
SESSION_LIMIT_TIMEOUT_S = 10
#: Reads the bot's session start limit from Discord: the `session_start_limit` object of
#: GET /gateway/bot (the cog's reads it through discord.py).
SessionLimitSource = Callable[[], Awaitable[object]]

__all__ = ["SESSION_LIMIT_EVERY_S", "FleetJudge", "SessionLimitSource"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Verdict:
    """One tick's judgement, made off the event loop: the (filtered) fleet, the findings to
    alert by rule, the resolutions owed, the fleet figures for `/uptime` and the grid of the
    dashboard."""

    fleet: FleetView
    alerts: list[tuple[Rule, list[Finding]]]
    resolutions: list[tuple[str, int | None, AlertText]]
    summary: FleetSummary
    grid: FleetGrid


class FleetJudge:
    """Judges the fleet while `election` says this node leads; idles otherwise. Each tick
    also keeps the pre-aggregated history (`rollup:h:<hour>`), fleet figures (`fleet`) and
    grid (`shard_states`, `shard_nodes`).

    Args:
        store: the deployment's store (reads the fleet in one round trip a tick).
        election: tells whether this node leads, and the epoch to fence alerts with.
        alerter: claims and sends alerts.
        limits: the settings' values of the rules (runtime overrides are read each tick).
        interval_s: seconds between ticks (the sample interval of `limits` by default).
        rules: what to judge (`DEFAULT_RULES`).
        shard_count: the fleet's size; heartbeats of shard ids beyond it are ignored.
        session_limits: reads the bot's session start limit from Discord (its
            `session_start_limit` object); the leader calls it on its first tick and then at
            most every SESSION_LIMIT_EVERY_S, and stores what it read for every view.
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
        session_limits: SessionLimitSource | None = None,
    ) -> None:
        self.store = store
        self.election = election
        self.alerter = alerter
        self.limits = limits
        self.interval_s = limits.interval_s if interval_s is None else interval_s
        self.rules = list(rules)
        self.shard_count = shard_count
        self.session_limits = session_limits
        self.ticks = 0
        self._judged_epoch: int | None = None
        self._next_limit_read = 0.0  # monotonic

    async def tick(self) -> bool:
        """Judge once if leading; returns whether it judged."""
        epoch = self.election.epoch
        if epoch is None or not self.election.is_leader:
            return False
        await self._read_session_limit()
        view = await self.store.leader_view(self.limits, self.shard_count or 0)
        fleet = view.fleet
        limits = replace(self.limits, overrides=view.overrides)
        # The rules and the fleet figures cost CPU in proportion to the shard count (tens of
        # ms at 5,000 shards): a worker thread keeps the bot's event loop free meanwhile.
        verdict = await asyncio.to_thread(self._judge, fleet, limits)
        for rule, findings in verdict.alerts:
            await self.alerter.alert(rule, findings, verdict.fleet, limits, epoch)
        for rule_name, shard, text in verdict.resolutions:
            await self.alerter.resolve(rule_name, shard, text, epoch)
        await self._roll_up_hours(fleet.now)
        await self.store.write_fleet_totals(verdict.summary, verdict.grid)
        if epoch != self._judged_epoch:
            log.info("epoch %d: first judgement, %d shards", epoch, len(verdict.fleet.latest))
            self._judged_epoch = epoch
        self.ticks += 1
        return True

    def _judge(self, fleet: FleetView, limits: Limits) -> _Verdict:
        """What to alert, what to resolve, the fleet's figures and grid (pure: runs in a
        thread)."""
        judgement = judge_fleet(fleet, limits, self.rules)
        active_by_rule: dict[str, list[int | None]] = {}
        for field in judgement.fleet.active:
            rule_name, shard_id = parse_condition(field)
            active_by_rule.setdefault(rule_name, []).append(shard_id)
        # Inhibition: a rule that fires, or was announced and is not resolved, holds the
        # alerts of the rules it names (an outage holds the per-shard disconnects).
        held = {
            name
            for rule, findings in judgement.findings
            if findings or rule.name in active_by_rule
            for name in rule.inhibits
        }
        alerts: list[tuple[Rule, list[Finding]]] = []
        resolutions: list[tuple[str, int | None, AlertText]] = []
        for rule, findings in judgement.findings:
            if findings and rule.name not in held:
                alerts.append((rule, findings))
            firing = {f.shard for f in findings}
            for shard in active_by_rule.get(rule.name, []):
                text = None if shard in firing else rule.resolution(shard, judgement.fleet, limits)
                if text is not None:
                    resolutions.append((rule.name, shard, text))
        return _Verdict(judgement.fleet, alerts, resolutions, judgement.summary, judgement.grid)

    async def _read_session_limit(self) -> None:
        """Read and store the session start limit when due (SESSION_LIMIT_EVERY_S after the last
        read that worked): a failed read or a reply that is not a session start limit is logged
        and skipped, the stored one stays, and the next tick tries again."""
        if self.session_limits is None or time.monotonic() < self._next_limit_read:
            return
        try:
            async with asyncio.timeout(SESSION_LIMIT_TIMEOUT_S):
                payload = await self.session_limits()
            limit = SessionStartLimit.from_discord(payload, read_at=self.store.clock.now())
        except MalformedData as exc:
            log.warning("session start limit skipped: %s", exc)
            return
        except Exception as exc:  # noqa: BLE001 - an HTTP error or a timeout, from Discord
            log.warning("could not read the session start limit: %s", exc or type(exc).__name__)
            return
        await self.store.write_session_limit(limit)
        self._next_limit_read = time.monotonic() + SESSION_LIMIT_EVERY_S  # a failure: next tick
        log.info(
            "session start limit: %d of %d left, max_concurrency %d",
            limit.remaining, limit.total, limit.max_concurrency,
        )  # fmt: skip

    async def _roll_up_hours(self, now: float) -> None:
        """Keep the hourly history: this hour, and the last one during a new hour's first
        5 minutes (so that its last minutes get in)."""
        hour = int(now // 3600 * 3600)
        await self.store.roll_up_hour(hour)
        if now - hour < 300:
            await self.store.roll_up_hour(hour - 3600)

    async def run(self, stopping: Stopping) -> None:
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
            await stopping.pause(self.interval_s)
