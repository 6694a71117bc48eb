"""/metrics of a real fleet (checked by promtool) and each process's /healthz."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import shutil
import time
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer
from helpers import wait_until
from redis_server import RedisServer, free_port

from shardmon.connection import create_redis
from shardmon.exporter import make_app
from shardmon.keys import Keys
from shardmon.models import GatewayState, SessionStartLimit
from shardmon.monitor import GatewayStats, MonitorConfig, build_monitor
from shardmon.rules import Limits
from shardmon.store import Store

#: Shard 0's gateway is down while its process reports; shard 1's is up.
GATEWAYS = {
    0: GatewayState(connected=False, since_s=300, last_connect=1.0, disconnects_total=4,
                    dispatch_age_s=310, stalls_total=2),
    1: GatewayState(connected=True, since_s=60, last_connect=1.0, dispatch_age_s=1.5),
}  # fmt: skip


async def _fleet(config: MonitorConfig, client: aioredis.Redis, tmp_path: Path) -> None:
    for shard in (0, 1):
        monitor = build_monitor(
            dataclasses.replace(config, shard_ids=(shard,), node=f"h:{shard}",
                                journal_path=tmp_path / f"{shard}.log"),
            client, gateway=lambda s: GatewayStats(42.0, 7, 70, GATEWAYS[s]),
        )  # fmt: skip
        await monitor.sample_once()
        await monitor.log_restart("startup")
    for _ in range(3):
        await monitor.log_restart("crash")
    await client.set(Keys(config.deployment).leader, "h:1")
    await client.set(Keys(config.deployment).leader_epoch, "4")
    await client.hset(Keys(config.deployment).alert_counts, mapping={"memory:alert": 2, "bad": "x"})
    await Store(client, Keys(config.deployment)).write_session_limit(
        SessionStartLimit(
            total=1000,
            remaining=640,
            reset_after_ms=3_600_000,
            max_concurrency=16,
            read_at=time.time(),
        )
    )


async def _scrape(store: Store, accept: str = "text/plain") -> tuple[int, str, str]:
    app = make_app(store.client, store.keys, Limits(), shard_count=4)
    async with TestClient(TestServer(app)) as http:
        response = await http.get("/metrics", headers={"Accept": accept})
        return response.status, response.headers["Content-Type"], await response.text()


async def test_metrics_of_the_fleet_pass_promtool(
    config: MonitorConfig, client: aioredis.Redis, keys: Keys, tmp_path: Path
) -> None:
    await _fleet(config, client, tmp_path)
    status, content_type, text = await _scrape(Store(client, keys))
    assert status == 200 and content_type.startswith("text/plain; version=0.0.4")
    assert 'shardmon_shard_up{shard="1"} 1' in text
    # A live process whose gateway is down is not up, and says why.
    assert 'shardmon_shard_up{shard="0"} 0.0' in text
    assert 'shardmon_shard_connected{shard="0"} 0.0' in text
    assert 'shardmon_shard_connected{shard="1"} 1.0' in text
    assert re.search(r'shardmon_shard_dispatch_age_seconds\{shard="0"\} 31\d\.', text)
    assert 'shardmon_shard_gateway_disconnects_total{shard="0"} 4.0' in text
    assert 'shardmon_shard_loop_stalls_total{shard="0"} 2.0' in text
    assert "shardmon_session_start_remaining 640.0" in text
    assert "shardmon_session_start_limit 1000.0" in text
    assert "shardmon_session_start_max_concurrency 16.0" in text
    assert re.search(r"shardmon_session_start_reset_seconds 3\d{3}\.", text)
    assert 'shardmon_shard_guilds{shard="0"} 7.0' in text
    assert 'shardmon_shard_users{shard="0"} 70.0' in text
    assert 'shardmon_shard_gateway_latency_seconds{shard="0"} 0.042' in text
    assert 'shardmon_restarts_total{shard="1",type="crash"} 3.0' in text
    assert 'shardmon_restart_storm_restarts{shard="1"} 4.0' in text
    assert 'shardmon_leader_info{node="h:1"} 1.0' in text and "shardmon_leader_epoch 4.0" in text
    assert 'shardmon_alerts_total{kind="alert",rule="memory"} 2.0' in text
    # Each node's clock against Redis's (the same host here: within a second).
    skews = re.findall(r'shardmon_clock_skew_seconds\{node="(h:\d)"\} (\S+)', text)
    assert [node for node, _ in skews] == ["h:0", "h:1"]
    assert all(abs(float(skew)) < 1 for _, skew in skews)
    assert re.search(r'shardmon_malformed_values\{key="[^"]+alert_counts"\} 1.0', text)
    # A prune does not lower the restart counter; garbage is counted once a scrape.
    await Store(client, keys).prune_restarts(time.time() + 60)
    _, _, again = await _scrape(Store(client, keys))
    assert 'shardmon_restarts_total{shard="1",type="crash"} 3.0' in again
    assert re.search(r'shardmon_malformed_values\{key="[^"]+alert_counts"\} 1.0', again)
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is missing: `make test` installs Debian's prometheus"
    check = await asyncio.create_subprocess_exec(
        promtool, "check", "metrics", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    report, _ = await check.communicate(text.encode())
    assert check.returncode == 0, report.decode()


async def test_metrics_say_503_while_redis_is_down(own_redis: RedisServer, keys: Keys) -> None:
    client = create_redis(own_redis.url, timeout_s=0.3)
    own_redis.kill()
    status, _, text = await _scrape(Store(client, keys))
    assert status == 503 and text.startswith("Redis unavailable")
    await client.aclose()


async def test_healthz_follows_the_sampling_loop_and_redis(
    config: MonitorConfig, own_redis: RedisServer
) -> None:
    port = free_port()
    client = create_redis(own_redis.url, timeout_s=0.3)
    monitor = build_monitor(
        dataclasses.replace(config, health_port=port, sample_interval_s=0.2, leader_eligible=False),
        client,
    )
    await monitor.start()
    url = f"http://127.0.0.1:{port}/healthz"

    async def sampled() -> bool:
        return monitor.sampler.last_tick is not None

    await wait_until(sampled)
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as response:
            assert response.status == 200 and (await response.json())["redis"] == "ok"
        own_redis.kill()
        async with http.get(url) as response:
            report = await response.json()
            assert response.status == 503 and report["status"] == "unhealthy"
        async with http.get(url.replace("healthz", "livez")) as response:
            assert response.status == 200  # the loop still ticks: no reason to restart the bot
        own_redis.start()
        await monitor.stop()  # the loop stops: only a started monitor serves /healthz
        with pytest.raises(aiohttp.ClientConnectionError):
            await http.get(url)
    await client.aclose()


async def test_an_openmetrics_scraper_gets_openmetrics(
    config: MonitorConfig, client: aioredis.Redis, keys: Keys, tmp_path: Path
) -> None:
    await _fleet(config, client, tmp_path)
    accept = "application/openmetrics-text; version=1.0.0,text/plain;version=0.0.4;q=0.5"
    status, content_type, text = await _scrape(Store(client, keys), accept)
    assert status == 200 and content_type.startswith("application/openmetrics-text")
    assert text.endswith("# EOF\n")
    # Counters keep their names: the family drops `_total`, its samples carry it.
    assert "# TYPE shardmon_restarts counter" in text
    assert 'shardmon_restarts_total{shard="1",type="crash"} 3.0' in text


async def test_the_grafana_dashboard_and_the_alert_rules_name_only_served_metrics(
    config: MonitorConfig, client: aioredis.Redis, keys: Keys, tmp_path: Path
) -> None:
    await _fleet(config, client, tmp_path)
    _, _, text = await _scrape(Store(client, keys))
    served = set(re.findall(r"^(shardmon_\w+)[{ ]", text, re.M))
    contrib = Path(__file__).parent.parent / "contrib"
    dashboard = json.loads((contrib / "grafana" / "shardmon.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    rules = (contrib / "prometheus" / "shardmon.rules.yml").read_text()
    named = set(re.findall(r"\bshardmon_\w+", " ".join(exprs) + rules))
    assert named and named <= served, named - served
    # Importable as is: its data source is an input, every panel uses it, ids are unique.
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert all(p["datasource"]["uid"] == "${DS_PROMETHEUS}" for p in panels)
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
