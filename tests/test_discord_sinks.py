"""The webhook sink through discord.py's real Webhook, against a local HTTPS stand-in for
Discord's API (the test resolves discord.com to it): what reaches "Discord" never pings."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from shardmon.discord_sinks import DISCORD_MESSAGE_LIMIT, WebhookSink
from shardmon.sinks import Alert, DeliveryPolicy, deliver

WEBHOOK = "https://discord.com/api/webhooks/123456789012345678/" + "t" * 68


class _ToLocal(AbstractResolver):
    def __init__(self, port: int) -> None:
        self.port = port

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [ResolveResult(hostname=host, host="127.0.0.1", port=self.port,
                              family=socket.AF_INET, proto=0, flags=0)]  # fmt: skip

    async def close(self) -> None:
        return None


def _json(data: dict[str, Any], status: int = 200) -> web.Response:
    # discord.py parses a body as JSON only for exactly this content type (no charset).
    body = json.dumps(data).encode()
    return web.Response(body=body, status=status, headers={"Content-Type": "application/json"})


class FakeDiscord:
    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.status = 200

    async def handle(self, request: web.Request) -> web.Response:
        payload = await request.json()
        self.requests.append((request.path, payload))
        if self.status != 200:
            return _json({"message": "Unknown Webhook", "code": 0}, status=self.status)
        if request.query.get("wait") not in ("1", "true"):
            return web.Response(status=204)
        return _json({  # the created message, as Discord answers ?wait=true
            "id": "1100000000000000001", "channel_id": "1100000000000000002", "type": 0,
            "content": payload["content"], "webhook_id": request.match_info["id"],
            "author": {"id": request.match_info["id"], "username": payload.get("username"),
                       "discriminator": "0000", "avatar": None, "bot": True},
            "attachments": [], "embeds": [], "mentions": [], "mention_roles": [],
            "mention_everyone": False, "pinned": False, "tts": False, "flags": 0,
            "components": [], "timestamp": "2026-11-28T15:00:00+00:00",
            "edited_timestamp": None,
        })  # fmt: skip


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "1", "-subj", "/CN=discord.com"],
        check=True, capture_output=True,
    )  # fmt: skip
    return key, cert


@pytest.fixture
async def discord_api(
    certificate: tuple[Path, Path],
) -> AsyncIterator[tuple[FakeDiscord, aiohttp.ClientSession]]:
    key, cert = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    fake = FakeDiscord()
    app = web.Application()
    app.router.add_post("/api/v10/webhooks/{id}/{token}", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    connector = aiohttp.TCPConnector(resolver=_ToLocal(port), ssl=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        yield fake, session
    await runner.cleanup()


def _alert(body: str) -> Alert:
    title = "⚠️ High Resource Usage Detected"
    return Alert(id="x", kind="alert", rule="memory", shards=(0,), title=title, body=body,
                 epoch=4, node="h:1", ts=time.time())  # fmt: skip


async def test_webhook_alert_reaches_discord_without_pinging(
    discord_api: tuple[FakeDiscord, aiohttp.ClientSession],
) -> None:
    fake, session = discord_api
    sink = WebhookSink(WEBHOOK, session=session)
    await sink.send(_alert("crash text: @everyone @here <@123> <@&456> ⚠️"))
    [(path, payload)] = fake.requests
    assert path == "/api/v10/webhooks/123456789012345678/" + "t" * 68
    assert payload["allowed_mentions"] == {"parse": []}
    content = payload["content"]
    assert content.startswith("**⚠️ High Resource Usage Detected**\n")
    for mention in ("@everyone", "@here", "<@123>", "<@&456>"):
        assert mention not in content
    assert "@\u200beveryone" in content
    assert "t" * 68 not in repr(sink)


async def test_long_alerts_fit_discord_and_failures_are_reported(
    discord_api: tuple[FakeDiscord, aiohttp.ClientSession],
) -> None:
    fake, session = discord_api
    sink = WebhookSink(WEBHOOK, session=session)
    await sink.send(_alert("x" * 5000))
    assert len(fake.requests[0][1]["content"]) == DISCORD_MESSAGE_LIMIT
    fake.status = 404  # the webhook was deleted (discord.py itself retries 5xx answers)
    outcomes = await deliver([sink], _alert("down"), DeliveryPolicy(attempts=2, backoff_s=0.01))
    assert outcomes["webhook"].startswith("failed after 2 attempts: WebhookError: NotFound")
    assert "t" * 68 not in outcomes["webhook"]
    assert len(fake.requests) == 3
