"""`shardmon run`, as an operator runs it: real `shardmon run` processes supervising real child
processes, on a real redis-server; what they did is read back from Redis (the restart events,
the `supervisors` hash, the alert records), not from the wall clock."""

from __future__ import annotations

import configparser
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer
from helpers import wait_for
from redis_server import RedisServer

from shardmon.keys import Keys
from shardmon.settings import Settings
from shardmon.supervisor import RunPolicy, exit_words, next_scheduled

DEPLOYMENT = "run"
KEYS = Keys(DEPLOYMENT)
#: A quick fleet: samples, polls and ticks every 0.2 s, back-off from 0.3 s.
QUICK = {"DEPLOYMENT": DEPLOYMENT, "SAMPLE_INTERVAL_S": "0.2", "LEADER_LEASE_S": "1.5",
         "RUN_BACKOFF_S": "0.3", "SHARD_COUNT": "4"}  # fmt: skip
#: A bot that crashes as Python does: a traceback on stderr, exit code 1.
CRASHING = ["-c", "import time; time.sleep(0.3); raise ValueError('the gateway loop died')"]
#: A bot that runs until stopped, and says its pid.
RUNNING = ["-c", "import os, time; print('up', os.getpid(), flush=True); time.sleep(600)"]


class Run:
    """One `shardmon run` process: its output in files, what it did in Redis."""

    def __init__(self, folder: Path, url: str, shards: str, child: list[str], **settings: str):
        self.folder = folder
        self.client = redis.Redis.from_url(url, decode_responses=True)
        folder.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHARDMON_")}
        env |= {f"SHARDMON_{name}": value for name, value in (QUICK | settings).items()}
        env |= {"SHARDMON_REDIS_URL": url, "SHARDMON_JOURNAL_PATH": str(folder / "journal.log")}
        self.out, self.err = (folder / "stdout").open("wb"), (folder / "stderr").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "shardmon.cli", "run", "--shards", shards, "--", *child],
            env=env, cwd=folder, stdout=self.out, stderr=self.err,
        )  # fmt: skip
        self.node = f"{os.uname().nodename}:{self.process.pid}"

    def state(self) -> dict[str, Any]:
        raw = self.client.hget(KEYS.supervisors, self.node)
        return json.loads(raw) if raw else {}

    def events(self, shard: int) -> list[dict[str, Any]]:
        """The shard's restart events, oldest first."""
        return [json.loads(e) for e in self.client.zrange(KEYS.shard_restarts(shard), 0, -1)]

    def wait(self, condition: Callable[[], bool], what: str, seconds: float = 20) -> None:
        wait_for(condition, seconds, what)

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def finish(self, seconds: float = 20) -> int:
        code = self.process.wait(seconds)
        self.out.close()
        self.err.close()
        return code

    def stdout(self) -> bytes:
        return (self.folder / "stdout").read_bytes()

    def stderr(self) -> str:
        return (self.folder / "stderr").read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.out.close()
        self.err.close()
        self.client.close()


@pytest.fixture
def runs(tmp_path: Path, redis_url: str) -> Iterator[Callable[..., Run]]:
    started: list[Run] = []

    def start(shards: str, child: list[str], *, url: str | None = None, **settings: str) -> Run:
        run = Run(tmp_path / f"run-{len(started)}", url or redis_url, shards,
                  [sys.executable, *child] if child[0].startswith("-") else child,
                  **settings)  # fmt: skip
        started.append(run)
        return run

    yield start
    for run in started:
        run.stop()


def _alerts(client: redis.Redis, rule: str) -> list[dict[str, Any]]:
    records = [json.loads(raw) for raw in client.lrange(KEYS.alerts, 0, -1)]
    return [r for r in reversed(records) if r["rule"] == rule]


def test_the_back_off_doubles_like_kubernetes_and_resets_after_a_healthy_run() -> None:
    policy = RunPolicy()
    assert [policy.backoff(n) for n in range(8)] == [0, 10, 20, 40, 80, 160, 300, 300]
    assert RunPolicy(backoff_s=0.5, backoff_max_s=1).backoff(3) == 1
    assert exit_words(3) == "exited with code 3" and exit_words(-9) == "killed by SIGKILL"
    day = 1_800_000_000.0 - 1_800_000_000.0 % 86400  # a midnight, UTC
    assert next_scheduled(["04:00", "16:30"], day + 3600) == day + 4 * 3600
    assert next_scheduled(["04:00"], day + 5 * 3600) == day + 86400 + 4 * 3600
    assert next_scheduled([], day) is None


def test_a_crash_loop_backs_off_doubling_then_pauses_and_alerts_once(
    runs: Callable[..., Run], redis_url: str
) -> None:
    run = runs("0", CRASHING)
    run.wait(lambda: run.state().get("state") == "paused", "the storm pause")
    events = run.events(0)
    assert [e["type"] for e in events] == ["startup", "crash", "crash", "crash"]
    crashes = [e["metadata"] for e in events[1:]]
    assert [c["exit_code"] for c in crashes] == [1, 1, 1]
    assert all(c["error"].endswith("exited with code 1") for c in crashes)
    assert all(c["traceback"].rstrip().endswith("ValueError: the gateway loop died")
               for c in crashes)  # fmt: skip
    # the recorded schedule: 0.3 s, doubled, then no restart (paused) at the third crash
    assert [c["restart_in_s"] for c in crashes] == [0.3, 0.6, None]
    state = run.state()
    assert (
        state["failures"] == 3
        and "lift with `shardmon run --resume --shards 0`" in (state["reason"])
    )
    run.wait(lambda: len(_alerts(run.client, "restarts_held")) == 1, "the held alert")
    time.sleep(1.5)  # seven more ticks of the leader while paused: said once, not again
    held = _alerts(run.client, "restarts_held")
    assert [(a["kind"], a["shards"]) for a in held] == [("alert", [0])]
    assert "3 crashes within 1h 0m: restarts paused" in held[0]["body"]
    assert len(run.events(0)) == 4  # no restart while paused

    resume = subprocess.run(
        [sys.executable, "-m", "shardmon.cli", "run", "--resume", "--shards", "0"],
        env=_cli_env(redis_url),
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert resume.returncode == 0, resume.stderr
    assert resume.stdout.strip() == f"shard 0: resume taken by {run.node}"
    run.wait(lambda: len(run.events(0)) >= 5, "a crash after the resume")
    assert run.events(0)[4]["metadata"]["restart_in_s"] == 0.3  # the back-off starts over
    run.wait(lambda: [a["kind"] for a in _alerts(run.client, "restarts_held")] ==
             ["alert", "resolved"], "the resolution")  # fmt: skip
    run.signal(signal.SIGTERM)
    assert run.finish() in (0, 1)  # stopped in a back-off (0) or with a child running (1)
    assert run.state() == {}  # a clean stop forgets the supervisor's entry


def _cli_env(redis_url: str) -> dict[str, str]:
    """The environment of an operator's `shardmon` command on this fleet."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHARDMON_")}
    return env | {"SHARDMON_REDIS_URL": redis_url, "SHARDMON_DEPLOYMENT": DEPLOYMENT,
                  "SHARDMON_SAMPLE_INTERVAL_S": "0.2", "SHARDMON_SHARD_COUNT": "4"}  # fmt: skip


def _pid(run: Run) -> int | None:
    pid = run.state().get("pid")
    return int(pid) if pid else None


def test_a_killed_child_is_a_crash_and_is_restarted(runs: Callable[..., Run]) -> None:
    run = runs("1", RUNNING)
    run.wait(lambda: _pid(run) is not None, "the child")
    first = _pid(run)
    assert first is not None
    os.kill(first, signal.SIGKILL)
    run.wait(lambda: _pid(run) not in (None, first), "the restarted child")
    crash = run.events(1)[1]
    assert crash["type"] == "crash" and crash["metadata"]["exit_code"] == -9
    assert crash["metadata"]["error"].endswith("killed by SIGKILL")
    run.signal(signal.SIGTERM)
    assert run.finish() == 128 + signal.SIGTERM  # the child's death by SIGTERM, as a shell says


def test_a_clean_exit_ends_the_supervisor_without_a_restart(runs: Callable[..., Run]) -> None:
    run = runs("2", ["-c", "print('done')"])
    assert run.finish() == 0
    assert [e["type"] for e in run.events(2)] == ["startup"]
    assert run.stdout() == b"done\n"


def test_a_child_that_ignores_sigterm_is_killed_after_the_timeout(
    runs: Callable[..., Run],
) -> None:
    child = ["-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
             "print('stubborn', flush=True); time.sleep(600)"]  # fmt: skip
    run = runs("0", child, RUN_STOP_TIMEOUT_S="0.5")
    run.wait(lambda: run.stdout() == b"stubborn\n", "the child")
    run.signal(signal.SIGTERM)
    assert run.finish() == 128 + signal.SIGKILL
    assert "the child ignored SIGTERM for 0.5 s: SIGKILL" in run.stderr()


def test_sigterm_ends_with_the_childs_own_code(runs: Callable[..., Run]) -> None:
    child = ["-c", "import signal, sys, time; "
             "signal.signal(signal.SIGTERM, lambda *a: sys.exit(5)); "
             "print('ready', flush=True); time.sleep(600)"]  # fmt: skip
    run = runs("0", child)
    run.wait(lambda: run.stdout() == b"ready\n", "the child")
    run.signal(signal.SIGINT)
    assert run.finish() == 5


def test_sighup_restarts_the_child_as_a_manual_restart(runs: Callable[..., Run]) -> None:
    run = runs("3", RUNNING)
    run.wait(lambda: _pid(run) is not None, "the child")
    first = _pid(run)
    run.signal(signal.SIGHUP)
    run.wait(lambda: _pid(run) not in (None, first), "the new child")
    manual = run.events(3)[1]
    assert manual["type"] == "manual" and manual["metadata"]["reason"] == "SIGHUP"
    assert [e["type"] for e in run.events(3)] == ["startup", "manual"]


def test_a_command_that_cannot_start_is_a_clear_error_not_a_loop(
    runs: Callable[..., Run],
) -> None:
    run = runs("0", ["/nonexistent/bot"])
    assert run.finish() == 127
    assert "shardmon run: cannot start '/nonexistent/bot': No such file or directory" in (
        run.stderr()
    )
    assert [e["type"] for e in run.events(0)] == []  # nothing started: nothing restarted


def test_the_childs_output_passes_through_unchanged(runs: Callable[..., Run]) -> None:
    child = ["-c", "import sys; sys.stdout.buffer.write(b'out \\xe9\\x00 raw\\n'); "
             "sys.stderr.buffer.write(b'err \\xff line\\n')"]  # fmt: skip
    run = runs("0", child)
    assert run.finish() == 0
    assert run.stdout() == b"out \xe9\x00 raw\n"
    assert (run.folder / "stderr").read_bytes().count(b"err \xff line\n") == 1


def test_a_low_identify_budget_holds_the_restart_until_it_resets(
    runs: Callable[..., Run], redis_url: str
) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    now = float(client.time()[0])
    client.hset(KEYS.session_start_limit, mapping={  # as a leader stored it: 1 left, floor 2
        "total": 1000, "remaining": 1, "reset_after_ms": 4000, "max_concurrency": 1,
        "read_at": now, "synthetic": 0,
    })  # fmt: skip
    run = runs("0", RUNNING)
    run.wait(lambda: run.state().get("state") == "held", "the hold")
    state = run.state()
    assert "1 of 1,000 session starts left, below 2" in state["reason"]
    assert state["until"] == pytest.approx(now + 4 + 1, abs=0.5)
    run.wait(lambda: len(_alerts(client, "restarts_held")) == 1, "the held alert")
    assert "Discord's reset" in _alerts(client, "restarts_held")[0]["body"]
    run.wait(lambda: run.events(0) != [], "the start after the reset")
    assert run.events(0)[0]["type"] == "startup"
    assert float(run.events(0)[0].get("fleet_ts") or _ts(run.events(0)[0])) >= now + 4
    client.close()


def _ts(event: dict[str, Any]) -> float:
    from datetime import datetime

    return datetime.fromisoformat(event["timestamp"]).timestamp()


async def test_the_budget_is_read_from_discord_with_the_token(
    runs: Callable[..., Run], redis_url: str
) -> None:
    """With a bot token, the supervisor asks Discord (a local stand-in of GET /gateway/bot):
    nothing left, resetting in 3 s, then a fresh budget."""
    seen: list[str] = []
    started = time.time()

    async def gateway_bot(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        remaining = 0 if time.time() - started < 3 else 1000
        limit = {"total": 1000, "remaining": remaining,
                 "reset_after": max(0, int((started + 3 - time.time()) * 1000)),
                 "max_concurrency": 1}  # fmt: skip
        return web.json_response({"url": "wss://x", "shards": 1, "session_start_limit": limit})

    app = web.Application()
    app.router.add_get("/api/v10/gateway/bot", gateway_bot)
    async with TestServer(app, host="127.0.0.1") as discord:
        run = runs("0", RUNNING, BOT_TOKEN="tok.en",
                   DISCORD_API_URL=str(discord.make_url("/api/v10")))  # fmt: skip
        deadline = time.monotonic() + 20
        while not run.events(0) and time.monotonic() < deadline:
            await _sleep(0.1)
        assert [e["type"] for e in run.events(0)] == ["startup"]
        assert _ts(run.events(0)[0]) >= started + 3  # held until the reset
    assert seen and set(seen) == {"Bot tok.en"}
    assert "tok.en" not in run.stderr()


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


def test_shardmon_restart_reaches_the_right_supervisor_among_three(
    runs: Callable[..., Run], redis_url: str
) -> None:
    fleet = [runs(str(shard), RUNNING) for shard in range(3)]
    for run in fleet:
        run.wait(lambda run=run: _pid(run) is not None, "every child")  # type: ignore[misc]
    pids = [_pid(run) for run in fleet]
    env = _cli_env(redis_url)
    asked = subprocess.run(
        [sys.executable, "-m", "shardmon.cli", "restart", "--shards", "1", "--reason", "hotfix"],
        env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert asked.returncode == 0, asked.stderr
    assert asked.stdout.strip() == f"shard 1: restart taken by {fleet[1].node}"
    fleet[1].wait(lambda: _pid(fleet[1]) not in (None, pids[1]), "shard 1's new child")
    manual = fleet[1].events(1)[-1]
    assert manual["type"] == "manual" and manual["metadata"]["reason"] == "hotfix"
    assert manual["metadata"]["requested_by"].endswith(f"@{os.uname().nodename}")
    assert [_pid(fleet[0]), _pid(fleet[2])] == [pids[0], pids[2]]
    assert [e["type"] for e in fleet[0].events(0) + fleet[2].events(2)] == ["startup"] * 2
    nobody = subprocess.run(
        [sys.executable, "-m", "shardmon.cli", "restart", "--shards", "3"],
        env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert nobody.returncode == 1
    assert "no supervisor (shardmon run) reports shard(s) 3: not asked" in nobody.stderr
    assert not redis.Redis.from_url(redis_url).hexists(KEYS.run_requests, "3")


def test_the_supervisor_outlives_a_redis_outage_and_still_restarts(
    runs: Callable[..., Run], own_redis: RedisServer, tmp_path: Path
) -> None:
    starts = tmp_path / "starts"
    child = ["-c", f"import time; open({str(starts)!r}, 'a').write('start\\n'); "
             "time.sleep(1); raise SystemExit(3)"]  # fmt: skip
    run = runs("0", child, url=own_redis.url, RUN_BACKOFF_S="0.2", RUN_MAX_RESTARTS="100")
    run.wait(lambda: len(run.events(0)) >= 2, "a first crash in Redis")
    own_redis.kill()
    before = starts.read_text().count("start")
    wait_for(lambda: starts.read_text().count("start") >= before + 2, 20, "restarts in the outage")
    assert run.process.poll() is None  # the supervisor runs on
    own_redis.start()  # empty: the journal brings the events back
    client = redis.Redis.from_url(own_redis.url, decode_responses=True)
    crashes = before + 1

    def replayed() -> bool:
        types = [json.loads(e)["type"] for e in client.zrange(KEYS.shard_restarts(0), 0, -1)]
        return types.count("crash") >= crashes and types[0] == "startup"

    wait_for(replayed, 30, "the outage's crashes replayed from the journal")
    client.close()


def test_a_new_version_restarts_the_child_as_a_deployment(
    runs: Callable[..., Run], tmp_path: Path
) -> None:
    version = tmp_path / "VERSION"
    version.write_text("1.0.0\n")
    run = runs("2", RUNNING, RUN_VERSION_FILE=str(version))
    run.wait(lambda: _pid(run) is not None, "the child")
    first = _pid(run)
    version.write_text("1.1.0\n")  # a deploy script put the new code in place
    run.wait(lambda: _pid(run) not in (None, first), "the child of the new version")
    deployment = run.events(2)[-1]
    assert deployment["type"] == "deployment" and deployment["version"] == "1.1.0"
    assert deployment["metadata"] == {"from": "1.0.0"}


ROOT = Path(__file__).resolve().parent.parent
#: A bot that crashes on its first start and runs on its second: a mended crash.
MENDED = """import pathlib, sys, time
marker = pathlib.Path(sys.argv[1])
if not marker.exists():
    marker.write_text("crashed once")
    raise SystemExit("first start: the bot fell over")
print("running", flush=True)
time.sleep(600)
"""


def _example_env(redis_url: str, tmp_path: Path, **more: str) -> dict[str, str]:
    """.env.example's settings (no bot token: no Discord here), on the test's Redis."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHARDMON_")}
    for line in (ROOT / ".env.example").read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.startswith("#") and name != "SHARDMON_BOT_TOKEN":
            env[name] = value
    return env | {"SHARDMON_REDIS_URL": redis_url, "SHARDMON_JOURNAL_PATH":
                  str(tmp_path / "journal.log"), "SHARDMON_SAMPLE_INTERVAL_S": "0.2",
                  "SHARDMON_RUN_BACKOFF_S": "0.2", **more}  # fmt: skip


def _supervised(command: list[str], env: dict[str, str], tmp_path: Path, shard: int) -> None:
    """Run `command` (a `shardmon run` as a unit or a service says it) until its bot crashed,
    was restarted, and was restarted again on SIGHUP; then stop it with SIGTERM."""
    client = redis.Redis.from_url(env["SHARDMON_REDIS_URL"], decode_responses=True)
    keys = Keys(env["SHARDMON_DEPLOYMENT"])

    def types() -> list[str]:
        return [json.loads(e)["type"] for e in client.zrange(keys.shard_restarts(shard), 0, -1)]

    with (tmp_path / "out").open("wb") as out:
        supervisor = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=out,
                                      stderr=subprocess.STDOUT)  # fmt: skip
        try:
            wait_for(lambda: (tmp_path / "out").read_bytes().count(b"running") == 1, 20,
                     "the bot running after its crash")  # fmt: skip
            assert types() == ["startup", "crash"]
            supervisor.send_signal(signal.SIGHUP)  # systemctl reload; docker compose kill -s HUP
            wait_for(lambda: types() == ["startup", "crash", "manual"], 20, "the reload")
            wait_for(lambda: (tmp_path / "out").read_bytes().count(b"running") == 2, 20,
                     "the bot running again")  # fmt: skip
            supervisor.send_signal(signal.SIGTERM)  # systemctl stop; docker compose stop
            assert supervisor.wait(30) == 128 + signal.SIGTERM
        finally:
            if supervisor.poll() is None:
                supervisor.kill()
                supervisor.wait()
            client.close()


def test_the_systemd_unit_of_the_readme_runs_the_bot_under_shardmon_run(
    tmp_path: Path, redis_url: str
) -> None:
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.optionxform = str  # type: ignore[assignment, method-assign]
    unit.read(ROOT / "contrib" / "systemd" / "mybot.service")
    service = unit["Service"]
    argv = shlex.split(service["ExecStart"])
    assert argv[0] == "/opt/mybot/.venv/bin/shardmon" and argv[1:5] == ["run", "--shards", "0-15",
                                                                        "--"]  # fmt: skip
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["KillSignal"] == "SIGTERM" and service["Restart"] == "on-failure"
    stop_timeout = Settings.model_fields["run_stop_timeout_s"].default
    assert float(service["TimeoutStopSec"]) > stop_timeout  # the supervisor kills a stuck bot
    bot = tmp_path / "bot.py"
    bot.write_text(MENDED)
    # as systemd runs it, with this machine's Python in place of /opt/mybot/.venv
    command = [sys.executable, "-m", "shardmon.cli", *argv[1:5], sys.executable, str(bot),
               str(tmp_path / "marker")]  # fmt: skip
    env = _example_env(redis_url, tmp_path, SHARDMON_SHARD_COUNT="16")
    _supervised(command, env, tmp_path, shard=3)


def test_the_compose_services_run_their_bot_under_shardmon_run(
    tmp_path: Path, redis_url: str
) -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    service = services["shard-2-3"]
    command = service["command"]
    assert command == ["shardmon", "run", "--", "python", "-m", "shardmon.bot"]
    assert service["restart"] == "on-failure"
    grace = float(str(service["stop_grace_period"]).removesuffix("s"))
    assert grace > Settings.model_fields["run_stop_timeout_s"].default
    bot = tmp_path / "bot.py"
    bot.write_text(MENDED)
    env = _example_env(redis_url, tmp_path) | {
        name: str(value) for name, value in service["environment"].items()
        if name not in ("SHARDMON_REDIS_URL", "SHARDMON_JOURNAL_PATH")
    }  # fmt: skip
    # as the container runs it, with the bot of this test in place of the reference bot
    argv = [sys.executable, "-m", "shardmon.cli", *command[1:3], sys.executable, str(bot),
            str(tmp_path / "marker")]  # fmt: skip
    _supervised(argv, env, tmp_path, shard=2)


def test_it_samples_a_plain_child_and_stands_aside_for_one_that_samples_itself(
    runs: Callable[..., Run],
) -> None:
    plain = runs("0", RUNNING)
    plain.wait(lambda: _latest_node(plain, 0) == plain.node, "the supervisor's sample")
    # a child that runs a monitor of its own (as a bot with the extension does)
    monitored = runs("1", ["-m", "shardmon.node"])
    monitored.wait(lambda: _pid(monitored) is not None, "the child")
    child_node = f"{os.uname().nodename}:{_pid(monitored)}"
    monitored.wait(lambda: _latest_node(monitored, 1) == child_node, "the child's own sample")
    for _ in range(10):  # two seconds of ten sampling intervals: the child's samples alone
        assert _latest_node(monitored, 1) == child_node
        time.sleep(0.2)
    # one startup per process: the supervisor's, not the child monitor's as well
    assert [e["type"] for e in monitored.events(1)] == ["startup"]


def _latest_node(run: Run, shard: int) -> str | None:
    raw = run.client.hget(KEYS.latest, str(shard))
    return json.loads(raw)["node"] if raw else None
