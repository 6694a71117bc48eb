"""FakeDiscord against discord.py's real AutoShardedBot: connect, drop/RESUME, held sessions,
dispatches, missing heartbeat ACKs and /gateway/bot (a blocked loop: test_cog_gateway.py).

Every assertion is on what discord.py itself did: its events (on_shard_connect, on_shard_ready,
on_shard_disconnect, on_shard_resumed, on_socket_event_type), its objects (guilds, shards,
websockets, SessionStartLimits) and its log records. Waits are bounded and event-driven.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import discord
import pytest
from discord.ext import commands
from discord.gateway import DiscordWebSocket
from fake_discord import FakeDiscord, make_bot, running_bot

SHARD_EVENTS = ("shard_connect", "shard_ready", "shard_disconnect", "shard_resumed")


class Recorder:
    """Records discord.py's shard and socket events, in the order discord.py ran them."""

    def __init__(self, bot: commands.AutoShardedBot) -> None:
        self.events: list[tuple[str, Any]] = []
        self._changed = asyncio.Event()
        for name in (*SHARD_EVENTS, "socket_event_type", "guild_update"):
            bot.add_listener(self._listener(name), f"on_{name}")

    def _listener(self, name: str) -> Any:
        async def listener(*args: Any) -> None:
            self.events.append((name, args[0] if args else None))
            self._changed.set()

        return listener

    def mark(self) -> int:
        return len(self.events)

    def since(self, mark: int, arg: Any = None) -> list[str]:
        """Names of the events recorded after `mark` (only those with that argument, if given)."""
        return [n for n, a in self.events[mark:] if arg is None or a == arg]

    async def wait(self, name: str, arg: Any, count: int = 1, seconds: float = 10) -> None:
        async with asyncio.timeout(seconds):
            while self.events.count((name, arg)) < count:
                self._changed.clear()
                await self._changed.wait()


def shard_info(bot: commands.AutoShardedBot, shard: int) -> discord.ShardInfo:
    info = bot.get_shard(shard)
    assert info is not None
    return info


def shard_ws(bot: commands.AutoShardedBot, shard: int) -> DiscordWebSocket:
    """discord.py's current websocket of that shard (ShardInfo._parent is its Shard)."""
    return shard_info(bot, shard)._parent.ws


def seq(bot: commands.AutoShardedBot, shard: int) -> int | None:
    """discord.py's last received sequence number on that shard's websocket."""
    return shard_ws(bot, shard).sequence


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(shard_count=4) as server:
        yield server


async def test_four_shards_connect_and_get_their_guilds(fake: FakeDiscord) -> None:
    on_two = [fake.guild_id_on(2, 4, n) for n in range(3)]
    for n, gid in enumerate(on_two):
        fake.add_guild(gid, name=f"two-{n}", member_count=10 + n)
    fake.add_guild(fake.guild_id_on(0, 4), name="zero")
    bot = make_bot()  # no shard_count: discord.py asks GET /gateway/bot, which says 4
    rec = Recorder(bot)

    async with running_bot(bot, fake):
        for shard in range(4):
            await rec.wait("shard_ready", shard)
            assert rec.events.count(("shard_connect", shard)) == 1
        assert bot.shard_count == 4
        assert sorted(bot.shards) == [0, 1, 2, 3]
        # launch_shards connects the shards one after another, each IDENTIFYing once
        assert fake.identifies == [0, 1, 2, 3]
        assert fake.resumes == []
        assert fake.connections == ["/gateway"] * 4
        assert ("GET", "/api/v10/gateway/bot") in fake.rest_requests

        guilds = {g.id: g for g in bot.guilds if g.shard_id == 2}
        assert sorted(guilds) == sorted(on_two)
        for n, gid in enumerate(on_two):
            assert guilds[gid].name == f"two-{n}"
            assert guilds[gid].member_count == 10 + n
            assert guilds[gid].unavailable is False
        assert [g.name for g in bot.guilds if g.shard_id == 0] == ["zero"]
        assert len(bot.guilds) == 4

        # socket_event_type fires for every dispatch discord.py receives, READY and
        # GUILD_CREATE included (shard_ready waits guild_ready_timeout after the last one)
        types = [a for n, a in rec.events if n == "socket_event_type"]
        assert types.count("READY") == 4
        assert types.count("GUILD_CREATE") == 4


async def test_session_start_limits_as_gateway_bot_serves_them(
    fake: FakeDiscord, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_bot(make_bot(shard_count=1), fake) as bot:
        limits = await bot.fetch_session_start_limits()
        assert fake.session_start_limit is not None
        assert {k: getattr(limits, k) for k in fake.session_start_limit} == {
            "total": 1000,
            "remaining": 1000,
            "reset_after": 86_400_000,
            "max_concurrency": 1,
        }

        fake.session_start_limit = {
            "total": 1000,
            "remaining": 3,
            "reset_after": 5_000,
            "max_concurrency": 16,
        }
        limits = await bot.fetch_session_start_limits()
        assert (limits.remaining, limits.reset_after, limits.max_concurrency) == (3, 5_000, 16)

        # An HTTP error becomes GatewayNotFound ("The gateway to connect to discord was not
        # found."), the HTTPException as its cause.
        fake.gateway_bot_status = 503
        with pytest.raises(discord.GatewayNotFound) as caught:
            await bot.fetch_session_start_limits()
        assert isinstance(caught.value.__cause__, discord.DiscordServerError)
        assert caught.value.__cause__.status == 503

        fake.gateway_bot_status = 401
        with pytest.raises(discord.GatewayNotFound) as caught:
            await bot.fetch_session_start_limits()
        assert isinstance(caught.value.__cause__, discord.HTTPException)
        assert caught.value.__cause__.status == 401

        # A 500 is retried first: 5 requests, sleeping 1+3+5+7+9 s in between, which the test
        # skips by giving discord.http an asyncio whose sleep does not wait.
        class NoBackoff:
            def __getattr__(self, name: str) -> Any:
                return getattr(asyncio, name)

            @staticmethod
            async def sleep(delay: float, result: Any = None) -> Any:
                return await asyncio.sleep(0, result)

        fake.gateway_bot_status = 500
        before = fake.rest_requests.count(("GET", "/api/v10/gateway/bot"))
        with monkeypatch.context() as patch:
            patch.setattr(discord.http, "asyncio", NoBackoff())
            with pytest.raises(discord.GatewayNotFound) as caught:
                await bot.fetch_session_start_limits()
        assert isinstance(caught.value.__cause__, discord.DiscordServerError)
        assert fake.rest_requests.count(("GET", "/api/v10/gateway/bot")) - before == 5
        fake.gateway_bot_status = 200

        # A 200 reply missing fields is not checked: the KeyError/TypeError escapes as is.
        fake.gateway_bot_body = {"url": fake.gateway_url, "shards": 1}
        with pytest.raises(KeyError, match="session_start_limit"):
            await bot.fetch_session_start_limits()
        fake.gateway_bot_body = {
            "url": fake.gateway_url,
            "shards": 1,
            "session_start_limit": {"total": 1000, "remaining": 999},
        }
        with pytest.raises(KeyError, match="reset_after"):
            await bot.fetch_session_start_limits()
        fake.gateway_bot_body = None
        fake.session_start_limit = None  # served as null: SessionStartLimits(**None)
        with pytest.raises(TypeError):
            await bot.fetch_session_start_limits()


async def test_drop_makes_the_shard_disconnect_and_resume(fake: FakeDiscord) -> None:
    bot = make_bot()
    rec = Recorder(bot)
    async with running_bot(bot, fake):
        session = shard_ws(bot, 1).session_id
        assert session == fake.session_id(1)
        mark = rec.mark()

        await fake.drop(1)
        await rec.wait("shard_resumed", 1)

        assert rec.since(mark, 1) == ["shard_disconnect", "shard_resumed"]  # no shard_connect
        assert {a for n, a in rec.events[mark:] if n in SHARD_EVENTS} == {1}
        assert fake.resumes == [1]
        assert fake.identifies == [0, 1, 2, 3]  # no new IDENTIFY
        assert fake.connections[-1] == "/resume"  # READY's resume_gateway_url
        assert shard_ws(bot, 1).session_id == session
        assert ("socket_event_type", "RESUMED") in rec.events[mark:]
        assert fake.is_live(1)
        assert not shard_info(bot, 1).is_closed()


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        (4000, "resume"),
        (1000, "resume"),  # from the server's side an "improper" close: discord.py resumes
        (1001, "resume"),
        (4009, "identify"),  # discord.py RESUMEs, the fake (as Discord) says INVALID_SESSION
        (4004, discord.ConnectionClosed),  # authentication failed: bot.start() ends
        (4014, discord.PrivilegedIntentsRequired),
    ],
)
async def test_what_discord_py_does_after_each_close_code(
    fake: FakeDiscord, code: int, outcome: str | type[Exception]
) -> None:
    bot = make_bot(shard_count=2)
    rec = Recorder(bot)
    if isinstance(outcome, str):
        async with running_bot(bot, fake):
            mark = rec.mark()
            await fake.drop(1, code)
            if outcome == "resume":
                await rec.wait("shard_resumed", 1)
                assert rec.since(mark, 1) == ["shard_disconnect", "shard_resumed"]
                assert (fake.identifies, fake.resumes) == ([0, 1], [1])
            else:
                await rec.wait("shard_ready", 1, count=2)
                # the RESUME was refused: no RESUMED but a new IDENTIFY, and a second
                # shard_disconnect (Shard.reidentify dispatches one for the RESUME, one for it)
                assert rec.since(mark, 1) == [
                    "shard_disconnect",
                    "shard_disconnect",
                    "shard_connect",
                    "shard_ready",
                ]
                assert (fake.identifies, fake.resumes) == ([0, 1, 1], [1])
        return

    with pytest.raises(outcome) as caught:
        async with running_bot(bot, fake):
            await fake.drop(1, code)
            # discord.py closes itself: wait until all its sockets are gone
            await fake.wait_until(lambda: fake.open_connections == 0, what="bot closed")
            assert bot.is_closed()
    if isinstance(caught.value, discord.ConnectionClosed):
        assert (caught.value.code, caught.value.shard_id) == (code, 1)
    assert fake.resumes == []


async def test_held_resume_leaves_the_shard_disconnected_until_released(
    fake: FakeDiscord,
) -> None:
    bot = make_bot()
    rec = Recorder(bot)
    async with running_bot(bot, fake):
        mark = rec.mark()
        fake.hold(1)
        await fake.drop(1)
        await fake.wait_held(1)  # discord.py has reconnected and sent its RESUME
        await rec.wait("shard_disconnect", 1)

        assert fake.resumes == [1]
        assert rec.since(mark, 1) == ["shard_disconnect"]  # no shard_resumed, no shard_ready
        assert not fake.is_live(1)
        with pytest.raises(LookupError):
            await fake.dispatch(1, "TYPING_START", {})
        # discord.py's socket is open (HELLO came, heartbeats are ACKed): only the events say
        # that the shard has no session
        assert not shard_info(bot, 1).is_closed()

        await fake.release(1)
        await rec.wait("shard_resumed", 1)
        assert rec.since(mark, 1) == ["shard_disconnect", "shard_resumed"]
        assert fake.identifies == [0, 1, 2, 3]
        assert fake.is_live(1)


async def test_dispatch_reaches_one_shard_and_advances_its_sequence(fake: FakeDiscord) -> None:
    gid = fake.guild_id_on(3, 4)
    fake.add_guild(gid, name="before")
    bot = make_bot()
    rec = Recorder(bot)
    async with running_bot(bot, fake):
        before = {shard: seq(bot, shard) for shard in range(4)}
        assert before[3] == 2  # READY (1) and the guild's GUILD_CREATE (2)

        await fake.dispatch(3, "SHARDMON_PROBE", {"any": "payload"})  # unknown to discord.py
        await rec.wait("socket_event_type", "SHARDMON_PROBE")
        after = {shard: seq(bot, shard) for shard in range(4)}
        assert after == before | {3: before[3] + 1}

        # A known event is parsed as well: GUILD_UPDATE renames the guild
        await fake.dispatch(3, "GUILD_UPDATE", fake.guild_payload(gid, name="after"))
        await rec.wait("socket_event_type", "GUILD_UPDATE")
        guild = bot.get_guild(gid)
        assert guild is not None
        await rec.wait("guild_update", guild)  # records `before` of (before, after): equal by id
        assert guild.name == "after"
        assert seq(bot, 3) == before[3] + 2
        assert {shard: seq(bot, shard) for shard in (0, 1, 2)} == {s: before[s] for s in (0, 1, 2)}


async def test_invalidated_session_reidentifies_and_gets_its_guilds_again(
    fake: FakeDiscord,
) -> None:
    fake.add_guild(fake.guild_id_on(1, 4), name="one")
    bot = make_bot()
    rec = Recorder(bot)
    async with running_bot(bot, fake):
        old_session = fake.session_id(1)
        mark = rec.mark()

        await fake.invalidate(1)  # op 9, d=false
        await rec.wait("shard_ready", 1, count=2)

        assert rec.since(mark, 1) == ["shard_disconnect", "shard_connect", "shard_ready"]
        assert fake.identifies == [0, 1, 2, 3, 1]
        assert fake.resumes == []
        assert fake.session_id(1) != old_session
        types = [a for n, a in rec.events[mark:] if n == "socket_event_type"]
        assert types == ["READY", "GUILD_CREATE"]
        assert [g.name for g in bot.guilds if g.shard_id == 1] == ["one"]
        assert shard_ws(bot, 1).session_id == fake.session_id(1)


async def test_unacked_heartbeats_make_discord_py_resume() -> None:
    """A zombie: shard 1's gateway stops answering. discord.py closes that socket after
    heartbeat_timeout (poll_event's receive timeout, or its KeepAliveHandler) and RESUMEs;
    shard 0, whose heartbeats are ACKed, is left alone."""
    async with FakeDiscord(shard_count=2, heartbeat_interval_ms=200) as fake:
        bot = make_bot(heartbeat_timeout=1.5)
        rec = Recorder(bot)
        async with running_bot(bot, fake):
            mark = rec.mark()
            fake.unacked_shards.add(1)
            await fake.wait_until(lambda: fake.resumes != [], what="RESUME")
            fake.unacked_shards.clear()
            await rec.wait("shard_resumed", 1)

            assert rec.since(mark, 1) == ["shard_disconnect", "shard_resumed"]
            assert rec.since(mark, 0) == []
            assert set(fake.resumes) == {1}
            assert fake.identifies == [0, 1]
            assert fake.is_live(1)
