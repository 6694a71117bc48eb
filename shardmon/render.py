"""Pure text helpers shared by the CLI, the cog and the alerts."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["defuse_mentions", "format_uptime", "sparkline", "status_emoji"]


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


_SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float], width: int = 30) -> str:
    """A Unicode sparkline of the values (oldest first), averaged down to `width` characters."""
    if not values:
        return ""
    if len(values) > width:
        step = len(values) / width
        values = [
            sum(chunk) / len(chunk)
            for i in range(width)
            if (chunk := values[int(i * step) : int((i + 1) * step)])
        ]
    low, high = min(values), max(values)
    span = high - low
    if span == 0:
        return _SPARKS[0] * len(values)
    return "".join(_SPARKS[round((v - low) / span * 7)] for v in values)


def status_emoji(percent: float | None, warn: float = 70, critical: float = 85) -> str:
    """🟢 below `warn`, 🟡 from `warn` to `critical`, 🔴 above `critical`, ⚪ when unknown."""
    if percent is None:
        return "⚪"
    if percent > critical:
        return "🔴"
    if percent >= warn:
        return "🟡"
    return "🟢"
