"""The dashboard and the status page in a real browser (Debian's chromium, driven by
Playwright) over a real redis-server holding a fleet of real monitor processes: the grid's
tiles and colours, a chart's data, the live update after a shard dies, "find my shard", and a
status page that holds no private field. Screenshots go to test-artifacts/ (or
$SHARDMON_TEST_ARTIFACTS): look at them."""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from aiohttp.test_utils import TestServer
from helpers import artifacts, event
from playwright.async_api import Browser, Page, async_playwright

from shardmon.connection import create_redis
from shardmon.demo.__main__ import GATEWAY_DROP
from shardmon.demo.fleet import LocalFleet
from shardmon.gateway import shard_for_guild
from shardmon.keys import Keys
from shardmon.rules import Limits
from shardmon.store import Store
from shardmon.web import BoardSettings, make_app
from shardmon.web.payloads import PUBLIC_FIELDS

ROOT = Path(__file__).resolve().parent.parent
SHARDS = 6  # processes run shards 0-4; shard 5 never reports
DEPLOYMENT = "browser"
KEYS = Keys(DEPLOYMENT)
SETTINGS = {
    "deployment": DEPLOYMENT, "sample_interval_s": "0.5", "leader_lease_s": "1.5",
    "disconnected_after_s": "10", "system_name": "Browser Bot", "version": "9.8.7",
    # this machine's own CPU and memory stay out of the colours: a busy CI crosses 85% CPU
    "cpu_critical": "100", "memory_critical": "100",
}  # fmt: skip
#: Chromium as this machine runs it: no network beyond loopback, no sandbox for root.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    executable = shutil.which("chromium")
    assert executable, "no chromium: `make test` installs Debian's package"
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


@pytest.fixture
def fleet(redis_url: str, tmp_path: Path) -> Iterator[LocalFleet]:
    """Demo nodes (monitors with synthetic gateways) for shards 0-4 of 6."""
    with LocalFleet(redis_url, SHARDS, SETTINGS, tmp_path, module="shardmon.demo") as nodes:
        for shard in range(SHARDS - 1):
            nodes.start(shard)
        yield nodes


def _states(client: redis.Redis) -> str:
    return str(client.get(KEYS.shard_states) or "")


async def _wait_states(client: redis.Redis, wanted: str, seconds: float = 20) -> None:
    """Until the leader has written the grid `wanted`."""
    deadline = time.monotonic() + seconds
    while _states(client) != wanted:
        assert time.monotonic() < deadline, f"grid {_states(client)!r}, not {wanted!r}"
        await asyncio.sleep(0.1)


@pytest.fixture
async def dashboard(redis_url: str) -> AsyncIterator[str]:
    client = create_redis(redis_url)
    settings = BoardSettings(
        deployment=DEPLOYMENT, system_name="Browser Bot", shard_count=SHARDS,
        limits=Limits({"disconnected_after_s": 10.0}, interval_s=0.5), warn_level=70.0,
        clock_skew_warn_s=2.0, refresh_s=0.5,
    )  # fmt: skip
    server = TestServer(make_app(client, KEYS, settings), host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("")).rstrip("/")
    await server.close()
    await client.aclose()


async def _history(redis_url: str, now: float) -> int:
    """What a fleet leaves in the last hour before the test's starts: 40 minutes of rollups
    (5 samples a minute, memory and CPU in a wave), a crash loop of shard 3 half an hour ago
    (4 crashes) and its restart storm alert. Returns the storm alert's time."""
    client = create_redis(redis_url)
    store = Store(client, KEYS)
    current = int(now // 60 * 60)
    for minute in range(current - 55 * 60, current - 14 * 60, 60):
        wave = math.sin(minute / 600)
        memory, cpu, latency = 3000 + 800 * wave, 2000 + 1200 * wave, 5500 + 900 * wave
        await client.hset(KEYS.rollup_minute(minute), mapping={
            "n": 5, "mem_sum": int(5 * memory), "mem_min": int(memory - 400),
            "mem_max": int(memory + 600), "cpu_sum": int(5 * cpu), "cpu_min": int(cpu - 900),
            "cpu_max": int(cpu + 2500), "lat_n": 5, "lat_sum": int(5 * latency),
            "lat_min": int(latency - 1500), "lat_max": int(latency + 3000),
        })  # fmt: skip
    storm_at = now - 1800
    for crash in range(4):
        await store.record_restart(
            event("crash", (3,), at=storm_at - 60 + 15 * crash, error="RuntimeError: boom")
        )
    await store.record_alert(
        {"id": "storm", "kind": "alert", "rule": "restart_storm", "shards": [3],
         "title": "🚨 Restart Storm Detected", "body": "4 restarts in the last hour", "epoch": 1,
         "node": "earlier:1", "ts": storm_at, "since": None, "delivered": True},
        "restart_storm:alert",
    )  # fmt: skip
    await client.aclose()
    return int(storm_at)


async def _until(page: Page, expression: str, arg: Any = None, seconds: float = 20) -> None:
    """Until the page's `expression` (a function of `arg`) is true. Playwright's own
    wait_for_function evaluates strings in the page, which the dashboard's CSP forbids."""
    deadline = time.monotonic() + seconds
    while not await page.evaluate(expression, arg):
        assert time.monotonic() < deadline, f"not within {seconds} s: {expression}"
        await asyncio.sleep(0.05)


async def _tile_colours(page: Page) -> list[str | None]:
    return await page.evaluate(
        "n => Array.from({length: n}, (_, i) => window.shardmon.grid.colourAt(i))", SHARDS
    )


async def _palette(page: Page, names: list[str]) -> list[str]:
    """The page's colours of `names` as the canvas draws them, `rgb(r, g, b)`."""
    return await page.evaluate(
        """names => names.map(name => {
            const ctx = document.createElement("canvas").getContext("2d");
            ctx.fillStyle = window.shardmonCommon.paletteColour(name);
            ctx.fillRect(0, 0, 1, 1);
            const [r, g, b] = ctx.getImageData(0, 0, 1, 1).data;
            return `rgb(${r}, ${g}, ${b})`;
        })""",
        names,
    )


async def test_the_dashboard_shows_the_fleet_and_follows_it_live(
    browser: Browser,
    fleet: LocalFleet,
    dashboard: str,
    redis_url: str,
) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    await _wait_states(client, "UUUUU.")
    client.hset(KEYS.thresholds, "memory:1", "0.5")  # shard 1 is "above" its memory threshold
    fleet.signal(0, GATEWAY_DROP)  # shard 0's gateway drops while its process runs on
    await _wait_states(client, "RWUUU.")
    now = float(client.time()[0])
    storm_at = await _history(redis_url, now)
    # A minute of rollup 10 minutes ago, written as the write script writes it: 2 samples.
    minute = int(now // 60 * 60) - 600
    client.hset(KEYS.rollup_minute(minute), mapping={
        "n": 2, "mem_sum": 10_000, "mem_min": 4_000, "mem_max": 6_000, "cpu_sum": 3_000,
        "cpu_min": 1_000, "cpu_max": 2_000, "lat_n": 2, "lat_sum": 12_000, "lat_min": 5_000,
        "lat_max": 7_000,
    })  # fmt: skip
    await _wait_states(client, "RWUWU.")  # shard 3's crash loop is a storm: degraded too

    page = await browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(f"{dashboard}/")
    await _until(page, "() => window.shardmon && window.shardmon.updates > 0")
    await _until(page, "() => window.shardmon.historyUpdates > 0")

    tones = ["degraded", "degraded", "up", "degraded", "up", "unknown"]  # R W U W U .
    assert await _tile_colours(page) == await _palette(page, tones)
    groups = await page.evaluate("window.shardmon.grid.blocks.map(b => b.group.label)")
    assert groups == [f"{fleet.node(shard)} (1)" for shard in range(5)] + ["never seen (1)"]

    # hover shard 1's tile: its figures, read for that shard alone
    centre = await page.evaluate("window.shardmon.grid.centre(1)")
    box = await page.locator("#grid").bounding_box()
    assert box is not None
    await page.mouse.move(box["x"] + centre["x"], box["y"] + centre["y"])
    tooltip = page.locator("#tooltip")
    await tooltip.wait_for(state="visible")
    await _until(page, "() => document.getElementById('tooltip').textContent.includes('CPU')")
    said = await tooltip.text_content() or ""
    assert said.startswith("Shard 1: up, a rule fires on it") and fleet.node(1) in said
    assert "servers 937" in said  # the demo node's synthetic guilds of shard 1

    # the memory chart holds the rollup's minute: average 50%, peak 60%, low 40%
    point = await page.evaluate(
        """t => { const u = window.shardmon.charts.memory, i = u.data[0].indexOf(t);
                  return i < 0 ? null : [u.data[1][i], u.data[2][i], u.data[3][i]]; }""",
        minute,
    )
    assert point == [50, 60, 40]
    latency = await page.evaluate(
        "t => { const u = window.shardmon.charts.latency; "
        "return u.data[1][u.data[0].indexOf(t)]; }",
        minute,
    )
    assert latency == 60
    storms = await page.evaluate("window.shardmon.history.storms")
    # the storm alerted half an hour ago, and again by this fleet's leader (still a storm)
    assert [int(storm["ts"]) for storm in storms][:1] == [storm_at]
    assert all(storm["ts"] > now - 60 and storm["shards"] == [3] for storm in storms[1:])
    restarts = await page.evaluate("window.shardmon.charts.restarts.data[1]")
    assert sum(restarts) == 4 + 5  # the crash loop, and the startups of the five nodes
    assert await page.locator("#leader").text_content() in {fleet.node(s) for s in range(5)}
    await page.screenshot(path=str(artifacts() / "dashboard.png"), full_page=True)

    # live: shard 2's process dies; the page turns its tile red without a reload
    fleet.kill(2)
    offline = (await _palette(page, ["offline"]))[0]
    await _until(page, "colour => window.shardmon.grid.colourAt(2) === colour", offline)
    # shard 0 resumes (its gateway is down, not yet past the threshold), shard 2 is offline
    assert await page.locator("#shards-detail").text_content() == "1 disconnected · 1 offline"
    await page.screenshot(path=str(artifacts() / "dashboard-shard-down.png"), full_page=True)
    assert not errors


async def test_the_status_page_finds_a_servers_shard_and_shows_nothing_private(
    browser: Browser,
    fleet: LocalFleet,
    dashboard: str,
    redis_url: str,
) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    await _wait_states(client, "UUUUU.")
    fleet.kill(4)
    await _wait_states(client, "UUUUO.")
    page = await browser.new_page(viewport={"width": 1200, "height": 900})
    answers: list[Any] = []

    async def keep(response: Any) -> None:
        if "/api/" in response.url:
            answers.append(await response.json())

    page.on("response", keep)
    await page.goto(f"{dashboard}/status")
    await _until(page, "() => window.shardmon && window.shardmon.updates > 0")
    tones = ["up", "up", "up", "up", "down", "unknown"]
    assert await _tile_colours(page) == await _palette(page, tones)
    assert await page.locator("#overall").text_content() == "Partial outage: 1 of 6 shards down"

    server = str(
        next(g << 22 for g in range(10**9, 10**9 + 100) if shard_for_guild(g << 22, 6) == 3)
    )
    await page.fill("#server", server)
    await page.click("#find button")
    await _until(page, "() => window.shardmon.found !== null")
    result = await page.locator("#find-result").text_content() or ""
    assert result.startswith(f"Server {server} is on shard 3 of 6: up, latency ")
    assert await page.evaluate("window.shardmon.grid.highlighted") == 3
    await page.screenshot(path=str(artifacts() / "status-page.png"), full_page=True)
    await page.fill("#server", "not an id")
    await page.click("#find button")
    await _until(page, "() => window.shardmon.found === null")
    assert "not a server id" in (await page.locator("#find-result").text_content() or "")

    private = [f"{socket.gethostname()}:", "9.8.7", "memory", "cpu", "latency_ms_"]
    text = (await page.content()) + json.dumps(answers)
    assert not [word for word in private if word in text.lower() or word in text]
    fields: set[str] = set()
    stack: list[Any] = list(answers)
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            fields.update(value)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    assert answers and fields <= PUBLIC_FIELDS, fields - PUBLIC_FIELDS
