"""The `shardmon` command: the fleet from Redis, for operators and deploy scripts.

Every command has `--help`; read commands take `--json`. Errors (a wrong Redis URL, a bad
argument, invalid settings) are one clear line and an exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from shardmon.connection import create_redis, redact_url
from shardmon.failures import REDIS_FAILURES, classify
from shardmon.journal import Journal
from shardmon.keys import Keys
from shardmon.models import MalformedData, RestartType, parse_event
from shardmon.render import format_uptime, status_emoji, table
from shardmon.rules import RestartStormRule
from shardmon.settings import Settings, SettingsError, load_settings
from shardmon.stats import Spread
from shardmon.store import Store

__all__ = ["build_parser", "main"]

#: Runtime-overridable rules: name -> (what the value is, smallest, largest).
THRESHOLD_RULES = {
    "memory": ("percent", 1.0, 100.0),
    "cpu": ("percent", 1.0, 100.0),
    "restart_storm": ("restarts in the window", 1.0, 10_000.0),
    "identify_storm": ("IDENTIFYs in 24 h", 1.0, 1000.0),
    "offline": ("seconds without heartbeat", 1.0, 7 * 86400.0),
}


class CliError(Exception):
    """A problem to report in one line (exit code 1)."""


def _bounded_int(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is outside {low}..{high}")
        return value

    return parse


def _duration(text: str) -> float:
    """`90d`, `12h`, `30m`, `45s` or plain seconds."""
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    number, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    try:
        value = float(number) * units[unit]
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 90d, 12h or 30m")
    return value


def _meta(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not key=value")
    return key, value


def _spread(spread: Spread | None, warn: float, critical: float) -> str:
    if spread is None:
        return "no data"
    emoji = status_emoji(spread.average, warn, critical)
    return f"{emoji} {spread.average:.1f}% avg, {spread.peak:.1f}% peak"


def _ago(ts: float | None, now: float) -> str:
    return "never" if ts is None else f"{format_uptime(now - ts)} ago"


# -- commands ---------------------------------------------------------------------------------


async def status(store: Store, settings: Settings, args: argparse.Namespace) -> Any:
    """The /uptime and /shards views."""
    now = time.time()
    summary = await store.fleet_summary(3 * settings.sample_interval_s, now=now)
    gateway = await store.gateway_counts((s.shard for s in summary.shards), now=now)
    node, lease_ms, epoch = await store.leader()
    if args.json:
        return {
            "online": summary.online, "offline": summary.offline, "guilds": summary.guilds,
            "users": summary.users, "leader": node, "epoch": epoch,
            "memory": summary.memory and asdict(summary.memory),
            "cpu": summary.cpu and asdict(summary.cpu),
            "disk": summary.disk and asdict(summary.disk),
            "shards": [
                {"shard": s.shard, "online": s.online, "last_seen": s.last_seen,
                 "sample": s.sample and s.sample.model_dump(),
                 "identifies_24h": gateway.get(s.shard, (0, 0))[0],
                 "resumes_24h": gateway.get(s.shard, (0, 0))[1]}
                for s in summary.shards
            ],
        }  # fmt: skip
    warn, critical = settings.warn_level, settings.memory_critical
    seen = {s.shard for s in summary.shards}
    never = [s for s in range(settings.shard_count) if s not in seen]
    health = "🔴 needs attention" if summary.offline or never else "🟢 healthy"
    uptime = format_uptime(now - summary.oldest_start) if summary.oldest_start else "unknown"
    lines = [
        f"deployment {settings.deployment}: {health}",
        f"  shards    🟢 {summary.online} online, 🔴 {summary.offline} offline"
        + (f", ⚪ {len(never)} never seen" if never else "")
        + f" ({settings.shard_count} configured)",
        f"  uptime    {uptime} (oldest shard)",
        f"  memory    {_spread(summary.memory, warn, critical)}",
        f"  cpu       {_spread(summary.cpu, warn, settings.cpu_critical)}",
        f"  disk      {_spread(summary.disk, warn, critical)}",
        f"  servers   {summary.guilds:,}   users {summary.users:,}",
        f"  leader    {node or 'none'} (epoch {epoch}, lease {lease_ms / 1000:.1f} s left)",
        "",
    ]
    rows = []
    for s in summary.shards:
        sample = s.sample
        identifies, resumes = gateway.get(s.shard, (0, 0))
        rows.append([
            s.shard, "🟢 up" if s.online else "🔴 down",
            f"{sample.cpu:.1f}" if sample else "-", f"{sample.memory:.1f}" if sample else "-",
            f"{sample.latency_ms:.0f}" if sample and sample.latency_ms is not None else "-",
            f"{sample.guilds:,}" if sample else "-",
            format_uptime(now - sample.started_at) if sample and sample.started_at else "-",
            _ago(s.last_seen, now), identifies, resumes,
        ])  # fmt: skip
    headers = [
        "shard",
        "status",
        "cpu%",
        "mem%",
        "ms",
        "guilds",
        "uptime",
        "seen",
        "id/24h",
        "res/24h",
    ]
    return "\n".join(lines) + table(headers, rows)


async def restarts(store: Store, settings: Settings, args: argparse.Namespace) -> Any:
    events = await store.restart_history(args.limit, shard=args.shard, restart_type=args.type)
    if args.json:
        return [e.model_dump(mode="json") for e in events]
    rows = [
        [e.timestamp[:19].replace("T", " "), e.type.value, ",".join(map(str, e.shards)),
         e.version, e.node, str(e.metadata.get("error", ""))[:50]]
        for e in events
    ]  # fmt: skip
    return (
        table(["time (UTC)", "type", "shards", "version", "node", "error"], rows) or "no restarts"
    )


async def stats(store: Store, settings: Settings, args: argparse.Namespace) -> Any:
    result = await store.restart_stats()
    fleet, overrides = await store.storm_view(settings.restart_window_s)
    limits = replace(settings.monitor_config().thresholds, overrides=overrides)
    threshold = limits.value("restart_storm", -1, limits.restart_count)  # the fleet's own
    storms = {f.shard: int(f.value) for f in RestartStormRule().judge(fleet, limits)}
    if args.json:
        return {**asdict(result), "storms": storms}
    lines = [
        f"total {result.total}; last hour {result.last_hour}; last 24 h {result.last_24h}",
        f"per day {result.per_day:.1f}; per month {result.per_month:.1f}",
        "by type: " + (", ".join(f"{t} {n}" for t, n in result.by_type.items()) or "none"),
    ]
    if storms:
        names = ", ".join(f"shard {s} ({n})" for s, n in sorted(storms.items()))
        lines.append(f"🚨 restart storm ({threshold:g}+ in {settings.restart_window_s} s): {names}")
    else:
        lines.append("🟢 no restart storm")
    if result.skipped:
        lines.append(f"({result.skipped} malformed entries skipped)")
    return "\n".join(lines)


async def performance(store: Store, settings: Settings, args: argparse.Namespace) -> Any:
    if args.shard is None and args.hours > 1:
        result = await store.fleet_performance_hours(args.hours)
        scope = f"fleet, last {args.hours} hours (hourly rollups)"
    elif args.shard is None:
        result, scope = await store.fleet_performance(window_s=3600), "fleet, last hour"
    else:
        result, scope = await store.shard_performance(args.shard), f"shard {args.shard}"
    if args.json:
        return {"scope": scope, **asdict(result)}

    def line(name: str, spread: Spread | None, unit: str = "%") -> list[str]:
        if spread is None:
            return [name, "-", "-", "-"]
        return [name, *(f"{v:.1f}{unit}" for v in (spread.average, spread.peak, spread.low))]

    rows = [
        line("memory", result.memory),
        line("cpu", result.cpu),
        line("latency", result.latency_ms, " ms"),
    ]
    return f"{scope}: {result.samples} samples\n" + table(["", "average", "peak", "low"], rows)


async def alerts(store: Store, settings: Settings, args: argparse.Namespace) -> Any:
    records = await store.recent_alerts(args.limit)
    if args.json:
        return records
    rows = [
        [time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(r["ts"]))), r["kind"], r["rule"],
         ",".join(map(str, r.get("shards", []))), r.get("epoch", ""),
         "yes" if r.get("delivered") else "NO",
         "; ".join(f"{k}: {v}" for k, v in r.get("delivery", {}).items())[:60]]
        for r in records
    ]  # fmt: skip
    headers = ["time (UTC)", "kind", "rule", "shards", "epoch", "delivered", "per sink"]
    return table(headers, rows) or "no alerts"


async def _cli_url(store: Store, settings: Settings) -> str:
    """The URL redis-cli should use: in sentinel mode, the master the sentinels name now,
    with the credentials and db of `SHARDMON_REDIS_URL`."""
    if settings.redis_mode != "sentinel":
        return settings.redis_url_or_default()
    host, port = await store.client.connection_pool.get_master_address()  # type: ignore[attr-defined]
    base = settings.redis_url.get_secret_value() if settings.redis_url else "redis://unused/0"
    parts = urlsplit(base)
    credentials = parts.netloc.rpartition("@")[0]
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"  # IPv6 in brackets
    netloc = f"{credentials}@{address}" if credentials else address
    return urlunsplit(parts._replace(netloc=netloc))


async def keys(store: Store, settings: Settings, args: argparse.Namespace) -> Any:
    counts = await store.key_counts()
    layout = store.keys.layout()
    if args.json:
        return [{"key": i.name, "type": i.type, "pattern" if i.family else "name": i.key,
                 "count": counts[i.name]} for i in layout]  # fmt: skip
    url = redact_url(await _cli_url(store, settings))
    cluster = " -c" if settings.redis_mode == "cluster" else ""
    rows = []
    for info in layout:
        if info.family:
            command = f"redis-cli{cluster} -u {url} --scan --pattern '{info.key}'"
        else:
            read = {"list": "LRANGE {} 0 4", "hash": "HGETALL {}",
                    "zset": "ZRANGE {} 0 9 WITHSCORES", "string": "GET {}"}[info.type]  # fmt: skip
            command = f"redis-cli{cluster} -u {url} " + read.format(f"'{info.key}'")
        rows.append([info.name, info.type, counts[info.name], info.holds, command])
    note = "count: keys of a family, or the length of a single key\n"
    return note + table(["key", "type", "count", "holds", "read it with"], rows)


async def thresholds(store: Store, settings: Settings, args: argparse.Namespace) -> Any:
    name = None
    if args.rule is not None:
        if args.rule not in THRESHOLD_RULES:
            raise CliError(f"unknown rule {args.rule!r}: one of {', '.join(THRESHOLD_RULES)}")
        name = args.rule if args.shard is None else f"{args.rule}:{args.shard}"
    if args.action == "set":
        if name is None or args.value is None:
            raise CliError("usage: shardmon thresholds set RULE VALUE [--shard S]")
        what, low, high = THRESHOLD_RULES[args.rule]
        if not low <= args.value <= high:
            raise CliError(f"{args.rule} takes {what} from {low:g} to {high:g}, not {args.value:g}")
        await store.set_threshold(name, args.value)
    elif args.action == "unset":
        if name is None:
            raise CliError("usage: shardmon thresholds unset RULE [--shard S]")
        if not await store.unset_threshold(name):
            raise CliError(f"no override {name!r} to remove")
    overrides = await store.thresholds()
    defaults = {
        "memory": settings.memory_critical, "cpu": settings.cpu_critical,
        "restart_storm": settings.restart_alert_threshold,
        "identify_storm": settings.identify_alert_threshold,
        "offline": 3 * settings.sample_interval_s,
    }  # fmt: skip
    if args.json:
        return {"settings": defaults, "overrides": overrides}
    rows = [
        [rule, f"{value:g}", THRESHOLD_RULES[rule][0], overrides.get(rule, "-")]
        for rule, value in defaults.items()
    ]
    per_shard = sorted((n, v) for n, v in overrides.items() if ":" in n)
    text = table(["rule", "setting", "unit", "fleet override"], rows)
    if per_shard:
        text += "\n\nper-shard overrides:\n" + table(
            ["rule:shard", "value"], [list(p) for p in per_shard]
        )
    return text + "\n\nthe leader reads overrides every tick: no restart needed"


async def watch(store: Store, settings: Settings, args: argparse.Namespace) -> Any:
    while True:
        view = await status(store, settings, args)
        if args.json:
            print(json.dumps(view, ensure_ascii=False, default=str), flush=True)
            await asyncio.sleep(args.every)
            continue
        print(
            "\033[2J\033[H"
            + time.strftime("%H:%M:%S ")
            + f"(every {args.every:g} s, Ctrl-C stops)\n"
            + view,
            flush=True,
        )
        await asyncio.sleep(args.every)


async def prune(store: Store, settings: Settings, args: argparse.Namespace) -> Any:
    """Restart history retention: Redis, and this host's journal into a gzip archive."""
    before = time.time() - args.older_than
    fleet, per_shard = await store.prune_restarts(before)
    journal = Journal(settings.journal_path)
    archive = journal.path.with_name(f"{journal.path.name}.{time.strftime('%Y%m%d-%H%M%S')}.gz")

    def keep(line: str) -> bool:
        try:
            return bool(parse_event(line).ts >= before)
        except MalformedData:
            return True  # not ours to judge: it stays where an operator can read it

    try:
        archived, kept = await asyncio.to_thread(journal.rotate, keep, archive)
    except OSError as exc:  # an unwritable journal folder: not Redis's doing
        raise CliError(f"journal {journal.path} not archived: {exc}") from None
    result = {"before": before, "redis_fleet_removed": fleet, "redis_shard_removed": per_shard,
              "journal_archived": archived, "journal_kept": kept,
              "archive": str(archive) if archived else None}  # fmt: skip
    if args.json:
        return result
    cutoff = time.strftime("%Y-%m-%d %H:%M", time.gmtime(before))
    text = f"restarts before {cutoff} UTC: {fleet} removed from Redis ({per_shard} from shard sets)"
    if archived:
        return text + f"\njournal: {archived} lines moved to {archive}, {kept} kept"
    return text + f"\njournal: nothing older ({kept} lines kept)"


async def serve_exporter(settings: Settings, host: str, port: int) -> None:
    """`/metrics` until SIGTERM or SIGINT."""
    from aiohttp import web

    from shardmon.exporter import make_app

    client = create_redis(settings.redis_target(), timeout_s=3)
    keys = Keys(settings.deployment)
    app = make_app(client, keys, 3 * settings.sample_interval_s, settings.restart_window_s)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:  # a busy port: not Redis's doing
        await runner.cleanup()
        await client.aclose()
        raise CliError(f"cannot serve on {host}:{port}: {exc}") from None
    print(f"serving http://{host}:{port}/metrics for deployment {settings.deployment}", flush=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    try:
        await stopping.wait()
    finally:
        await runner.cleanup()
        await client.aclose()


def log_restart(settings: Settings, args: argparse.Namespace) -> int:
    """For deploy scripts: journal the event, write it to Redis, and say which happened."""
    from shardmon.api import persist_restart

    metadata: dict[str, Any] = dict(args.meta or [])
    if args.changelog is not None:
        metadata["changelog"] = args.changelog
    event = settings.monitor_config().event(args.type, metadata, version=args.version)
    journaled, in_redis = persist_restart(event, settings)
    where = "journaled" if journaled else "NOT journaled"
    if in_redis:
        print(f"{event.type.value} restart {event.id} {where} and recorded in Redis")
    else:
        print(f"{event.type.value} restart {event.id} {where}; Redis unreachable, "
              "a monitor on this host will replay it")  # fmt: skip
    return 0 if journaled or in_redis else 1


# -- wiring -----------------------------------------------------------------------------------

READ_COMMANDS: dict[str, Callable[[Store, Settings, argparse.Namespace], Awaitable[Any]]] = {
    "status": status, "restarts": restarts, "stats": stats, "performance": performance,
    "alerts": alerts, "keys": keys, "thresholds": thresholds, "watch": watch, "prune": prune,
}  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shardmon", description="Monitor a sharded Discord bot through Redis."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON for scripts")

    def add(name: str, help: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help, description=help, parents=[common])

    add("status", "the fleet now: health, resources, leader, and a line per shard")
    r = add("restarts", "the newest restarts, newest first")
    r.add_argument("--limit", type=_bounded_int(1, 1000), default=10, help="how many (10)")
    r.add_argument("--shard", type=_bounded_int(0, 100_000), help="only this shard")
    r.add_argument("--type", choices=[t.value for t in RestartType], help="only this type")
    add("stats", "restart totals, rates and storms")
    p = add("performance", "average/peak/low memory, CPU and latency")
    p.add_argument("--shard", type=_bounded_int(0, 100_000), help="one shard (else the fleet)")
    p.add_argument(
        "--hours",
        type=_bounded_int(1, 720),
        default=1,
        help="the fleet's last N hours (1; 720 = 30 days)",
    )
    a = add("alerts", "alerts sent and resolved, with their delivery per sink")
    a.add_argument("--limit", type=_bounded_int(1, 100), default=20, help="how many (20)")
    add("keys", "the key layout with live counts and redis-cli commands")
    t = add("thresholds", "show, set or unset runtime threshold overrides")
    t.add_argument("action", nargs="?", choices=["show", "set", "unset"], default="show")
    t.add_argument("rule", nargs="?", help=", ".join(THRESHOLD_RULES))
    t.add_argument("value", nargs="?", type=float, help="the new value (set)")
    t.add_argument("--shard", type=_bounded_int(0, 100_000), help="for one shard only")
    pr = add("prune", "drop restart history older than a cutoff; archive the local journal")
    pr.add_argument("--older-than", type=_duration, required=True, help="e.g. 90d, 12h")
    w = add("watch", "the status view, refreshed until Ctrl-C")
    w.add_argument("--every", type=_duration, default=2.0, help="seconds between refreshes (2)")
    lr = commands.add_parser(
        "log-restart",
        help="record a restart (for deploy scripts)",
        description="Record a restart: journaled even when Redis is down.",
    )
    lr.add_argument("type", choices=[t.value for t in RestartType])
    lr.add_argument("--version", help="the version now running")
    lr.add_argument("--changelog", help="what changed")
    lr.add_argument("--meta", type=_meta, action="append", metavar="KEY=VALUE", help="metadata")
    e = commands.add_parser(
        "exporter",
        help="serve Prometheus metrics of the fleet",
        description="Serve /metrics of the whole fleet, read from Redis.",
    )
    e.add_argument("--port", type=_bounded_int(1, 65535), default=9108, help="port (9108)")
    e.add_argument("--host", default="127.0.0.1", help="address (127.0.0.1; 0.0.0.0 in containers)")
    d = commands.add_parser("demo", help="a monitored fleet with synthetic load",
                            description="Run a fleet of shard processes with synthetic load "
                            "against SHARDMON_REDIS_URL or an embedded Redis.")  # fmt: skip
    d.add_argument("--shards", type=_bounded_int(3, 64), default=4, help="shards, 3 or more (4)")
    d.add_argument("--duration", type=_bounded_int(30, 3600), default=60, help="seconds (60)")
    return parser


async def _run_read(command: str, settings: Settings, args: argparse.Namespace) -> Any:
    client = create_redis(settings.redis_target(), timeout_s=3)
    try:
        return await READ_COMMANDS[command](
            Store(client, Keys(settings.deployment)), settings, args
        )
    finally:
        await client.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings()
        if args.command == "demo":
            from shardmon.demo import run_demo

            return 0 if run_demo(shards=args.shards, duration_s=args.duration) else 1
        if args.command == "log-restart":
            return log_restart(settings, args)
        if args.command == "exporter":
            asyncio.run(serve_exporter(settings, args.host, args.port))
            return 0
        result = asyncio.run(_run_read(args.command, settings, args))
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    except CliError as exc:
        print(f"shardmon: {exc}", file=sys.stderr)
        return 1
    except REDIS_FAILURES as exc:  # the machine's own OSErrors became CliErrors where raised
        failure = classify(exc)
        if failure.outage:
            where = load_settings().redis_target().describe()
            message = f"could not reach Redis at {where} (SHARDMON_REDIS_*): {failure}"
        else:
            message = f"Redis refused a command (a key written by hand?): {failure}"
        print(f"shardmon: {message}", file=sys.stderr)
        return 1
    except RuntimeError as exc:  # the demo refusing a running fleet
        print(f"shardmon: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    print(json.dumps(result, indent=2, ensure_ascii=False, default=str) if args.json else result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
