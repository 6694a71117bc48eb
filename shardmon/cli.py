"""The `shardmon` command: the fleet from Redis, for operators and deploy scripts.

Every command has `--help`; read commands take `--json`. Errors (a wrong Redis URL, a bad
argument, invalid settings) are one clear line and an exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import getpass
import json
import logging
import math
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from shardmon import views
from shardmon.connection import create_redis, redact_url
from shardmon.failures import REDIS_CLIENT_ERRORS, classify
from shardmon.journal import Journal
from shardmon.keys import Keys
from shardmon.models import MalformedData, RestartType, parse_event
from shardmon.rules import DEFAULT_RULES
from shardmon.settings import Settings, SettingsError, load_settings
from shardmon.states import format_shard_ranges, parse_shard_list
from shardmon.store import Store

if TYPE_CHECKING:
    import redis.asyncio as aioredis
    from aiohttp import web

__all__ = ["build_parser", "main"]


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


def _shard_list(text: str) -> list[int]:
    """`0,1` or `0-3`: shard ids."""
    try:
        return parse_shard_list(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _meta(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not key=value")
    return key, value


# -- commands: each reads the store, then prints a view of `shardmon.views` --------------------


async def status(store: Store, settings: Settings, args: argparse.Namespace) -> Any:
    """The /uptime and /shards views; exit code 1 when the fleet needs attention."""
    fleet = await store.fleet_status(settings.limits.offline_after_s)
    return views.status_report(fleet, settings, as_json=args.json)


async def restarts(store: Store, settings: Settings, args: argparse.Namespace) -> Any:
    events = await store.restart_history(args.limit, shard=args.shard, restart_type=args.type)
    return views.restarts_view(events, as_json=args.json)


async def stats(store: Store, settings: Settings, args: argparse.Namespace) -> Any:
    result = await store.restart_stats()
    storms = await store.restart_storms(settings.limits, settings.shard_count)
    return views.stats_view(result, storms, as_json=args.json)


async def performance(store: Store, settings: Settings, args: argparse.Namespace) -> Any:
    if args.shard is None and args.hours > 1:
        result = await store.fleet_performance_hours(args.hours)
        scope = f"fleet, last {args.hours} hours (hourly rollups)"
    elif args.shard is None:
        result, scope = await store.fleet_performance(window_s=3600), "fleet, last hour"
    else:
        result, scope = await store.shard_performance(args.shard), f"shard {args.shard}"
    return views.performance_view(result, scope, as_json=args.json)


async def alerts(store: Store, settings: Settings, args: argparse.Namespace) -> Any:
    return views.alerts_view(await store.recent_alerts(args.limit), as_json=args.json)


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
    cluster = " -c" if settings.redis_mode == "cluster" else ""
    redis_cli = f"redis-cli{cluster} -u {redact_url(await _cli_url(store, settings))}"
    return views.keys_view(store.keys.layout(), counts, redis_cli, as_json=args.json)


#: The rules whose threshold `shardmon thresholds` shows and sets, by name.
RULES = {rule.name: rule for rule in DEFAULT_RULES}


async def thresholds(store: Store, settings: Settings, args: argparse.Namespace) -> Any:
    name = None
    if args.rule is not None:
        if args.rule not in RULES:
            raise CliError(f"unknown rule {args.rule!r}: one of {', '.join(RULES)}")
        name = args.rule if args.shard is None else f"{args.rule}:{args.shard}"
    if args.action == "set":
        if name is None or args.value is None:
            raise CliError("usage: shardmon thresholds set RULE VALUE [--shard S]")
        limit = RULES[args.rule].threshold
        if not limit.low <= args.value <= limit.high:
            raise CliError(
                f"{args.rule} takes {limit.unit} from {limit.low:g} to {limit.high:g}, "
                f"not {args.value:g}"
            )
        await store.set_threshold(name, args.value)
    elif args.action == "unset":
        if name is None:
            raise CliError("usage: shardmon thresholds unset RULE [--shard S]")
        if not await store.unset_threshold(name):
            raise CliError(f"no override {name!r} to remove")
    return views.thresholds_view(settings.limits, await store.thresholds(), as_json=args.json)


async def watch(store: Store, settings: Settings, args: argparse.Namespace) -> Any:
    while True:
        await store.sync_clock()
        view = (await status(store, settings, args)).view
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
    pruned = await store.prune_restarts(store.clock.now() - args.older_than)
    journal = Journal(settings.journal_path)
    archive = journal.path.with_name(f"{journal.path.name}.{time.strftime('%Y%m%d-%H%M%S')}.gz")

    def keep(line: str) -> bool:
        try:
            return bool(parse_event(line).ts >= pruned.before)
        except MalformedData:
            return True  # not ours to judge: it stays where an operator can read it

    try:
        archived, kept = await asyncio.to_thread(journal.rotate, keep, archive)
    except OSError as exc:  # an unwritable journal folder: not Redis's doing
        raise CliError(f"journal {journal.path} not archived: {exc}") from None
    return views.prune_view(pruned, archived, kept, str(archive), as_json=args.json)


async def serve_exporter(settings: Settings, host: str, port: int) -> None:
    """`/metrics` until SIGTERM or SIGINT."""
    from aiohttp import web

    from shardmon.exporter import make_app

    client = create_redis(settings.redis_target(), timeout_s=3)
    keys = Keys(settings.deployment)
    app = make_app(client, keys, settings.limits, settings.shard_count)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:  # a busy port: not Redis's doing
        await runner.cleanup()
        await client.aclose()
        raise CliError(f"cannot serve on {host}:{port}: {exc}") from None
    print(f"serving http://{host}:{port}/metrics for deployment {settings.deployment}", flush=True)
    await _serve_until_stopped(runner, client)


async def _serve_until_stopped(runner: web.AppRunner, client: aioredis.Redis) -> None:
    """Serve until SIGTERM or SIGINT, then stop the server and close its Redis client."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    try:
        await stopping.wait()
    finally:
        await runner.cleanup()
        await client.aclose()


async def serve_dashboard(settings: Settings, args: argparse.Namespace) -> None:
    """The dashboard (or the status page alone) until SIGTERM or SIGINT."""
    from shardmon.web import BindingRefused, BoardSettings, check_binding, make_app, start

    token = settings.dashboard_token
    try:
        check_binding(args.host, token=token is not None, public=args.public,
                      status_page_only=args.status_page)  # fmt: skip
    except BindingRefused as exc:
        raise SettingsError(str(exc)) from None
    client = create_redis(settings.redis_target(), timeout_s=3)
    app = make_app(
        client,
        Keys(settings.deployment),
        BoardSettings.of(settings, args.refresh),
        token=None if token is None else token.get_secret_value(),
        status_page_only=args.status_page,
    )
    try:
        runner = await start(app, args.host, args.port)
    except OSError as exc:  # a busy port: not Redis's doing
        await client.aclose()
        raise CliError(f"cannot serve on {args.host}:{args.port}: {exc}") from None
    base = f"http://{args.host}:{args.port}"
    if args.status_page:
        print(f"serving the status page {base}/status for deployment {settings.deployment}")
    else:
        guard = "asks for SHARDMON_DASHBOARD_TOKEN" if token else "open to whoever reaches it"
        print(f"serving the dashboard {base}/ ({guard}) and the status page {base}/status "
              f"for deployment {settings.deployment}")  # fmt: skip
    sys.stdout.flush()
    await _serve_until_stopped(runner, client)


def doctor(args: argparse.Namespace) -> int:
    """Check settings, journal, Redis and (with a bot token) Discord; exit with the worst level."""
    from shardmon.doctor import Finding, Level, check_journal, exit_code, report

    try:
        settings = load_settings()
    except SettingsError as exc:
        findings = [Finding(Level.FAIL, "settings", str(exc), "correct the setting named")]
    else:
        summary = (f"valid: deployment {settings.deployment}, {settings.shard_count:,} shard(s), "
                   f"{settings.history_size:,} samples kept a shard")  # fmt: skip
        findings = [
            Finding(Level.OK, "settings", summary),
            check_journal(settings.journal_path),
            *asyncio.run(_doctor(settings)),
        ]
    result = report(findings, as_json=args.json)
    print(json.dumps(result, indent=2, ensure_ascii=False) if args.json else result)
    return exit_code(findings)


async def _doctor(settings: Settings) -> list[Any]:
    from shardmon.doctor import Finding, Level, check_discord, check_redis, gateway_bot_reader

    client = create_redis(settings.redis_target(), timeout_s=3)
    try:
        findings: list[Finding] = await check_redis(
            client, Keys(settings.deployment), shard_count=settings.shard_count,
            history_size=settings.history_size, clock_skew_warn_s=settings.clock_skew_warn_s,
        )  # fmt: skip
    finally:
        await client.aclose()
    if settings.bot_token is None:
        skipped = ("not checked: no SHARDMON_BOT_TOKEN (with it: the token's session start "
                   "limit, and the shard count against Discord's advice)")  # fmt: skip
        return [*findings, Finding(Level.OK, "discord", skipped)]
    read = gateway_bot_reader(settings.discord_api_url, settings.bot_token)
    return [*findings, *await check_discord(read, settings.shard_count, time.time())]


def supervise(args: argparse.Namespace) -> int:
    """`shardmon run`: the bot as a child, restarted as the settings say; or `--resume`."""
    if args.shards is not None:
        os.environ["SHARDMON_SHARD_IDS"] = args.shards  # validated with every other setting
    settings = load_settings()
    command = args.child[1:] if args.child[:1] == ["--"] else args.child
    if args.resume:
        return asyncio.run(_ask(settings, settings.shard_ids, "resume", "", wait=args.wait))
    if not command:
        raise CliError("give the bot's command after --: shardmon run -- python bot.py")
    logging.getLogger("shardmon").setLevel(logging.INFO)
    return asyncio.run(_supervise(settings, command))


async def _supervise(settings: Settings, command: list[str]) -> int:
    from shardmon.doctor import gateway_bot_reader
    from shardmon.monitor import build_monitor
    from shardmon.supervisor import Supervisor, budget_reader

    client = create_redis(settings.redis_target())
    # The child serves the health port (its extension's sampling loop), not its supervisor.
    config = dataclasses.replace(settings.monitor_config(), health_port=None)
    monitor = build_monitor(config, client, sinks=settings.alert_sinks())
    rest = None
    if settings.bot_token is not None:
        rest = gateway_bot_reader(settings.discord_api_url, settings.bot_token)
    supervisor = Supervisor(command, monitor, settings.run_policy(),
                            read_budget=budget_reader(monitor.store, rest))  # fmt: skip
    try:
        return await supervisor.run()
    finally:
        await client.aclose()


def restart(settings: Settings, args: argparse.Namespace) -> int:
    """`shardmon restart`: ask the supervisors of shards to restart their children."""
    shards = args.shards or []
    return asyncio.run(_ask(settings, shards, "restart", args.reason or "", wait=args.wait))


async def _ask(
    settings: Settings, shards: Sequence[int], action: Literal["restart", "resume"], reason: str,
    *, wait: bool,
) -> int:  # fmt: skip
    """Ask the supervisors of `shards` (those reporting lately) to restart or resume, and wait
    (`wait`) a sampling interval for them to take it; say who took it, and what nobody runs."""
    client = create_redis(settings.redis_target(), timeout_s=3)
    try:
        store = Store(client, Keys(settings.deployment))
        await store.sync_clock()
        by = f"{getpass.getuser()}@{socket.gethostname()}"
        fresh = store.clock.now() - settings.limits.offline_after_s
        done = await store.ask_supervisors(shards, action, reason, by, fresh_after=fresh)
        if done.nobody:
            print(f"no supervisor (shardmon run) reports shard(s) "
                  f"{format_shard_ranges(done.nobody)}: not asked", file=sys.stderr)  # fmt: skip
        waiting = set(done.asked)
        deadline = time.monotonic() + settings.sample_interval_s + 5
        while wait and waiting and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            waiting &= set(await store.pending_requests(waiting))
        for shard, node in done.asked.items():
            if not wait:
                print(f"shard {shard}: {action} asked of {node}")
            elif shard in waiting:
                print(f"shard {shard}: {action} not taken by {node} within "
                      f"{settings.sample_interval_s + 5:g} s", file=sys.stderr)  # fmt: skip
            else:
                print(f"shard {shard}: {action} taken by {node}")
        return 1 if done.nobody or (wait and waiting) else 0
    finally:
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
    t.add_argument("rule", nargs="?", help=", ".join(RULES))
    t.add_argument("value", nargs="?", type=float, help="the new value (set)")
    t.add_argument("--shard", type=_bounded_int(0, 100_000), help="for one shard only")
    pr = add("prune", "drop restart history older than a cutoff; archive the local journal")
    pr.add_argument("--older-than", type=_duration, required=True, help="e.g. 90d, 12h")
    w = add("watch", "the status view, refreshed until Ctrl-C")
    w.add_argument("--every", type=_duration, default=2.0, help="seconds between refreshes (2)")
    add("doctor", "check Redis, this host and Discord before going live: exit 0 ok, 1, 2")
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
    ru = commands.add_parser(
        "run",
        help="run the bot as a child and restart it when it exits",
        description="Run the bot's command as a child process and restart it when it exits: "
        "recorded as restarts, backed off, held while Discord's session start limit is low, "
        "paused by a restart storm. SIGTERM/SIGINT stop it, SIGHUP restarts it.",
    )
    ru.add_argument("--shards", help="the child's shards, as SHARDMON_SHARD_IDS (0,1 or 0-3)")
    ru.add_argument(
        "--resume",
        action="store_true",
        help="lift the storm pause of the supervisor of --shards, then exit",
    )
    ru.add_argument(
        "--no-wait",
        dest="wait",
        action="store_false",
        help="with --resume: do not wait for the supervisor to take it",
    )
    ru.add_argument(
        "child", nargs=argparse.REMAINDER, metavar="-- COMMAND", help="the bot's command, after --"
    )
    rs = commands.add_parser(
        "restart",
        help="ask the supervisors of shards to restart their children",
        description="Ask the supervisor (shardmon run) of each shard to restart its child, "
        "through Redis; it does within one sampling interval and records a manual restart.",
    )
    rs.add_argument("--shards", type=_shard_list, required=True, help="0,1 or 0-3")
    rs.add_argument("--reason", help="why, recorded with the restart")
    rs.add_argument(
        "--no-wait",
        dest="wait",
        action="store_false",
        help="do not wait for the supervisors to take it",
    )
    db = commands.add_parser(
        "dashboard",
        help="serve the live dashboard and the public status page",
        description="Serve the operator's live dashboard (/) and the public status page "
        "(/status) of the fleet, read from Redis. Beyond 127.0.0.1 the dashboard needs "
        "SHARDMON_DASHBOARD_TOKEN, --public, or --status-page.",
    )
    db.add_argument("--port", type=_bounded_int(1, 65535), default=9110, help="port (9110)")
    db.add_argument("--host", default="127.0.0.1", help="address (127.0.0.1)")
    db.add_argument(
        "--status-page",
        action="store_true",
        help="serve the public status page alone (safe to expose)",
    )
    db.add_argument(
        "--public", action="store_true", help="serve the dashboard beyond loopback without a token"
    )
    db.add_argument("--refresh", type=_duration, default=5.0,
                    help="seconds between the pages' updates (5)")  # fmt: skip
    d = commands.add_parser("demo", help="a monitored fleet with synthetic load",
                            description="Run a fleet of shard processes with synthetic load "
                            "against SHARDMON_REDIS_URL or an embedded Redis.")  # fmt: skip
    d.add_argument("--shards", type=_bounded_int(3, 64), default=4, help="shards, 3 or more (4)")
    d.add_argument("--duration", type=_bounded_int(30, 3600), default=60, help="seconds (60)")
    return parser


async def _run_read(command: str, settings: Settings, args: argparse.Namespace) -> Any:
    client = create_redis(settings.redis_target(), timeout_s=3)
    try:
        store = Store(client, Keys(settings.deployment))
        await store.sync_clock()
        return await READ_COMMANDS[command](store, settings, args)
    finally:
        await client.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "doctor":  # invalid settings are one of its findings
        return doctor(args)
    try:
        if args.command == "run":
            return supervise(args)
        settings = load_settings()
        if args.command == "demo":
            from shardmon.demo.scenario import run_demo

            return 0 if run_demo(shards=args.shards, duration_s=args.duration) else 1
        if args.command == "log-restart":
            return log_restart(settings, args)
        if args.command == "restart":
            return restart(settings, args)
        if args.command == "exporter":
            asyncio.run(serve_exporter(settings, args.host, args.port))
            return 0
        if args.command == "dashboard":
            asyncio.run(serve_dashboard(settings, args))
            return 0
        result = asyncio.run(_run_read(args.command, settings, args))
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    except CliError as exc:
        print(f"shardmon: {exc}", file=sys.stderr)
        return 1
    except REDIS_CLIENT_ERRORS as exc:
        failure = classify(exc)
        if failure.outage:
            where = load_settings().redis_target().describe()
            message = f"could not reach Redis at {where} (SHARDMON_REDIS_*): {failure}"
        else:
            message = f"Redis refused a command (a key written by hand?): {failure}"
        print(f"shardmon: {message}", file=sys.stderr)
        return 1
    except (RuntimeError, OSError) as exc:  # the demo refusing a running fleet, a closed pipe
        print(f"shardmon: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    code = 0
    if isinstance(result, views.StatusReport):  # 1 when the fleet needs attention
        result, code = result.view, 1 if result.attention else 0
    print(json.dumps(result, indent=2, ensure_ascii=False, default=str) if args.json else result)
    return code


if __name__ == "__main__":
    sys.exit(main())
