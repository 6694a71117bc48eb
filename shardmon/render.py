"""Pure text helpers shared by the CLI, the cog and the alerts."""

from __future__ import annotations

__all__ = ["defuse_mentions", "format_uptime"]


def format_uptime(seconds: float) -> str:
    """`2d 5h 30m`; leading zero units are dropped, and under a minute it says `42s`."""
    total = max(0, int(seconds))
    if total < 60:
        return f"{total}s"
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days}d {hours}h {minutes}m"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m"


_ZERO_WIDTH_SPACE = "\u200b"


def defuse_mentions(text: str) -> str:
    """Text that cannot ping on Discord even without `allowed_mentions`: a zero-width space
    after every `@` breaks @everyone, @here, <@user>, <@!user> and <@&role>."""
    return text.replace("@", "@" + _ZERO_WIDTH_SPACE)
