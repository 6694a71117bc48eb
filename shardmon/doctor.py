"""`shardmon doctor`: the Redis, host and Discord settings that would silently break a monitor,
each checked and explained with its fix, before going live and after any change.

Every check returns `Finding`s; the command prints them and exits with the worst level (0 all
good, 1 warnings, 2 failures). A monitor runs the Redis checks once at start and logs what fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any, cast

import redis
import redis.asyncio as aioredis
from pydantic import SecretStr

from shardmon.clock import FleetClock
from shardmon.failures import REDIS_FAILURES, classify
from shardmon.keys import Keys
from shardmon.models import MalformedData, SessionStartLimit
from shardmon.render import format_uptime
from shardmon.store import Store, lua

__all__ = [
    "Finding",
    "Level",
    "check_discord",
    "check_journal",
    "check_redis",
    "exit_code",
    "gateway_bot_reader",
    "log_failures",
    "report",
]

log = logging.getLogger(__name__)

#: The oldest Redis shardmon runs on: `record_alert.lua` uses LPOS (6.0.6).
MIN_REDIS_VERSION = (6, 0, 6)
#: Bytes a sample takes in Redis at `list-compress-depth` 0 and 1, measured by
#: benchmarks/redis_memory.py (1,000 distinct samples a shard): used where the fleet has none.
BYTES_PER_SAMPLE = {0: 375, 1: 145}
#: Sample lists whose size is measured (MEMORY USAGE) to find the fleet's bytes per sample,
#: of those holding at least MEASURED_MIN_SAMPLES samples.
MEASURED_LISTS = 5
MEASURED_MIN_SAMPLES = 200
#: Below this much free memory for every shard's full history, as a multiple of what it needs,
#: the doctor warns: other keys, fragmentation and a growing fleet need room too.
MEMORY_MARGIN = 2.0
#: How long the Discord check waits for GET /gateway/bot.
DISCORD_TIMEOUT_S = 10.0
#: The commands shardmon sends outside its scripts (`shardmon/store/`), with arguments that
#: make them harmless on the probe's scratch key; with SCRIPT_COMMANDS, every command shardmon
#: sends (a test checks both against `lua/` and the store's calls).
CLIENT_COMMANDS: dict[str, tuple[str, ...]] = {
    "GET": ("<key>",),
    "DEL": ("<key>",),
    "EXISTS": ("<key>",),
    "TYPE": ("<key>",),
    "EXPIRE": ("<key>", "60"),
    "PTTL": ("<key>",),
    "HGET": ("<key>", "f"),
    "HGETALL": ("<key>",),
    "HVALS": ("<key>",),
    "HMGET": ("<key>", "f"),
    "HLEN": ("<key>",),
    "HSET": ("<key>", "f", "v"),
    "HSETNX": ("<key>", "f", "v"),
    "HDEL": ("<key>", "f"),
    "HSCAN": ("<key>", "0"),
    "LRANGE": ("<key>", "0", "0"),
    "LLEN": ("<key>",),
    "ZADD": ("<key>", "0", "m"),
    "ZRANGE": ("<key>", "0", "0"),
    "ZREVRANGE": ("<key>", "0", "0"),
    "ZRANGEBYSCORE": ("<key>", "0", "0"),
    "ZREMRANGEBYSCORE": ("<key>", "0", "0"),
    "ZCOUNT": ("<key>", "0", "0"),
    "ZCARD": ("<key>",),
    "ZSCORE": ("<key>", "m"),
    "SCAN": ("0", "MATCH", "<key>", "COUNT", "1"),
    "TIME": (),
}
#: Arguments of the scripts' commands that the client list does not have.
SCRIPT_COMMANDS: dict[str, tuple[str, ...]] = {
    "SET": ("<key>", "1", "PX", "60000"),
    "INCR": ("<key>",),
    "PEXPIRE": ("<key>", "60000"),
    "HINCRBY": ("<key>", "f", "1"),
    "LPOS": ("<key>", "v"),
    "LPUSH": ("<key>", "v"),
    "LTRIM": ("<key>", "0", "0"),
}


class Level(IntEnum):
    """How bad a finding is; the worst one is the exit code."""

    OK = 0
    WARN = 1
    FAIL = 2

    @property
    def mark(self) -> str:
        return ("✅", "⚠️", "❌")[self]


@dataclass(frozen=True, slots=True)
class Finding:
    level: Level
    topic: str
    text: str
    fix: str = ""

    def line(self) -> str:
        fix = f"\n   fix: {self.fix}" if self.fix and self.level else ""
        return f"{self.level.mark} {self.topic}: {self.text}{fix}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"level": self.level.name.lower()}


def exit_code(findings: Sequence[Finding]) -> int:
    return int(max((f.level for f in findings), default=Level.OK))


def probe_args() -> list[str]:
    """ARGV of `probe_commands.lua`: SET first (the scratch key gets its TTL), DEL last."""
    probes = CLIENT_COMMANDS | SCRIPT_COMMANDS
    order = ["SET", *sorted(set(probes) - {"SET", "DEL"}), "DEL"]
    argv: list[str] = []
    for command in order:
        argv += [command, str(len(probes[command])), *probes[command]]
    return argv


# -- Redis ------------------------------------------------------------------------------------


def _mib(size: float) -> str:
    return f"{size / 2**20:,.1f} MiB"


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


async def _try(call: Awaitable[Any]) -> Any:
    """The reply, or the failure (a refusal: a denied or renamed command) as an exception."""
    try:
        return await call
    except REDIS_FAILURES as exc:
        if classify(exc).outage:
            raise
        return exc


class _Server:
    """What the Redis server says of itself: CONFIG where the user may read it, else INFO."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self.config: dict[str, str] = {}
        self.info: dict[str, Any] = {}
        self.config_denied = ""
        self.info_denied = ""

    async def read(self) -> None:
        for name in ("maxmemory", "maxmemory-policy", "appendonly", "save", "list-compress-depth"):
            reply = await _try(self.client.config_get(name))
            if isinstance(reply, Exception):
                self.config_denied = str(reply)
                self.config = {}
                break
            self.config.update({str(k): str(v) for k, v in cast("dict[str, Any]", reply).items()})
        for section in ("server", "memory", "persistence"):
            reply = await _try(self.client.info(section))
            if isinstance(reply, Exception):
                self.info_denied = str(reply)
                break
            self.info.update(cast("dict[str, Any]", reply))

    def setting(self, name: str) -> str | None:
        """A setting from CONFIG, else from INFO (where INFO has it), else None."""
        if name in self.config:
            return self.config[name]
        from_info = {"maxmemory": "maxmemory", "maxmemory-policy": "maxmemory_policy"}
        if name in from_info and from_info[name] in self.info:
            return str(self.info[from_info[name]])
        if name == "appendonly" and "aof_enabled" in self.info:
            return "yes" if int(self.info["aof_enabled"]) else "no"
        return None

    def not_checked(self, what: str) -> Finding:
        why = self.config_denied or "CONFIG GET answered nothing"
        return Finding(
            Level.WARN,
            what,
            f"not checked: this user may not read it ({why})",
            "run `shardmon doctor` once as a user allowed CONFIG GET and INFO, or read the "
            "setting in your provider's console",
        )


async def _version_finding(client: aioredis.Redis, server: _Server) -> Finding:
    version = str(server.info.get("redis_version", ""))
    if not version:  # INFO denied: HELLO (Redis 6+) names the version too
        reply = await _try(client.execute_command("HELLO"))  # type: ignore[no-untyped-call]
        if isinstance(reply, dict):
            version = str(reply.get("version", ""))
        elif isinstance(reply, list):
            fields = dict(zip(reply[::2], reply[1::2], strict=False))
            version = str(fields.get("version", ""))
    floor = ".".join(map(str, MIN_REDIS_VERSION))
    if not version:
        return Finding(
            Level.WARN,
            "redis version",
            f"unknown: neither INFO nor HELLO answered "
            f"(HELLO is Redis 6's; shardmon needs {floor} or newer)",
            f"use Redis {floor} or newer",
        )
    if _version(version) < MIN_REDIS_VERSION:
        return Finding(
            Level.FAIL,
            "redis version",
            f"{version}: shardmon needs {floor} or newer (LPOS, in the alert records' script)",
            f"upgrade Redis to {floor} or newer (7.x recommended)",
        )
    return Finding(Level.OK, "redis version", f"{version} ({floor} or newer needed)")


def _persistence(server: _Server) -> Finding:
    aof = server.setting("appendonly")
    if aof is None:
        return server.not_checked("persistence")
    if aof == "yes":
        return Finding(
            Level.OK,
            "persistence",
            "appendonly yes: a restart of Redis keeps the history, the alert guards and the lease",
        )
    save = server.setting("save")
    fix = "CONFIG SET appendonly yes, and appendonly yes in redis.conf"
    if save is None:  # INFO says appendonly no; the snapshots are CONFIG's to say
        text = (
            "appendonly no (snapshots not checked: CONFIG denied): a crash of Redis loses what "
            "was written since the last snapshot, if any"
        )
    elif save:
        text = (
            f"snapshots only (save {save}): a crash of Redis loses what was written since the "
            "last one (samples, alert records; restart events come back from the journals)"
        )
    else:
        text = (
            "none (appendonly no, no snapshots): a restart of Redis loses every sample and "
            "alert record; restart events come back from each host's journal"
        )
    return Finding(Level.WARN, "persistence", text, fix)


def _eviction(server: _Server) -> Finding:
    policy = server.setting("maxmemory-policy")
    if policy is None:
        return server.not_checked("eviction")
    maxmemory = int(server.setting("maxmemory") or 0)
    limit = _mib(maxmemory) if maxmemory else "no maxmemory yet"
    if policy == "noeviction":
        return Finding(
            Level.OK,
            "eviction",
            f"maxmemory-policy noeviction ({limit}): Redis "
            "refuses writes when full, and shardmon says so, rather than dropping keys",
        )
    keys = "any key" if policy.startswith("allkeys") else "keys with a TTL"
    when = "when it reaches maxmemory" if maxmemory else "once a maxmemory is set"
    return Finding(
        Level.FAIL,
        "eviction",
        f"maxmemory-policy {policy} ({limit}): Redis evicts {keys} {when}: the leader lease, "
        "the alert guards (an alert sent again, or never resolved) and the history",
        "CONFIG SET maxmemory-policy noeviction (and in redis.conf); a cache sharing this Redis "
        "belongs in another Redis, or database",
    )


async def _bytes_per_sample(client: aioredis.Redis, keys: Keys) -> tuple[float | None, int, int]:
    """(bytes a sample takes in the lists measured, or None; samples in them; lists measured).
    Lists shorter than MEASURED_MIN_SAMPLES are left out: the key's own overhead and the
    uncompressed nodes at each end would make a young list's samples look bigger."""
    scanned = await _try(client.hscan(keys.latest, 0, count=MEASURED_LISTS * 4))
    if isinstance(scanned, Exception):  # `latest` written by hand, or denied: no measurement
        return None, 0, 0
    shards = [shard for shard in list(scanned[1])[:MEASURED_LISTS] if str(shard).isdigit()]
    size = count = measured = 0
    for shard in shards:
        list_key = keys.samples(int(shard))
        used = await _try(client.memory_usage(list_key, samples=0))
        length = await _try(client.llen(list_key))
        if isinstance(used, Exception) or isinstance(length, Exception) or not used:
            continue
        if int(length) >= MEASURED_MIN_SAMPLES:
            size, count, measured = size + int(used), count + int(length), measured + 1
    return (size / count if count else None), count, measured


async def _memory(
    client: aioredis.Redis, keys: Keys, server: _Server, shard_count: int, history_size: int
) -> list[Finding]:
    depth_text = server.setting("list-compress-depth")
    depth = int(depth_text) if depth_text is not None and depth_text.isdigit() else None
    measured, stored_samples, lists = await _bytes_per_sample(client, keys)
    per_sample = measured or BYTES_PER_SAMPLE[1 if depth else 0]
    source = (
        f"measured in {lists} sample list(s)" if measured else "benchmarks/redis_memory.py's figure"
    )
    needed = shard_count * history_size * per_sample
    plan = (
        f"{shard_count:,} shard(s) x {history_size:,} samples x {per_sample:,.0f} B "
        f"({source}) = {_mib(needed)}"
    )
    findings = []
    if depth is None:
        findings.append(server.not_checked("list-compress-depth"))
    elif depth == 0:
        saving = needed * (1 - BYTES_PER_SAMPLE[1] / BYTES_PER_SAMPLE[0])
        findings.append(
            Finding(
                Level.WARN,
                "list-compress-depth",
                f"0: each sample's JSON is stored raw; at 1 this fleet's history would take "
                f"{_mib(needed - saving)} instead of {_mib(needed)} (benchmarks/redis_memory.py: "
                f"{BYTES_PER_SAMPLE[1]} against {BYTES_PER_SAMPLE[0]} B a sample, same write cost)",
                "CONFIG SET list-compress-depth 1 (and in redis.conf): LZF, transparent to "
                "redis-cli; lists written before keep their form until rewritten",
            )
        )
    else:
        findings.append(
            Finding(Level.OK, "list-compress-depth", f"{depth}: the sample lists are compressed")
        )
    used = server.info.get("used_memory")
    maxmemory = int(server.setting("maxmemory") or 0)
    ceiling = maxmemory or int(server.info.get("total_system_memory", 0) or 0)
    if used is None or not ceiling:
        why = server.info_denied or "INFO memory answered no used_memory"
        findings.append(
            Finding(
                Level.WARN,
                "memory",
                f"{plan}; free memory not checked ({why})",
                "compare it with your Redis's free memory",
            )
        )
        return findings
    shards_stored = await _try(client.hlen(keys.latest))
    if isinstance(shards_stored, Exception) or not lists:
        shards_stored = 0
    stored = (stored_samples / lists) * int(shards_stored) * per_sample if lists else 0.0
    growth = max(0.0, needed - stored)
    free = ceiling - int(used)
    of = "maxmemory" if maxmemory else "the host's memory (no maxmemory)"
    text = (
        f"{plan}, {_mib(stored)} of it stored now: {_mib(growth)} to come, "
        f"{_mib(free)} free under {of}"
    )
    compress = ", set list-compress-depth 1" if depth == 0 else ""
    fix = f"raise maxmemory{compress} or lower SHARDMON_HISTORY_SIZE"
    if growth > free:
        findings.append(Finding(Level.FAIL, "memory", text + ": the history will not fit", fix))
    elif growth * MEMORY_MARGIN > free:
        findings.append(
            Finding(Level.WARN, "memory", text + f": under a {MEMORY_MARGIN:g}x margin", fix)
        )
    else:
        findings.append(Finding(Level.OK, "memory", text))
    return findings


async def _clock(client: aioredis.Redis, keys: Keys, warn_s: float) -> Finding:
    """This host's offset from the clock its monitors measure (`StoreBase.redis_time`)."""
    reading = await _try(FleetClock().measure(Store(client, keys).redis_time))
    if isinstance(reading, Exception):
        return Finding(
            Level.FAIL,
            "clock",
            f"Redis refused TIME ({reading}): every monitor falls back to its host's clock, and "
            "hosts whose clocks disagree see each other offline, or never offline",
            "ACL SETUSER <user> +time",
        )
    skew = reading.skew_s
    way = "ahead of" if skew > 0 else "behind"
    round_trip = f"round trip {reading.round_trip_s * 1000:.1f} ms"
    text = f"this host is {abs(skew):.3f} s {way} Redis's clock ({round_trip})"
    if abs(skew) > warn_s:
        return Finding(
            Level.WARN,
            "clock",
            f"{text}: over {warn_s:g} s; shardmon keeps fleet "
            "time by Redis's, but logs, alerts' wording and other tools use the host's",
            "fix this host's time sync (chrony or systemd-timesyncd)",
        )
    return Finding(Level.OK, "clock", text)


async def _permissions(client: aioredis.Redis, keys: Keys) -> Finding:
    """Each command shardmon sends, tried on a scratch key of the deployment's pattern."""
    scope = keys.prefix + "*"
    probe = client.register_script(lua("probe_commands"))
    try:
        denied = [str(c) for c in await probe(keys=[keys.doctor], args=probe_args())]
    except REDIS_FAILURES as exc:
        if classify(exc).outage:
            raise
        return Finding(
            Level.FAIL,
            "permissions",
            f"scripts refused ({classify(exc)}): shardmon writes through EVALSHA, SCRIPT LOAD "
            "and (in pipelines) SCRIPT EXISTS",
            f"ACL SETUSER <user> +evalsha +script|load +script|exists ~{scope}",
        )
    if isinstance(await _try(client.script_exists(probe.sha)), Exception):
        denied.append("SCRIPT|EXISTS")  # what a pipeline of scripts asks first
    if isinstance(await _try(_transaction(client, keys)), Exception):
        denied += ["WATCH", "MULTI", "EXEC"]
    if denied:
        allow = " ".join(f"+{command.lower()}" for command in denied)
        return Finding(
            Level.FAIL,
            "permissions",
            f"this user may not run {', '.join(denied)} on {scope}",
            f"ACL SETUSER <user> {allow} ~{scope}",
        )
    count = len(CLIENT_COMMANDS | SCRIPT_COMMANDS) + 6  # EVALSHA, SCRIPT EXISTS, the transaction
    return Finding(
        Level.OK, "permissions", f"all {count} commands shardmon sends are allowed on {scope}"
    )


async def _transaction(client: aioredis.Redis, keys: Keys) -> None:
    """WATCH, MULTI, GET and EXEC on the scratch key (another doctor's probe touching it
    meanwhile aborts the EXEC: the commands were allowed all the same)."""
    with contextlib.suppress(redis.WatchError):
        async with client.pipeline(transaction=True) as pipe:
            await pipe.watch(keys.doctor)
            pipe.multi()  # type: ignore[no-untyped-call]
            pipe.get(keys.doctor)
            await pipe.execute()


async def check_redis(
    client: aioredis.Redis,
    keys: Keys,
    *,
    shard_count: int,
    history_size: int,
    clock_skew_warn_s: float,
) -> list[Finding]:
    """Version, persistence, eviction, compression, memory, this host's clock and the user's
    permissions. An outage is one ❌ finding."""
    try:
        await client.ping()
        server = _Server(client)
        await server.read()
        return [
            await _version_finding(client, server),
            _persistence(server),
            _eviction(server),
            *await _memory(client, keys, server, shard_count, history_size),
            await _clock(client, keys, clock_skew_warn_s),
            await _permissions(client, keys),
        ]
    except REDIS_FAILURES as exc:
        return [
            Finding(
                Level.FAIL,
                "redis",
                f"unreachable or refusing: {classify(exc)}",
                "check SHARDMON_REDIS_URL (or _MODE, _SENTINELS) and that Redis runs",
            )
        ]


# -- the host ---------------------------------------------------------------------------------


def check_journal(path: Path) -> Finding:
    """Whether this host's restart journal can be appended to: its folder and an empty file
    are created, as a monitor would; nothing is written to it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8"):
            pass
    except OSError as exc:
        return Finding(
            Level.FAIL,
            "journal",
            f"{path} is not writable: {exc.strerror or exc}",
            "set SHARDMON_JOURNAL_PATH to a writable file, on a disk that survives "
            "restarts (a volume, in a container)",
        )
    return Finding(Level.OK, "journal", f"{path.absolute()} is writable")


# -- Discord ----------------------------------------------------------------------------------

GatewayBot = Callable[[], Awaitable[tuple[int, Any]]]


def gateway_bot_reader(api_url: str, token: SecretStr) -> GatewayBot:
    """GET {api_url}/gateway/bot with the bot's token: (HTTP status, JSON or None)."""

    async def read() -> tuple[int, Any]:
        import aiohttp

        headers = {
            "Authorization": f"Bot {token.get_secret_value()}",
            "User-Agent": "shardmon doctor",
        }
        timeout = aiohttp.ClientTimeout(total=DISCORD_TIMEOUT_S)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(f"{api_url.rstrip('/')}/gateway/bot", headers=headers) as response,
            ):
                payload = None
                with contextlib.suppress(ValueError, aiohttp.ContentTypeError):
                    payload = await response.json()
                return response.status, payload
        except aiohttp.ClientError as exc:  # a dropped connection, a bad URL: not OSErrors all
            raise ConnectionError(f"{type(exc).__name__}: {exc}") from None

    return read


async def check_discord(read: GatewayBot, shard_count: int, now: float) -> list[Finding]:
    """The token's session start limit, and whether the shard count fits Discord's advice."""
    try:
        status, payload = await read()
    except (OSError, TimeoutError) as exc:
        return [
            Finding(
                Level.WARN,
                "discord",
                f"not checked: Discord's API did not answer ({type(exc).__name__}: {exc})",
                "check the network, or SHARDMON_DISCORD_API_URL for a proxy",
            )
        ]
    if status == 401:
        return [
            Finding(
                Level.FAIL,
                "discord",
                "the bot token was refused (401)",
                "set SHARDMON_BOT_TOKEN to the token of the bot's application",
            )
        ]
    if status != 200 or not isinstance(payload, dict):
        return [
            Finding(
                Level.WARN,
                "discord",
                f"not checked: GET /gateway/bot answered {status}",
                "try again later; a 429 means this token is rate limited",
            )
        ]
    try:
        limit = SessionStartLimit.from_discord(payload.get("session_start_limit"), read_at=now)
        recommended = int(payload["shards"])
    except (MalformedData, KeyError, TypeError, ValueError) as exc:
        return [Finding(Level.WARN, "discord", f"not checked: not a /gateway/bot reply ({exc})")]
    resets = format_uptime(limit.reset_after_ms / 1000)
    budget = (
        f"{limit.remaining:,} of {limit.total:,} session starts left (resets in {resets}), "
        f"max_concurrency {limit.max_concurrency}"
    )
    findings = []
    if limit.remaining < shard_count:
        findings.append(
            Finding(
                Level.FAIL,
                "session starts",
                f"{budget}: fewer than the "
                f"{shard_count:,} shards; a full restart now would exhaust it",
                f"wait {resets} before restarting every shard; look for "
                "crash loops (shardmon stats)",
            )
        )
    elif limit.remaining < 2 * shard_count:
        findings.append(
            Finding(
                Level.WARN,
                "session starts",
                f"{budget}: fewer than two full restarts of {shard_count:,} shards",
                f"restart shards in batches, or wait {resets}",
            )
        )
    else:
        findings.append(Finding(Level.OK, "session starts", budget))
    if shard_count < recommended:
        findings.append(
            Finding(
                Level.WARN,
                "shard count",
                f"{shard_count:,} shard(s); Discord "
                f"recommends {recommended:,} for this bot's servers",
                f"set SHARDMON_SHARD_COUNT (and the bot's) to {recommended:,} "
                "or more: a shard may hold at most 2,500 servers",
            )
        )
    elif shard_count % limit.max_concurrency:
        findings.append(
            Finding(
                Level.WARN,
                "shard count",
                f"{shard_count:,} is not a multiple "
                f"of max_concurrency {limit.max_concurrency}: the last IDENTIFY "
                "bucket of a restart is partly empty",
                f"use a multiple of {limit.max_concurrency} shards",
            )
        )
    else:
        findings.append(
            Finding(
                Level.OK,
                "shard count",
                f"{shard_count:,} shard(s), Discord recommends {recommended:,}",
            )
        )
    return findings


# -- at a monitor's start ---------------------------------------------------------------------


async def log_failures(
    client: aioredis.Redis,
    keys: Keys,
    *,
    shard_count: int,
    history_size: int,
    clock_skew_warn_s: float,
    timeout_s: float = 30,
    retry_s: float = 30,
) -> list[Finding]:
    """The Redis checks, once Redis answers (tried every `retry_s` until then), with each ❌
    finding logged as an error: a monitor's start."""
    while True:
        try:
            async with asyncio.timeout(timeout_s):
                findings = await check_redis(
                    client,
                    keys,
                    shard_count=shard_count,
                    history_size=history_size,
                    clock_skew_warn_s=clock_skew_warn_s,
                )
        except TimeoutError:
            log.warning("shardmon doctor's Redis checks did not end within %s s", timeout_s)
            return []
        if [f.topic for f in findings] != ["redis"]:  # Redis answered
            break
        await asyncio.sleep(retry_s)  # an outage: the sampler reports it
    failed = [f for f in findings if f.level is Level.FAIL]
    for finding in failed:
        log.error("shardmon doctor: %s: %s (fix: %s)", finding.topic, finding.text, finding.fix)
    return failed


def report(findings: Sequence[Finding], *, as_json: bool) -> Any:
    if as_json:
        return {"exit_code": exit_code(findings), "findings": [f.to_dict() for f in findings]}
    counts = {level: sum(f.level is level for f in findings) for level in Level}
    summary = (
        f"{counts[Level.OK]} ok, {counts[Level.WARN]} warning(s), {counts[Level.FAIL]} failure(s)"
    )
    return "\n".join([*(f.line() for f in findings), "", summary])
