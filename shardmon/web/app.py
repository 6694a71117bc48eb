"""`shardmon dashboard`: the operator's live page of the fleet and a public status page, one
aiohttp server that reads Redis as the CLI does.

Routes, by audience:
- operators (behind `SHARDMON_DASHBOARD_TOKEN` when it is set): `/` (the page), `/api/fleet`,
  `/api/shard/<id>`, `/api/history?span=hour|day|month`;
- anyone: `/status` (the page), `/api/status`, `/api/find?server=<id>`, `/static/...`,
  `/login`.
With `status_page_only`, the operators' routes do not exist at all. The pages are static files
that poll the JSON endpoints; every endpoint reads pre-aggregated keys (the leader's grid and
figures, the rollups), so a poll costs the same at 10 shards and at 5,000.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web

from shardmon.clock import FleetClock
from shardmon.failures import REDIS_FAILURES, classify
from shardmon.gateway import parse_guild_id, shard_for_guild
from shardmon.keys import Keys
from shardmon.store import SPANS, Store
from shardmon.web.payloads import (
    RESTARTS_SHOWN,
    BoardSettings,
    find_shard_payload,
    fleet_payload,
    history_payload,
    shard_payload,
    status_payload,
)

__all__ = ["TOKEN_SETTING", "BindingRefused", "check_binding", "make_app", "start"]

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
TOKEN_SETTING = "SHARDMON_DASHBOARD_TOKEN"
COOKIE = "shardmon_dashboard"
#: A wrong token waits this long for its answer: a guess a second at most, per connection.
WRONG_TOKEN_DELAY_S = 1.0
#: Sent with every answer: no framing, no sniffing, no referrer, scripts from this server only.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BindingRefused(ValueError):
    """The dashboard would be served beyond this machine without a token."""


def is_loopback(host: str) -> bool:
    """Whether `host` reaches this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere


def check_binding(host: str, *, token: bool, public: bool, status_page_only: bool) -> None:
    """Refuse to serve the operators' pages beyond loopback without a token, unless told so
    (`--public`); the status page alone may be served anywhere."""
    if status_page_only or token or public or is_loopback(host):
        return
    raise BindingRefused(
        f"{TOKEN_SETTING} is not set: the dashboard shows the fleet's infrastructure and will "
        f"not serve it on {host} without a token. Set {TOKEN_SETTING} (16 characters or "
        "more), bind 127.0.0.1, serve the public page alone with --status-page, or pass "
        "--public to expose the dashboard to whoever reaches that address"
    )


def _session(token: str) -> str:
    """The cookie's value: derived from the token, so that the cookie does not hold it."""
    return hmac.new(token.encode(), b"shardmon dashboard session", hashlib.sha256).hexdigest()


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.json_response(
        payload,
        status=status,
        dumps=lambda value: json.dumps(value, ensure_ascii=False, allow_nan=False),
        headers={"Cache-Control": "no-store"},
    )


_LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>shardmon dashboard: sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/static/style.css"></head>
<body class="login"><main><h1>shardmon dashboard</h1>
<p>{message}</p>
<form method="post" action="/login">
<label>Dashboard token <input type="password" name="token" autocomplete="current-password"
 required autofocus></label> <button type="submit">Sign in</button></form>
<p class="muted"><a href="/status">The public status page</a> needs no token.</p>
</main></body></html>"""


def make_app(
    client: aioredis.Redis,
    keys: Keys,
    settings: BoardSettings,
    *,
    token: str | None = None,
    status_page_only: bool = False,
) -> web.Application:
    """The dashboard's aiohttp app. `token`: what operators must present (an `Authorization:
    Bearer` header, or the cookie `/login` sets); None leaves the operators' routes open (a
    loopback address, or `--public`). Crash tracebacks go to the token holder only."""
    clock = FleetClock()  # measured again when due, not at every request
    session = None if token is None else _session(token)

    def token_holder(request: web.Request) -> bool:
        if token is None or session is None:
            return False
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(presented.encode(), token.encode()):
            return True
        return hmac.compare_digest(request.cookies.get(COOKIE, "").encode(), session.encode())

    async def new_store() -> Store:
        store = Store(client, keys)  # a store per request: its skipped counts are its own
        store.clock = clock
        await store.sync_clock()
        return store

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        """Security headers on every answer; Redis failures and crashes answered in words."""
        holder = token_holder(request)
        try:
            response = await handler(request)
        except web.HTTPException:
            raise
        except REDIS_FAILURES as exc:
            failure = classify(exc)
            log.warning("dashboard %s: Redis %s", request.path, failure)
            if not getattr(request.match_info.handler, "for_operators", False):
                # the public hears no more than that
                response = _json({"error": "The status is unavailable right now."}, 503)
            elif failure.outage:
                response = _json({"error": f"Redis is unreachable ({failure}): retrying"}, 503)
            else:
                response = _json({"error": f"Redis refused a read: {failure}"}, 503)
        except Exception as exc:
            log.exception("dashboard %s failed", request.path)
            said: dict[str, Any] = {"error": "internal error (logged by the dashboard)"}
            if holder:
                said["traceback"] = "".join(traceback.format_exception(exc))
            response = _json(said, 500)
        response.headers.update(SECURITY_HEADERS)
        return response

    def for_operators(handler: Handler) -> Handler:
        async def checked(request: web.Request) -> web.StreamResponse:
            if token is not None and not token_holder(request):
                if "Authorization" in request.headers or COOKIE in request.cookies:
                    await asyncio.sleep(WRONG_TOKEN_DELAY_S)  # a wrong one: a guess a second
                if request.path.startswith("/api/"):
                    return _json({"error": f"a dashboard token is needed ({TOKEN_SETTING})"}, 401)
                return web.Response(
                    status=401,
                    text=_LOGIN_PAGE.format(message="This dashboard asks for its token."),
                    content_type="text/html",
                )
            return await handler(request)

        checked.for_operators = True  # type: ignore[attr-defined]
        return checked

    async def dashboard_page(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "dashboard.html")

    async def status_page(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "status.html")

    async def fleet(request: web.Request) -> web.Response:
        store = await new_store()
        board = await store.fleet_board(settings.limits, settings.shard_count)
        restarts = await store.restart_history(RESTARTS_SHOWN)
        payload = fleet_payload(
            board, restarts, store.skipped, settings, token_holder=token_holder(request)
        )
        return _json(payload)

    def shard_of(request: web.Request) -> int:
        text = request.match_info["shard"]
        if not text.isdigit() or int(text) >= settings.shard_count:
            raise web.HTTPNotFound(
                text=json.dumps(
                    {"error": f"no shard {text[:20]}: the fleet has {settings.shard_count}"}
                ),
                content_type="application/json",
            )
        return int(text)

    async def shard(request: web.Request) -> web.Response:
        number = shard_of(request)
        store = await new_store()
        sample, seen = await store.shard_now(number)
        counts = await store.gateway_counts([number])
        now = store.clock.now()
        return _json(shard_payload(number, sample, seen, counts[number], settings, now))

    async def history(request: web.Request) -> web.Response:
        span = request.query.get("span", "hour")
        if span not in SPANS:
            return _json({"error": f"span is one of {', '.join(SPANS)}"}, 400)
        store = await new_store()
        return _json(history_payload(await store.history(span)))

    async def status(request: web.Request) -> web.Response:
        store = await new_store()
        board = await store.fleet_board(settings.limits, settings.shard_count)
        return _json(status_payload(board, settings))

    async def find(request: web.Request) -> web.Response:
        try:
            guild_id = parse_guild_id(request.query.get("server", ""))
        except ValueError as exc:
            return _json({"error": str(exc)}, 400)
        number = shard_for_guild(guild_id, settings.shard_count)
        store = await new_store()
        sample, seen = await store.shard_now(number)
        payload = find_shard_payload(guild_id, number, sample, seen, settings, store.clock.now())
        return _json(payload)

    async def login_form(request: web.Request) -> web.Response:
        message = "Signed in: go to the dashboard." if token_holder(request) else ""
        if token is None:
            message = "This dashboard asks for no token."
        return web.Response(
            text=_LOGIN_PAGE.format(message=message or "This dashboard asks for its token."),
            content_type="text/html",
        )

    async def login(request: web.Request) -> web.Response:
        if token is None or session is None:
            raise web.HTTPSeeOther("/")
        presented = str((await request.post()).get("token", ""))
        if not hmac.compare_digest(presented.encode(), token.encode()):
            await asyncio.sleep(WRONG_TOKEN_DELAY_S)
            return web.Response(
                status=401,
                text=_LOGIN_PAGE.format(message="That is not the dashboard's token."),
                content_type="text/html",
            )
        response = web.HTTPSeeOther("/")
        response.set_cookie(
            COOKIE, session, httponly=True, samesite="Strict", max_age=30 * 86400,
            secure=request.secure,
        )  # fmt: skip
        raise response

    async def to_status(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/status")

    app = web.Application(middlewares=[guard])
    routes = app.router
    if status_page_only:
        routes.add_get("/", to_status)
    else:
        routes.add_get("/", for_operators(dashboard_page))
        routes.add_get("/api/fleet", for_operators(fleet))
        routes.add_get("/api/shard/{shard}", for_operators(shard))
        routes.add_get("/api/history", for_operators(history))
        routes.add_get("/login", login_form)
        routes.add_post("/login", login)
    routes.add_get("/status", status_page)
    routes.add_get("/api/status", status)
    routes.add_get("/api/find", find)
    routes.add_static("/static", STATIC)
    return app


async def start(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Serve `app` on host:port; OSError when the port is taken (nothing left running)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError:
        await runner.cleanup()
        raise
    return runner
