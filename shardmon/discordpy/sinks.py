"""Alert sinks that post to Discord: a webhook URL, or a channel by id over the bot's REST.

Messages never ping: their text has every `@` defused and they are sent with
`AllowedMentions.none()`, so neither @everyone, @here, roles nor users are notified.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import aiohttp
import discord

from shardmon.render import defuse_mentions
from shardmon.sinks import Alert

__all__ = ["DISCORD_MESSAGE_LIMIT", "ChannelSink", "WebhookError", "WebhookSink", "discord_text"]

#: Discord refuses message content longer than this.
DISCORD_MESSAGE_LIMIT = 2000
#: Discord accepts nonces of at most 25 characters.
NONCE_LENGTH = 25


def discord_text(alert: Alert) -> str:
    """The alert as Discord message content: mention-proof, within the length limit."""
    text = defuse_mentions(alert.content)
    if len(text) > DISCORD_MESSAGE_LIMIT:
        text = text[: DISCORD_MESSAGE_LIMIT - 1] + "…"
    return text


class _MaskToken(logging.Filter):
    """Replaces a webhook token in log records with `***`."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.token and self.token in message:
            record.msg, record.args = message.replace(self.token, "***"), ()
        return True


class WebhookError(RuntimeError):
    """A failed webhook post, its text free of the webhook's token."""


class WebhookSink:
    """Posts alerts to a Discord webhook URL (discord.py's Webhook over aiohttp).

    Args:
        url: `https://discord.com/api/webhooks/<id>/<token>`; a secret, never logged.
        session: the aiohttp session to use; one is made (and closed by `close()`) if omitted.
    """

    name = "webhook"

    def __init__(self, url: str, session: aiohttp.ClientSession | None = None) -> None:
        self._url = url
        self._session = session
        self._owns_session = session is None
        # discord.py logs webhook requests, URL and token included, at DEBUG.
        logging.getLogger("discord.webhook.async_").addFilter(_MaskToken(url.rsplit("/", 1)[-1]))

    def __repr__(self) -> str:
        return "WebhookSink(url=***)"

    async def send(self, alert: Alert) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        webhook = discord.Webhook.from_url(self._url, session=self._session)
        try:
            await webhook.send(
                discord_text(alert),
                username="shardmon",
                allowed_mentions=discord.AllowedMentions.none(),
                wait=True,
            )
        except Exception as exc:  # noqa: BLE001 - re-raised with the token masked
            token = webhook.token or ""
            message = str(exc).replace(token, "***") if token else str(exc)
            raise WebhookError(f"{type(exc).__name__}: {message}") from None

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None


class ChannelSink:
    """Posts alerts to the configured channel, else to the one the fleet detected by name, by
    channel id over REST: it works whichever shard owns that guild.

    Each message carries a nonce with `enforce_nonce`, so Discord itself drops a resend of
    the same alert; mentions never ping.

    Args:
        client: the bot (any `discord.Client`), whose HTTP session posts.
        channel_id: the configured channel (`SHARDMON_ALERT_CHANNEL_ID`), if any.
        detected_channel: awaits the channel the fleet found by name (`Store.alert_channel`).
    """

    name = "discord_channel"

    def __init__(
        self,
        client: discord.Client,
        channel_id: int | None,
        detected_channel: Callable[[], Awaitable[int | None]],
    ) -> None:
        self.client = client
        self.channel_id = channel_id
        self.detected_channel = detected_channel

    async def send(self, alert: Alert) -> None:
        channel_id = self.channel_id or await self.detected_channel()
        if channel_id is None:
            raise LookupError(
                "no alert channel: set SHARDMON_ALERT_CHANNEL_ID or create #dev-logs, #admin-logs,"
                " #system-logs or #bot-logs"
            )
        await self.client.get_partial_messageable(channel_id).send(
            discord_text(alert),
            allowed_mentions=discord.AllowedMentions.none(),
            nonce=alert.id[:NONCE_LENGTH],
        )

    async def close(self) -> None:
        return None
