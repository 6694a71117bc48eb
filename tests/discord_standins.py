"""Stand-ins for what only Discord provides: an Interaction that records replies, and a local
HTTPS server that answers discord.py's REST calls (the session resolves discord.com to it)."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import discord
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult


@dataclass
class Reply:
    content: str | None
    embed: discord.Embed | None
    ephemeral: bool
    view: discord.ui.View | None
    file: discord.File | None = None


@dataclass
class RecordedInteraction:
    """Just what the cog's callbacks use of a discord.Interaction, recording every reply."""

    replies: list[Reply] = field(default_factory=list)
    deferred: bool = False
    user: Any = field(default_factory=lambda: SimpleNamespace(id=4242))
    command: Any = field(default_factory=lambda: SimpleNamespace(name="test"))
    guild_id: int | None = None  # None: a DM

    def __post_init__(self) -> None:
        self.response = SimpleNamespace(defer=self._defer, send_message=self._send)
        self.followup = SimpleNamespace(send=self._send)

    async def _defer(self, *, thinking: bool = False, ephemeral: bool = False) -> None:
        assert not self.deferred and not self.replies, "answered twice"
        self.deferred = True

    async def _send(
        self,
        content: str | None = None,
        *,
        embed: discord.Embed | None = None,
        ephemeral: bool = False,
        view: Any = discord.utils.MISSING,
        file: Any = discord.utils.MISSING,
    ) -> None:
        self.replies.append(
            Reply(
                content, embed, ephemeral, None if view is discord.utils.MISSING else view,
                None if file is discord.utils.MISSING else file,
            )
        )  # fmt: skip


class ToLocal(AbstractResolver):
    def __init__(self, port: int) -> None:
        self.port = port

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [ResolveResult(hostname=host, host="127.0.0.1", port=self.port,
                              family=socket.AF_INET, proto=0, flags=0)]  # fmt: skip

    async def close(self) -> None:
        return None


def json_response(data: Any, status: int = 200) -> web.Response:
    # discord.py parses a body as JSON only for exactly this content type (no charset).
    body = json.dumps(data).encode()
    return web.Response(body=body, status=status, headers={"Content-Type": "application/json"})


def self_signed(folder: Path) -> ssl.SSLContext:
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "1", "-subj", "/CN=discord.com"],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def message(
    channel_id: str, content: str, author_id: str = "1100000000000000003"
) -> dict[str, Any]:
    """A message object as Discord returns it for a created message."""
    return {
        "id": "1100000000000000001", "channel_id": channel_id, "type": 0, "content": content,
        "author": {"id": author_id, "username": "shardmon", "discriminator": "0000",
                   "avatar": None, "bot": True},
        "attachments": [], "embeds": [], "mentions": [], "mention_roles": [],
        "mention_everyone": False, "pinned": False, "tts": False, "flags": 0, "components": [],
        "timestamp": "2026-11-28T15:00:00+00:00", "edited_timestamp": None,
    }  # fmt: skip


class LocalDiscord:
    """Discord's REST API as far as the tests need it; records every request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, Any]]] = []
        self.status = 200
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self, context: ssl.SSLContext) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=context).start()
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def connector(self) -> aiohttp.TCPConnector:
        return aiohttp.TCPConnector(resolver=ToLocal(self.port), ssl=False)

    async def handle(self, request: web.Request) -> web.Response:
        payload = await request.json() if request.can_read_body else {}
        self.requests.append((request.method, request.path, payload))
        if self.status != 200:
            return json_response({"message": "Unknown", "code": 0}, status=self.status)
        user = {"id": "1100000000000000003", "username": "shardmon-test",
                "discriminator": "0000", "avatar": None, "bot": True}  # fmt: skip
        if request.path == "/api/v10/users/@me":
            return json_response(user)
        if request.path == "/api/v10/oauth2/applications/@me":
            return json_response({"id": user["id"], "name": "shardmon-test", "icon": None,
                                  "description": "", "bot_public": False, "owner": user,
                                  "bot_require_code_grant": False, "verify_key": "0" * 64,
                                  "flags": 0})  # fmt: skip
        if request.path.startswith("/api/v10/channels/") and request.method == "POST":
            return json_response(
                message(request.match_info["tail"].split("/")[2], payload["content"])
            )
        if "/webhooks/" in request.path:
            if request.query.get("wait") not in ("1", "true"):
                return web.Response(status=204)
            return json_response(message("1100000000000000002", payload["content"]))
        return json_response({"message": "Not Found", "code": 0}, status=404)
