"""A local Discord (REST + gateway) on 127.0.0.1 that discord.py's real clients talk to.

discord.py's own HTTPClient, DiscordWebSocket, KeepAliveHandler thread and the Shard
reconnect/RESUME machinery of AutoShardedClient run unchanged against it; only two class
attributes are pointed at this server (see FakeDiscord.install). The test decides what the
gateway does: which guilds a shard gets, when a shard's socket drops, whether an IDENTIFY or
RESUME is answered, whether heartbeats are ACKed and what GET /gateway/bot replies.

Protocol notes (discord.py 2.7, gateway v10):

* Frames are sent as TEXT JSON. discord.py only runs its zlib/zstd decompressor on BINARY
  frames, so the `compress` query parameter it always sends is ignored here.
* The sequence number is per session: READY carries s=1 and every dispatch after it (GUILD_CREATE,
  RESUMED, what the test sends) the next one. discord.py keeps the last `s` it saw in
  `DiscordWebSocket.sequence` and sends it in heartbeats and in RESUME. Missed events are not
  replayed on RESUME (real Discord would replay them before RESUMED).
* A RESUME is matched to its shard by session_id (the payload has no shard). An unknown session
  is answered with op 9 INVALID_SESSION d=false, after which discord.py closes with 1000 and
  IDENTIFYs again.
* discord.py connects a RESUME to READY's `resume_gateway_url` (path /resume here) and a fresh
  IDENTIFY to DiscordWebSocket.DEFAULT_GATEWAY or /gateway/bot's `url` (path /gateway here).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self, TypeVar

import discord
import yarl
from aiohttp import WSMsgType, web
from discord.ext import commands
from discord.gateway import DiscordWebSocket
from discord.http import Route

API = "/api/v10"

# Gateway opcodes (https://discord.com/developers/docs/topics/opcodes-and-status-codes)
OP_DISPATCH = 0
OP_HEARTBEAT = 1
OP_IDENTIFY = 2
OP_RESUME = 6
OP_INVALID_SESSION = 9
OP_HELLO = 10
OP_HEARTBEAT_ACK = 11

# Snowflake timestamps are milliseconds since the Discord epoch (2015-01-01); 300e9 ms is mid 2024.
_SNOWFLAKE_BASE_MS = 300_000_000_000

ClientT = TypeVar("ClientT", bound=discord.Client)


@dataclass(eq=False)
class _Session:
    """A gateway session: what a RESUME refers to, outliving the socket it started on."""

    shard: int
    shard_count: int
    session_id: str
    seq: int = 0
    conn: _Connection | None = None  # the socket that answered READY/RESUMED, while open


@dataclass(eq=False)
class _Connection:
    """One websocket accepted by the gateway."""

    ws: web.WebSocketResponse
    path: str
    shard: int | None = None  # known after IDENTIFY (its `shard`) or RESUME (its session)
    pending: dict[str, Any] | None = None  # a held IDENTIFY/RESUME frame, unanswered
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def send(self, payload: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(payload))


def _json(data: Any, status: int = 200) -> web.Response:
    # discord.py's json_or_text parses a body only if Content-Type is exactly
    # "application/json"; aiohttp's json_response appends "; charset=utf-8".
    return web.Response(
        body=json.dumps(data).encode(), status=status, headers={"Content-Type": "application/json"}
    )


class FakeDiscord:
    """A local Discord (REST + gateway) for discord.py's own clients."""

    def __init__(self, *, shard_count: int = 1, heartbeat_interval_ms: int = 41250) -> None:
        """`shard_count` is what GET /gateway/bot recommends (AutoShardedClient without its own
        shard_count uses it); `heartbeat_interval_ms` is sent in every HELLO."""
        self.shard_count = shard_count
        self.heartbeat_interval_ms = heartbeat_interval_ms
        #: served by GET /gateway/bot as `session_start_limit` (not decremented by IDENTIFYs)
        self.session_start_limit: dict[str, int] | None = {
            "total": 1000,
            "remaining": 1000,
            "reset_after": 86_400_000,
            "max_concurrency": 1,
        }
        #: anything but 200 makes GET /gateway/bot answer that HTTP error
        self.gateway_bot_status: int = 200
        #: when set, served as is by GET /gateway/bot (with status 200)
        self.gateway_bot_body: dict[str, Any] | None = None
        #: False leaves every heartbeat unanswered (a gateway that stopped answering)
        self.ack_heartbeats: bool = True
        #: shards whose heartbeats are left unanswered even while ack_heartbeats is True
        self.unacked_shards: set[int] = set()
        #: the team that owns the application (GET /oauth2/applications/@me), if one does
        self.team: dict[str, Any] | None = None
        #: anything but 200 makes GET /oauth2/applications/@me answer that HTTP error
        self.application_status: int = 200

        self.identifies: list[int] = []  # shard id of every IDENTIFY received, in order
        self.resumes: list[
            int
        ] = []  # shard id of every RESUME received, in order (of sessions it issued)
        self.heartbeats: list[int | None] = []  # shard of every heartbeat (None: not identified)
        self.connections: list[str] = []  # path of every websocket accepted: /gateway, /resume
        self.rest_requests: list[tuple[str, str]] = []  # (method, path) of every REST request

        self.user_id = self.guild_id_on(0, 1, 1)
        self.application_id = self.user_id  # a bot's application shares its user's id
        self._guilds: dict[int, dict[str, Any]] = {}
        self._sessions: dict[int, _Session] = {}  # by shard: the last session started
        self._by_session_id: dict[str, _Session] = {}  # the sessions a RESUME can resume
        self._issued: dict[str, int] = {}  # every session id ever sent in READY -> its shard
        self._held: set[int] = set()
        self._pending: dict[int, _Connection] = {}  # held shard -> socket waiting for an answer
        self._conns: set[_Connection] = set()
        self._sessions_sent = 0
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Serve REST and the gateway on a free port of 127.0.0.1."""
        app = web.Application(middlewares=[self._record_rest])
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/resume", self._gateway)
        app.router.add_get(f"{API}/users/@me", self._users_me)
        app.router.add_get(f"{API}/oauth2/applications/@me", self._application_me)
        app.router.add_get(f"{API}/gateway/bot", self._gateway_bot)
        app.router.add_get(f"{API}/gateway", self._gateway_plain)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        """Close every gateway socket (code 1001) and the server."""
        for conn in list(self._conns):
            await conn.ws.close(code=1001)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        """The port the server listens on (after start)."""
        if self._port is None:
            raise RuntimeError("FakeDiscord.start() has not been awaited")
        return self._port

    @property
    def api_base(self) -> str:
        """What discord.http.Route.BASE becomes under install()."""
        return f"http://127.0.0.1:{self.port}{API}"

    @property
    def gateway_url(self) -> str:
        """Where IDENTIFYing sockets connect (DEFAULT_GATEWAY and /gateway/bot's url)."""
        return f"ws://127.0.0.1:{self.port}/gateway"

    @property
    def resume_gateway_url(self) -> str:
        """READY's resume_gateway_url: where discord.py reconnects to RESUME."""
        return f"ws://127.0.0.1:{self.port}/resume"

    def install(self) -> contextlib.AbstractContextManager[None]:
        """Point discord.py at this server for the duration: discord.http.Route.BASE and
        DiscordWebSocket.DEFAULT_GATEWAY (restored on exit)."""
        return self._installed()

    @contextlib.contextmanager
    def _installed(self) -> Iterator[None]:
        # Both are class attributes read at use time: Route.url is built from BASE when a Route
        # is made, DEFAULT_GATEWAY when a shard (re)IDENTIFYs or a session is invalidated.
        old_base, old_gateway = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
        Route.BASE = self.api_base
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)
        try:
            yield
        finally:
            Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = old_base, old_gateway

    # ---------------------------------------------------------------- guilds

    @staticmethod
    def guild_id_on(shard: int, shard_count: int, n: int = 0) -> int:
        """The n-th snowflake (n >= 0) that lands on `shard`: (id >> 22) % shard_count == shard."""
        if not 0 <= shard < shard_count:
            raise ValueError(f"shard {shard} is not in range({shard_count})")
        timestamp = _SNOWFLAKE_BASE_MS - _SNOWFLAKE_BASE_MS % shard_count + n * shard_count + shard
        return timestamp << 22

    def add_guild(self, guild_id: int, name: str = "guild", member_count: int = 1) -> None:
        """A guild sent as GUILD_CREATE to shard (guild_id >> 22) % shard_count right after its
        READY (and after every re-IDENTIFY); READY lists it as an unavailable stub. A shard that
        is already READY does not get it until its next IDENTIFY (dispatch one to send it now)."""
        self._guilds[guild_id] = self.guild_payload(guild_id, name, member_count)

    def guild_payload(
        self, guild_id: int, name: str = "guild", member_count: int = 1
    ) -> dict[str, Any]:
        """A GUILD_CREATE/GUILD_UPDATE payload that discord.py's Guild parses."""
        return {
            "id": str(guild_id),
            "name": name,
            "member_count": member_count,
            "unavailable": False,
            "large": member_count >= 250,
            "owner_id": str(self.user_id),
            "joined_at": "2024-07-01T00:00:00+00:00",
            "features": [],
            "roles": [
                {
                    "id": str(guild_id),  # @everyone's id is the guild's
                    "name": "@everyone",
                    "permissions": "0",
                    "position": 0,
                    "color": 0,
                    "hoist": False,
                    "managed": False,
                    "mentionable": False,
                    "flags": 0,
                }
            ],
            "channels": [],
            "threads": [],
            "members": [],
            "presences": [],
            "voice_states": [],
            "emojis": [],
            "stickers": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "preferred_locale": "en-US",
            "system_channel_flags": 0,
        }

    # ---------------------------------------------------------------- gateway control

    async def dispatch(self, shard: int, event: str, data: dict[str, Any]) -> None:
        """Send one op-0 dispatch, with the session's next sequence number, to that shard's live
        session (LookupError if the shard has none: never connected, dropped or held)."""
        session = self._live_session(shard)
        await self._send_dispatch(session, event, data)

    async def drop(self, shard: int, code: int = 4000) -> None:
        """Close that shard's socket with `code`. discord.py reconnects to resume_gateway_url and
        RESUMEs after any code but 4004 and 4010-4014 (those end bot.start() with ConnectionClosed,
        4014 with PrivilegedIntentsRequired); a server-side 1000 counts as an improper close.
        The RESUME is answered with RESUMED (unless the shard is held), except after 4007
        (invalid seq) and 4009 (session timed out): as on Discord, those end the session, so the
        RESUME gets INVALID_SESSION and discord.py IDENTIFYs anew."""
        conn = self._conn_of(shard)
        if conn is None:
            raise LookupError(f"shard {shard} has no open socket")
        session = self._sessions.get(shard)
        if code in (4007, 4009) and session is not None:
            self._forget(session)
        await conn.ws.close(code=code)

    async def invalidate(self, shard: int, *, resumable: bool = False) -> None:
        """Send op 9 INVALID_SESSION to that shard. d=false (the default) also forgets the session:
        discord.py closes with 1000 and IDENTIFYs again (READY and GUILD_CREATEs follow);
        d=true makes it reconnect and RESUME."""
        session = self._live_session(shard)
        if not resumable:
            self._forget(session)
        assert session.conn is not None
        async with session.conn.lock:
            await session.conn.send({"op": OP_INVALID_SESSION, "d": resumable})

    def hold(self, shard: int) -> None:
        """From now on, IDENTIFY/RESUME of that shard are left unanswered (socket open, HELLO sent,
        heartbeats ACKed): discord.py sees neither READY nor RESUMED, so no shard_connect,
        shard_ready or shard_resumed for it, until release(shard)."""
        self._held.add(shard)

    async def release(self, shard: int) -> None:
        """Stop holding the shard and answer its held IDENTIFY/RESUME (READY or RESUMED) now."""
        self._held.discard(shard)
        conn = self._pending.pop(shard, None)
        if conn is None or conn.ws.closed or conn.pending is None:
            return
        frame, conn.pending = conn.pending, None
        await self._answer(conn, frame)

    def is_live(self, shard: int) -> bool:
        """Whether the shard has a session with an open, answered socket (dispatch would work)."""
        session = self._sessions.get(shard)
        return session is not None and session.conn is not None and not session.conn.ws.closed

    def session_id(self, shard: int) -> str | None:
        """The id of the shard's last session (what its RESUME must carry), if any."""
        session = self._sessions.get(shard)
        return None if session is None else session.session_id

    @property
    def open_connections(self) -> int:
        """How many gateway sockets are open now."""
        return len(self._conns)

    @property
    def sessions_sent(self) -> int:
        """How many READY and RESUMED dispatches were sent in total."""
        return self._sessions_sent

    async def wait_sessions(self, count: int, timeout: float = 10) -> None:  # noqa: ASYNC109
        """Wait until `count` sessions were started or resumed in total (READY or RESUMED sent,
        counted since start, not only the live ones)."""
        await self.wait_until(lambda: self._sessions_sent >= count, timeout, f"{count} sessions")

    async def wait_held(self, shard: int, timeout: float = 10) -> None:  # noqa: ASYNC109
        """Wait until the server holds an IDENTIFY/RESUME of that shard (see hold)."""
        await self.wait_until(lambda: shard in self._pending, timeout, f"a held frame of {shard}")

    async def wait_until(
        self,
        condition: Callable[[], bool],
        timeout: float = 10,  # noqa: ASYNC109 - a bound of the wait, as in wait_sessions
        what: str = "condition",
    ) -> None:
        """Wait until `condition()` holds; it is checked whenever the gateway's state changes
        (a socket accepted or closed, a frame received, READY/RESUMED sent)."""
        try:
            async with asyncio.timeout(timeout):
                while not condition():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(f"FakeDiscord: no {what} within {timeout} s") from None

    # ---------------------------------------------------------------- internals

    def _notify(self) -> None:
        self._changed.set()

    def _live_session(self, shard: int) -> _Session:
        session = self._sessions.get(shard)
        if session is None or session.conn is None or session.conn.ws.closed:
            raise LookupError(f"shard {shard} has no live session")
        return session

    def _conn_of(self, shard: int) -> _Connection | None:
        """The shard's open socket: the live one, else the one whose frame is held."""
        session = self._sessions.get(shard)
        if session is not None and session.conn is not None and not session.conn.ws.closed:
            return session.conn
        conn = self._pending.get(shard)
        return conn if conn is not None and not conn.ws.closed else None

    def _forget(self, session: _Session) -> None:
        self._by_session_id.pop(session.session_id, None)
        if self._sessions.get(session.shard) is session:
            del self._sessions[session.shard]

    async def _send_dispatch(self, session: _Session, event: str, data: dict[str, Any]) -> None:
        conn = session.conn
        if conn is None or conn.ws.closed:
            raise LookupError(f"shard {session.shard} has no live session")
        # Number and send under the socket's lock so that sequence numbers go out in order.
        async with conn.lock:
            session.seq += 1
            await conn.send({"op": OP_DISPATCH, "t": event, "s": session.seq, "d": data})

    def _user(self) -> dict[str, Any]:
        return {
            "id": str(self.user_id),
            "username": "fakebot",
            "discriminator": "0",
            "global_name": None,
            "avatar": None,
            "bot": True,
            "flags": 0,
            "public_flags": 0,
            "verified": True,
            "mfa_enabled": False,
            "locale": "en-US",
        }

    # REST

    @web.middleware
    async def _record_rest(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path.startswith(API):
            self.rest_requests.append((request.method, request.path))
        return await handler(request)

    async def _users_me(self, request: web.Request) -> web.Response:
        # HTTPClient.static_login: ClientUser parses id, username, discriminator, avatar.
        return _json(self._user())

    async def _application_me(self, request: web.Request) -> web.Response:
        # Client.login -> application_info(): AppInfo indexes each of these keys.
        if self.application_status != 200:
            status = self.application_status
            return _json({"message": f"{status}: fake error", "code": 0}, status=status)
        return _json(
            {
                "id": str(self.application_id),
                "name": "fakebot",
                "description": "",
                "icon": None,
                "bot_public": True,
                "bot_require_code_grant": False,
                "owner": self._user() | {"id": str(self.user_id + 1), "username": "owner"},
                "team": self.team,
                "verify_key": "0" * 64,
                "flags": 0,
                "summary": "",
                "redirect_uris": [],
            }
        )

    async def _gateway_bot(self, request: web.Request) -> web.Response:
        # HTTPClient.get_bot_gateway reads shards, url and session_start_limit. Note that
        # discord.py retries a 500/502/504/524 five times (sleeping 1, 3, 5, 7, 9 s) first.
        status = self.gateway_bot_status
        if status != 200:
            return _json({"message": f"{status}: fake error", "code": 0}, status=status)
        if self.gateway_bot_body is not None:
            return _json(self.gateway_bot_body)
        return _json(
            {
                "url": self.gateway_url,
                "shards": self.shard_count,
                "session_start_limit": self.session_start_limit,
            }
        )

    async def _gateway_plain(self, request: web.Request) -> web.Response:
        return _json({"url": self.gateway_url})

    async def _not_found(self, request: web.Request) -> web.Response:
        return _json({"message": "404: Not Found", "code": 0}, status=404)

    # gateway

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)  # no server-side pings: heartbeats are opcodes
        await ws.prepare(request)
        conn = _Connection(ws=ws, path=request.path)
        self._conns.add(conn)
        self.connections.append(request.path)
        self._notify()
        try:
            # HELLO first: DiscordWebSocket.from_client polls exactly one frame for it, starts
            # its KeepAliveHandler thread (which heartbeats at once) and then IDENTIFYs/RESUMEs.
            async with conn.lock:
                await conn.send(
                    {
                        "op": OP_HELLO,
                        "d": {"heartbeat_interval": self.heartbeat_interval_ms},
                        "s": None,
                        "t": None,
                    }
                )
            async for msg in ws:
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    break
                await self._on_frame(conn, json.loads(msg.data))
        finally:
            self._conns.discard(conn)
            for session in self._sessions.values():
                if session.conn is conn:
                    session.conn = None
            if conn.shard is not None and self._pending.get(conn.shard) is conn:
                del self._pending[conn.shard]
            self._notify()
        return ws

    async def _on_frame(self, conn: _Connection, frame: dict[str, Any]) -> None:
        op = frame.get("op")
        if op == OP_HEARTBEAT:  # its d is discord.py's sequence number
            self.heartbeats.append(conn.shard)
            # Without ACKs (or any other frame) discord.py gives up after its heartbeat_timeout
            # (60 s by default): poll_event's receive times out, or the KeepAliveHandler logs
            # "has stopped responding to the gateway"; either way it closes and RESUMEs.
            if self.ack_heartbeats and conn.shard not in self.unacked_shards:
                async with conn.lock:
                    await conn.send({"op": OP_HEARTBEAT_ACK})
        elif op == OP_IDENTIFY:
            # A sharded client sends shard: [id, count]; a plain Client none (shard 0 of 1).
            shard = frame["d"].get("shard", [0, 1])[0]
            conn.shard = shard
            self.identifies.append(shard)
            await self._answer_or_hold(conn, frame)
        elif op == OP_RESUME:
            shard = self._issued.get(frame["d"].get("session_id", ""))
            if shard is None:
                # A session id this server never issued: its shard is unknown, so it is
                # neither recorded nor held, just refused.
                async with conn.lock:
                    await conn.send({"op": OP_INVALID_SESSION, "d": False})
            else:
                conn.shard = shard
                self.resumes.append(shard)
                await self._answer_or_hold(conn, frame)
        # Other opcodes (3 presence, 4 voice state, 8 request members) are ignored.
        self._notify()

    async def _answer_or_hold(self, conn: _Connection, frame: dict[str, Any]) -> None:
        assert conn.shard is not None
        if conn.shard in self._held:
            conn.pending = frame
            self._pending[conn.shard] = conn
            return
        await self._answer(conn, frame)

    async def _answer(self, conn: _Connection, frame: dict[str, Any]) -> None:
        data = frame["d"]
        if frame["op"] == OP_IDENTIFY:
            await self._ready(conn, data)
            return
        session = self._by_session_id.get(data.get("session_id"))
        if session is None:
            # A forgotten session (invalidated, superseded, or dropped with 4007/4009):
            # d=false tells discord.py to IDENTIFY anew.
            async with conn.lock:
                await conn.send({"op": OP_INVALID_SESSION, "d": False})
            return
        session.conn = conn
        await self._send_dispatch(session, "RESUMED", {"_trace": ["fake-discord"]})
        self._sessions_sent += 1
        self._notify()

    async def _ready(self, conn: _Connection, identify: dict[str, Any]) -> None:
        shard, count = identify.get("shard", [0, 1])
        old = self._sessions.get(shard)
        if old is not None:
            self._forget(old)
        session = _Session(shard=shard, shard_count=count, session_id=uuid.uuid4().hex, conn=conn)
        self._sessions[shard] = session
        self._by_session_id[session.session_id] = session
        self._issued[session.session_id] = shard
        # Guilds are routed with the count the client IDENTIFYed with, as Discord does.
        guilds = [g for gid, g in self._guilds.items() if (gid >> 22) % count == shard]
        ready: dict[str, Any] = {
            "v": 10,
            "user": self._user(),
            "guilds": [{"id": g["id"], "unavailable": True} for g in guilds],
            "session_id": session.session_id,
            "resume_gateway_url": self.resume_gateway_url,
            "application": {"id": str(self.application_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "user_settings": {},
            "_trace": ["fake-discord"],
        }
        if "shard" in identify:
            ready["shard"] = [shard, count]
        await self._send_dispatch(session, "READY", ready)
        self._sessions_sent += 1
        self._notify()
        # discord.py waits guild_ready_timeout after the last GUILD_CREATE before shard_ready.
        for guild in guilds:
            await self._send_dispatch(session, "GUILD_CREATE", guild)


class QuickBot(commands.AutoShardedBot):
    """An AutoShardedBot without the 5 s sleep discord.py's default before_identify_hook takes
    before every IDENTIFY but the very first (4 shards would take 15 s to connect)."""

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """IDENTIFY at once: the fake gateway has no IDENTIFY rate limit."""


def make_bot(**options: Any) -> QuickBot:
    """A QuickBot with default intents and guild_ready_timeout=0.2 (READY completes 0.2 s after
    the last GUILD_CREATE); `options` are passed on (e.g. shard_count, heartbeat_timeout)."""
    options.setdefault("command_prefix", "!")
    options.setdefault("intents", discord.Intents.default())
    options.setdefault("guild_ready_timeout", 0.2)
    return QuickBot(**options)


@contextlib.asynccontextmanager
async def running_bot(
    bot: ClientT,
    fake: FakeDiscord,
    token: str = "fake-token",
    *,
    timeout: float = 10.0,  # noqa: ASYNC109 - bounds the start and the close, not one await
) -> AsyncIterator[ClientT]:
    """Run `bot.start(token)` as a task against `fake` (inside fake.install()) until it is ready
    (at most `timeout` s); on exit close the bot and await the task, re-raising what it raised,
    so that no task or aiohttp session outlives the block (the KeepAliveHandler daemon threads
    are told to stop and end at their next tick)."""
    with fake.install():
        task = asyncio.create_task(bot.start(token), name="fake-discord-bot")
        try:
            async with asyncio.timeout(timeout):
                while not bot.is_ready():  # Client.wait_until_ready needs the loop login sets
                    if task.done():
                        raise RuntimeError("bot.start() ended before the bot was ready")
                    await asyncio.sleep(0.01)
            yield bot
        finally:
            await bot.close()
            done, _ = await asyncio.wait({task}, timeout=timeout)
            if not done:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                raise TimeoutError("bot.start() did not return after bot.close()")
            task.result()  # re-raise what bot.start() raised


__all__ = ["FakeDiscord", "QuickBot", "make_bot", "running_bot"]
