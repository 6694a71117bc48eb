"""Pure text helpers shared by the CLI, the cog and the alerts."""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shardmon.models import RunState, SessionStartLimit

__all__ = [
    "clock_line",
    "defuse_mentions",
    "format_uptime",
    "run_words",
    "session_limit_line",
    "sparkline",
    "status_emoji",
    "table",
]


#: Uptimes beyond this come from clocks or data gone wrong, not from a running process.
_UPTIME_CAP_S = 100 * 365 * 86400


def format_uptime(seconds: float) -> str:
    """`2d 5h 30m`; leading zero units are dropped, and under a minute it says `42s`. A time
    that is not a number says `unknown`, one over a century `over 100 years`."""
    if not math.isfinite(seconds):
        return "unknown"
    if seconds > _UPTIME_CAP_S:
        return "over 100 years"
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
    """A Unicode sparkline of the values (oldest first), averaged down to `width` characters;
    values that are not finite numbers are left out."""
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return ""
    if len(values) > width:
        step = len(values) / width
        values = [
            sum(v / len(chunk) for v in chunk)  # divided first: no overflow
            for i in range(width)
            if (chunk := values[int(i * step) : int((i + 1) * step)])
        ]
    low, high = min(values), max(values)
    span = high / 2 - low / 2  # halves: no overflow between the largest doubles
    if span == 0:
        return _SPARKS[0] * len(values)
    return "".join(_SPARKS[round((v / 2 - low / 2) / span * 7)] for v in values)


def status_emoji(percent: float | None, warn: float = 70, critical: float = 85) -> str:
    """🟢 below `warn`, 🟡 from `warn` to `critical`, 🔴 above `critical`, ⚪ when unknown."""
    if percent is None:
        return "⚪"
    if percent > critical:
        return "🔴"
    if percent >= warn:
        return "🟡"
    return "🟢"


def _width(text: str) -> int:
    """Terminal columns of the text: wide characters (most emoji) take two."""
    return sum(
        2 if unicodedata.east_asian_width(c) in "WF" else 0 if unicodedata.combining(c) else 1
        for c in text
        if c != "\ufe0f"  # the emoji variation selector takes no column of its own
    )


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table; numbers are right-aligned. Empty when there are no rows."""
    if not rows:
        return ""
    cells = [[str(c) for c in headers], *([str(c) for c in row] for row in rows)]
    widths = [max(_width(row[i]) for row in cells) for i in range(len(headers))]
    numeric = [all(isinstance(row[i], int | float) for row in rows) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        out = []
        for i, cell in enumerate(row):
            pad = " " * (widths[i] - _width(cell))
            out.append(pad + cell if numeric[i] else cell + pad)
        return "  ".join(out).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])


def session_limit_line(limit: SessionStartLimit | None, shard_count: int, now: float) -> str:
    """The IDENTIFY budget in one line: left of total, when it resets, `max_concurrency`, and
    how long a full restart of every shard takes at it (shards / max_concurrency x 5 s)."""
    if limit is None:
        return "unknown (the leader reads it from Discord with the bot's token)"
    resets = format_uptime(limit.resets_at - now) if limit.resets_at > now else "reset since"
    restart = format_uptime(limit.full_restart_s(shard_count))
    return (
        f"{limit.remaining:,} of {limit.total:,} left, resets in {resets}, "
        f"max_concurrency {limit.max_concurrency}: a full restart of {shard_count:,} "
        f"shard{'s' if shard_count != 1 else ''} takes {restart}"
        + (" (synthetic: the demo's, not Discord's)" if limit.synthetic else "")
    )


#: Nodes named in a clock line; the rest are counted.
CLOCK_LINE_NODES = 5


def clock_line(skews: Mapping[str, float], warn_s: float) -> str:
    """The hosts' clocks against Redis's in one line: the nodes off by more than `warn_s`,
    worst first, or that all are within it."""
    if not skews:
        return "not measured yet (monitors measure their host's clock against Redis's)"
    off = sorted((node for node in skews if abs(skews[node]) > warn_s),
                 key=lambda node: -abs(skews[node]))  # fmt: skip
    worst = max(abs(skew) for skew in skews.values())
    if not off:
        return f"{len(skews)} node(s) within {warn_s:g} s of Redis's (worst {worst:.3f} s)"
    named = ", ".join(f"{node} {skews[node]:+.1f} s" for node in off[:CLOCK_LINE_NODES])
    more = f" and {len(off) - CLOCK_LINE_NODES} more" if len(off) > CLOCK_LINE_NODES else ""
    return f"⚠️ {len(off)} of {len(skews)} node(s) off by over {warn_s:g} s: {named}{more}"


def run_words(state: RunState, now: float) -> str:
    """A supervisor (`shardmon run`) in words: its node, its shards, what it does and why,
    with the time left where it waits: `bot-1:42 shards 0-1: backoff, 14s left (exited with
    code 1; crash 2 in a row: restarting in 20 s)`."""
    shards = ",".join(map(str, state.shards))
    left = "" if state.until is None else f", {format_uptime(max(0.0, state.until - now))} left"
    why = f" ({state.reason})" if state.reason and state.state != "running" else ""
    plural = "s" if len(state.shards) > 1 else ""
    return f"{state.node} shard{plural} {shards}: {state.state}{left}{why}"
