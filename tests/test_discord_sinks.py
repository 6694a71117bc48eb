"""The webhook sink through discord.py's real Webhook, against a local HTTPS stand-in for
Discord's API (the session resolves discord.com to it): what reaches "Discord" never pings."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from discord_standins import LocalDiscord, self_signed

from shardmon.discordpy.sinks import DISCORD_MESSAGE_LIMIT, WebhookSink
from shardmon.sinks import Alert, DeliveryPolicy, deliver

TOKEN = "t" * 68
WEBHOOK = f"https://discord.com/api/webhooks/123456789012345678/{TOKEN}"


@pytest.fixture
async def discord_api(tmp_path: Path) -> AsyncIterator[tuple[LocalDiscord, aiohttp.ClientSession]]:
    api = LocalDiscord()
    await api.start(self_signed(tmp_path))
    async with aiohttp.ClientSession(connector=api.connector()) as session:
        yield api, session
    await api.stop()


def _alert(body: str) -> Alert:
    title = "⚠️ High Resource Usage Detected"
    return Alert(id="x", kind="alert", rule="memory", shards=(0,), title=title, body=body,
                 epoch=4, node="h:1", ts=time.time())  # fmt: skip


async def test_webhook_alert_reaches_discord_without_pinging_or_leaking_the_token(
    discord_api: tuple[LocalDiscord, aiohttp.ClientSession], caplog: pytest.LogCaptureFixture
) -> None:
    api, session = discord_api
    sink = WebhookSink(WEBHOOK, session=session)
    with caplog.at_level(logging.DEBUG, logger="discord"):
        await sink.send(_alert("crash text: @everyone @here <@123> <@&456> ⚠️"))
    [(method, path, payload)] = api.requests
    assert (method, path) == ("POST", f"/api/v10/webhooks/123456789012345678/{TOKEN}")
    assert payload["allowed_mentions"] == {"parse": []}
    content = payload["content"]
    assert content.startswith("**⚠️ High Resource Usage Detected**\n")
    for mention in ("@everyone", "@here", "<@123>", "<@&456>"):
        assert mention not in content
    assert "@\u200beveryone" in content
    assert "webhooks/123456789012345678/***" in caplog.text  # discord.py's own debug line
    assert TOKEN not in caplog.text and TOKEN not in repr(sink)


async def test_long_alerts_fit_discord_and_failures_are_reported(
    discord_api: tuple[LocalDiscord, aiohttp.ClientSession],
) -> None:
    api, session = discord_api
    sink = WebhookSink(WEBHOOK, session=session)
    await sink.send(_alert("x" * 5000))
    assert len(api.requests[0][2]["content"]) == DISCORD_MESSAGE_LIMIT
    api.status = 404  # the webhook was deleted (discord.py itself retries 5xx answers)
    outcomes = await deliver([sink], _alert("down"), DeliveryPolicy(attempts=2, backoff_s=0.01))
    assert outcomes["webhook"].startswith("failed after 2 attempts: WebhookError: NotFound")
    assert TOKEN not in outcomes["webhook"]
    assert len(api.requests) == 3
