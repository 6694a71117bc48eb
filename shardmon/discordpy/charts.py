"""PNG charts for /performance, with matplotlib (the optional extra `shardmon[charts]`).

matplotlib is the plotting library of Python's ecosystem; its Agg backend draws to memory
without a display, and its object API (a `Figure` per chart, no pyplot state) is safe in the
worker thread where the cog renders, off the bot's event loop. Without the extra installed,
`CHARTS` is False and /performance answers with its embed alone.
"""

from __future__ import annotations

import importlib.util
import io
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

__all__ = ["CHARTS", "CHART_FILE", "performance_png"]

#: Whether the extra is installed: charts are drawn only then.
CHARTS = importlib.util.find_spec("matplotlib") is not None
#: The attachment's name, which the embed's image points at (`attachment://performance.png`).
CHART_FILE = "performance.png"
#: Discord's dark theme, so that the chart sits in the embed as if drawn by Discord.
_BACKGROUND, _INK, _GRID = "#2b2d31", "#dbdee1", "#3f4147"
_MEMORY, _CPU = "#5865f2", "#f0b232"
#: A line with this many measured points or fewer marks each one (a young fleet's hour).
SPARSE_POINTS = 40


def performance_png(
    title: str,
    times: Sequence[float],
    memory: Sequence[float | None],
    cpu: Sequence[float | None],
    *,
    memory_band: tuple[Sequence[float | None], Sequence[float | None]] | None = None,
    cpu_band: tuple[Sequence[float | None], Sequence[float | None]] | None = None,
    limits: tuple[float, float] = (85.0, 85.0),
) -> bytes | None:
    """Memory and CPU (percent) over time as an 800x360 PNG: the averages as lines, their
    peak-to-low bands shaded where given, the alert thresholds dashed. None without the
    extra, or when nothing was measured. Times are fleet time (epoch seconds), shown in UTC."""
    if not CHARTS or not any(value is not None for value in (*memory, *cpu)):
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.dates import DateFormatter
    from matplotlib.figure import Figure

    when: Any = [datetime.fromtimestamp(t, UTC) for t in times]  # matplotlib takes datetimes
    nan = float("nan")

    def values(series: Sequence[float | None]) -> list[float]:
        return [nan if value is None else value for value in series]

    figure = Figure(figsize=(8, 3.6), dpi=100, facecolor=_BACKGROUND)
    axes = figure.add_subplot()
    axes.set_facecolor(_BACKGROUND)
    for name, series, band, colour, limit in (
        ("memory", memory, memory_band, _MEMORY, limits[0]),
        ("CPU", cpu, cpu_band, _CPU, limits[1]),
    ):
        if band is not None:
            axes.fill_between(when, values(band[1]), values(band[0]), color=colour, alpha=0.18,
                              linewidth=0)  # fmt: skip
        measured = sum(value is not None for value in series)
        axes.plot(when, values(series), color=colour, linewidth=2, label=f"{name} %",
                  marker="o" if measured <= SPARSE_POINTS else None, markersize=4)  # fmt: skip
        axes.axhline(limit, color=colour, linewidth=1, linestyle="--", alpha=0.7)
    axes.set_ylim(0, 100)
    if len(when) > 1:
        axes.set_xlim(when[0], when[-1])  # the whole window, measured or not
    axes.set_title(title, color=_INK, fontsize=11, loc="left")
    seconds = "%S" if times and times[-1] - times[0] < 600 else ""
    axes.xaxis.set_major_formatter(DateFormatter(f"%H:%M{':' if seconds else ''}{seconds}", tz=UTC))  # type: ignore[no-untyped-call]
    axes.set_xlabel("UTC", color=_INK, fontsize=8)
    axes.tick_params(colors=_INK, labelsize=8)
    axes.grid(color=_GRID, linewidth=0.6)
    for spine in axes.spines.values():
        spine.set_color(_GRID)
    legend = axes.legend(loc="upper left", fontsize=8, frameon=False)
    for text in legend.get_texts():
        text.set_color(_INK)
    figure.tight_layout()
    FigureCanvasAgg(figure)  # draws in memory: no display, no pyplot state
    out = io.BytesIO()
    figure.savefig(out, format="png", facecolor=_BACKGROUND)
    return out.getvalue()
