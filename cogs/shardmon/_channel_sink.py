"""The Discord channel sink: the leader posts over REST by channel id, whichever shard owns it."""

from __future__ import annotations

import discord

from shardmon.discord_sinks import discord_text
from shardmon.sinks import Alert
from shardmon.store import Store

__all__ = ["ChannelSink"]

#: Discord accepts nonces of at most 25 characters.
NONCE_LENGTH = 25


class ChannelSink:
    """Posts alerts to the configured channel, else to the one the fleet detected by name.

    Each message carries a nonce with `enforce_nonce`, so Discord itself drops a resend of
    the same alert; mentions never ping.
    """

    name = "discord_channel"

    def __init__(
        self, client: discord.Client, store: Store, channel_id: int | None, guild_ids: list[int]
    ) -> None:
        self.client = client
        self.store = store
        self.channel_id = channel_id
        self.guild_ids = guild_ids

    async def send(self, alert: Alert) -> None:
        channel_id = self.channel_id or await self.store.alert_channel(self.guild_ids)
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
