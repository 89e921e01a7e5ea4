"""Server-rendered SVG charts: horizontal bars per category, lines over time. No JavaScript.

Colours and fonts come from the page's stylesheet (classes `chart`, `bar`, `series-N`, ...), so
the charts follow the page, print well and need nothing from outside the app.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from decimal import Decimal
from itertools import count

from markupsafe import Markup, escape

__all__ = ["bar_chart", "line_chart", "nice_scale"]

Number = int | float | Decimal
Format = Callable[[Number], str]

_ids = count(1)


def _plain(value: Number) -> str:
    return f"{value:,}"


def nice_scale(top: float, ticks: int = 4) -> tuple[float, float]:
    """A round axis maximum at or above `top`, and the step between its `ticks` grid lines."""
    if top <= 0 or not math.isfinite(top):
        return 1.0, 1.0 / ticks
    raw = top / ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    for multiple in (1, 2, 2.5, 5, 10):
        step = multiple * magnitude
        if step * ticks >= top * (1 - 1e-12):
            return step * ticks, step
    return 10 * magnitude * ticks, 10 * magnitude  # pragma: no cover - 10 always fits


def _n(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _open(width: int, height: int, title: str, description: str) -> tuple[str, list[str]]:
    ident = f"chart-{next(_ids)}"
    head = (
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        'role="img" '
        f'preserveAspectRatio="xMinYMin meet" aria-labelledby="{ident}-t {ident}-d" '
        f'xmlns="http://www.w3.org/2000/svg">'
        f'<title id="{ident}-t">{escape(title)}</title><desc id="{ident}-d">{escape(description)}'
        "</desc>"
    )
    return ident, [head]


def bar_chart(
    items: Sequence[tuple[str, Number | None]],
    *,
    title: str,
    fmt: Format = _plain,
    missing: str = "withheld",
    width: int = 560,
) -> Markup:
    """One horizontal bar per (label, value); a None value is written as `missing`, no bar."""
    row, top_margin, label_width, value_width = 24, 8, 150, 110
    height = top_margin * 2 + row * max(len(items), 1)
    known = [float(value) for _, value in items if value is not None]
    top = max([*known, 0.0])
    plot = width - label_width - value_width
    described = "; ".join(
        f"{label}: {missing if value is None else fmt(value)}" for label, value in items
    )
    _, parts = _open(width, height, title, described or "no data")
    if not items:
        parts.append(f'<text class="empty" x="{width / 2}" y="{height / 2 + 4}">no data</text>')
    for index, (label, value) in enumerate(items):
        y = top_margin + index * row
        shown = label if len(label) <= 22 else label[:21] + "…"
        parts.append(
            f'<text class="label" x="{label_width - 8}" y="{y + row / 2 + 4}" '
            f'text-anchor="end">{escape(shown)}<title>{escape(label)}</title></text>'
        )
        if value is None:
            text, length = missing, 0.0
        else:
            text = fmt(value)
            length = plot * max(float(value), 0.0) / top if top else 0.0
            parts.append(
                f'<rect class="bar" x="{label_width}" y="{y + 4}" width="{_n(length)}" '
                f'height="{row - 8}"><title>{escape(label)}: {escape(text)}</title></rect>'
            )
        parts.append(
            f'<text class="value" x="{_n(label_width + length + 6)}" y="{y + row / 2 + 4}">'
            f"{escape(text)}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def line_chart(
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[Number | None]]],
    *,
    title: str,
    fmt: Format = _plain,
    width: int = 560,
    height: int = 220,
) -> Markup:
    """One line per (name, values) over `labels`; None leaves a gap (withheld or unknown)."""
    left, right, top_margin, bottom = 64, 36, 12, 40 if len(series) < 2 else 58
    plot_w, plot_h = width - left - right, height - top_margin - bottom
    known = [float(v) for _, values in series for v in values if v is not None]
    top, step = nice_scale(max([*known, 0.0]))
    described = "; ".join(
        f"{name}: "
        + ", ".join(
            f"{label} {'n/a' if v is None else fmt(v)}"
            for label, v in zip(labels, values, strict=True)
        )
        for name, values in series
    )
    _, parts = _open(width, height, title, described or "no data")

    def x_at(index: int) -> float:
        return left + (plot_w * index / (len(labels) - 1) if len(labels) > 1 else plot_w / 2)

    def y_at(value: float) -> float:
        return top_margin + plot_h - plot_h * value / top

    for tick in range(5):
        value = step * tick
        y = y_at(value)
        parts.append(
            f'<line class="grid" x1="{left}" x2="{width - right}" y1="{_n(y)}" y2="{_n(y)}"/>'
        )
        axis_value: Number = (
            int(value) if float(value).is_integer() else Decimal(repr(round(value, 10)))
        )
        parts.append(
            f'<text class="tick" x="{left - 6}" y="{_n(y + 4)}" text-anchor="end">'
            f"{escape(fmt(axis_value))}</text>"
        )
    every = max(1, math.ceil(len(labels) / 7))
    last = len(labels) - 1
    for index, label in enumerate(labels):
        if (last - index) % every == 0:  # counted back from the latest, which is always shown
            parts.append(
                f'<text class="tick" x="{_n(x_at(index))}" y="{height - bottom + 16}" '
                f'text-anchor="middle">{escape(label)}</text>'
            )
    for number, (name, values) in enumerate(series):
        css = f"series-{number % 4}"
        runs: list[list[tuple[float, float]]] = [[]]
        for index, value in enumerate(values):
            if value is None:
                runs.append([])
            else:
                runs[-1].append((x_at(index), y_at(float(value))))
        for points in runs:
            if len(points) > 1:
                path = " ".join(f"{_n(x)},{_n(y)}" for x, y in points)
                parts.append(f'<polyline class="line {css}" points="{path}"/>')
        for index, value in enumerate(values):
            if value is not None:
                parts.append(
                    f'<circle class="dot {css}" cx="{_n(x_at(index))}" '
                    f'cy="{_n(y_at(float(value)))}" r="3"><title>{escape(name)}, '
                    f"{escape(labels[index])}: {escape(fmt(value))}</title></circle>"
                )
        if len(series) > 1:
            x = left + number * 170
            parts.append(
                f'<line class="key {css}" x1="{x}" x2="{x + 22}" y1="{height - 14}" '
                f'y2="{height - 14}"/>'
                f'<text class="legend" x="{x + 28}" y="{height - 10}">{escape(name)}</text>'
            )
    if not known:
        parts.append(
            f'<text class="empty" x="{left + plot_w / 2}" y="{top_margin + plot_h / 2}" '
            'text-anchor="middle">no data to show</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
