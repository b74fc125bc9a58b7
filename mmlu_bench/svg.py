"""Inline SVG charts, drawn as text: no JavaScript, no fonts or files from the network.

Every string that reaches the markup goes through `esc` (html.escape with quotes), so labels
can hold `<`, `&` or quotes. Values are shares in [0, 1]; NaN means "not known" and draws no
bar or whisker (never a NaN coordinate, which a browser reports as an error).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

BLUE, ORANGE, GREY, RED = "#3b6ea8", "#e0873a", "#8a8f98", "#c0392b"
# Group colours, cycled: MMLU has 4 categories, MMLU-Pro 14 categories, MMMLU 14 locales.
PALETTE = ("#3b6ea8", "#5a9e6f", "#8e6bb8", "#c9a227", "#c0622b", "#2a9d8f", "#7a6c5d",
           "#d14d72", "#4f772d", "#6d597a", "#bc6c25", "#3d5a80")
FONT = 'font-family="system-ui, sans-serif" font-size="12"'


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _n(x: float) -> str:
    """A coordinate: finite, 1 decimal."""
    assert math.isfinite(x), "no NaN or infinite coordinates in a chart"
    return f"{x:.1f}"


def _open(chart_id: str, title: str, width: float, height: float) -> str:
    return (f'<svg id="{esc(chart_id)}" xmlns="http://www.w3.org/2000/svg" width="{_n(width)}" '
            f'height="{_n(height)}" viewBox="0 0 {_n(width)} {_n(height)}" role="img" '
            f'aria-label="{esc(title)}" {FONT}><title>{esc(title)}</title>')


def _text(x: float, y: float, text: str, anchor: str = "start", extra: str = "") -> str:
    return (f'<text x="{_n(x)}" y="{_n(y)}" text-anchor="{anchor}" {extra}>{esc(text)}</text>')


def _line(x1: float, y1: float, x2: float, y2: float, color: str, extra: str = "") -> str:
    return (f'<line x1="{_n(x1)}" y1="{_n(y1)}" x2="{_n(x2)}" y2="{_n(y2)}" '
            f'stroke="{color}" {extra}/>')


def _rect(x: float, y: float, w: float, h: float, color: str, tip: str = "") -> str:
    title = f"<title>{esc(tip)}</title>" if tip else ""
    return (f'<rect x="{_n(x)}" y="{_n(y)}" width="{_n(max(w, 0.0))}" height="{_n(max(h, 0.0))}" '
            f'fill="{color}">{title}</rect>')


def _clip(x: float) -> float:
    return min(1.0, max(0.0, x))


@dataclass(frozen=True, slots=True)
class Bar:
    """One bar: a share with its 95% interval (NaN bounds: no whisker)."""

    label: str
    value: float
    low: float = math.nan
    high: float = math.nan
    tip: str = ""
    color: str = BLUE


def hbar_chart(chart_id: str, title: str, bars: Sequence[Bar], marks: Sequence[tuple] = (),
               label_width: float = 230, width: float = 760, row: float = 18) -> str:
    """Horizontal bars on a 0..1 axis with interval whiskers; `marks` are (value, label,
    color) vertical reference lines, e.g. chance and the overall score."""
    plot = width - label_width - 70
    top = 12 + 14 * len(marks)  # one line per mark label, so close marks never overlap
    height = top + row * len(bars) + 34

    def x(v: float) -> float:
        return label_width + plot * _clip(v)

    out = [_open(chart_id, title, width, height)]
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        out.append(_line(x(tick), top - 4, x(tick), height - 28, "#ddd"))
        out.append(_text(x(tick), height - 14, f"{tick:.0%}", "middle"))
    for i, b in enumerate(bars):
        y = top + i * row
        out.append(_text(label_width - 6, y + row * 0.7, b.label, "end"))
        if not math.isnan(b.value):
            out.append(_rect(x(0), y + 3, x(b.value) - x(0), row - 6, b.color, b.tip))
            out.append(_text(x(1) + 6, y + row * 0.7, f"{b.value:.1%}"))
        if not (math.isnan(b.low) or math.isnan(b.high)):
            mid = y + row / 2
            out.append(_line(x(b.low), mid, x(b.high), mid, "#222", 'stroke-width="1.5"'))
            for end in (b.low, b.high):
                out.append(_line(x(end), mid - 4, x(end), mid + 4, "#222", 'stroke-width="1.5"'))
    for k, (value, label, color) in enumerate(marks):
        if not math.isnan(value):
            label_y = 12 + 14 * k
            out.append(_line(x(value), label_y + 3, x(value), height - 28, color,
                             'stroke-dasharray="4 3" stroke-width="1.5"'))
            out.append(_text(x(value) + 4, label_y, label, "start", f'fill="{color}"'))
    return "".join(out) + "</svg>"


def grouped_bars(chart_id: str, title: str, groups: Sequence[str],
                 series: Sequence[tuple[str, str, Sequence[float]]],
                 width: float = 420, height: float = 240) -> str:
    """Vertical bars, one cluster per group, one bar per series (name, color, shares)."""
    left, bottom, top = 44, height - 40, 16
    top_value = max([v for _, _, vs in series for v in vs if not math.isnan(v)] + [0.05])
    step = 0.1 if top_value > 0.4 else 0.05
    ymax = min(1.0, math.ceil(top_value / step) * step)
    slot = (width - left - 10) / len(groups)
    bar = slot * 0.7 / len(series)

    def y(v: float) -> float:
        return bottom - (bottom - top) * min(v, ymax) / ymax

    out = [_open(chart_id, title, width, height)]
    for k in range(round(ymax / step) + 1):
        v = k * step
        out.append(_line(left, y(v), width - 10, y(v), "#ddd"))
        out.append(_text(left - 6, y(v) + 4, f"{v:.0%}", "end"))
    for g, name in enumerate(groups):
        x0 = left + g * slot + slot * 0.15
        for s, (label, color, values) in enumerate(series):
            v = values[g]
            if not math.isnan(v):
                out.append(_rect(x0 + s * bar, y(v), bar - 2, bottom - y(v), color,
                                 f"{label} {name}: {v:.1%}"))
        out.append(_text(left + (g + 0.5) * slot, bottom + 16, name, "middle"))
    for s, (label, color, _) in enumerate(series):
        lx = left + s * 130
        out.append(_rect(lx, height - 14, 10, 10, color))
        out.append(_text(lx + 14, height - 5, label))
    return "".join(out) + "</svg>"


def reliability(chart_id: str, title: str, bins: Sequence, size: float = 300) -> str:
    """A reliability diagram: per confidence bin, accuracy (bar) against the diagonal of
    perfect calibration; bins are stats.CalibrationBin, empty ones draw nothing."""
    pad, top = 44, 12
    side = size - pad - top

    def x(v: float) -> float:
        return pad + side * _clip(v)

    def y(v: float) -> float:
        return top + side * (1 - _clip(v))

    out = [_open(chart_id, title, size + 10, size + 24)]
    for t in (0, 0.25, 0.5, 0.75, 1.0):
        out.append(_line(x(0), y(t), x(1), y(t), "#eee"))
        out.append(_text(x(0) - 6, y(t) + 4, f"{t:.0%}", "end"))
        out.append(_text(x(t), y(0) + 16, f"{t:.0%}", "middle"))
    for b in bins:
        if b.n:
            out.append(_rect(x(b.low) + 1, y(b.accuracy), x(b.high) - x(b.low) - 2,
                             y(0) - y(b.accuracy), BLUE,
                             f"confidence {b.low:.0%}-{b.high:.0%}: {b.n} questions, "
                             f"accuracy {b.accuracy:.1%}, mean confidence {b.confidence:.1%}"))
            out.append(f'<circle cx="{_n(x(b.confidence))}" cy="{_n(y(b.confidence))}" r="3" '
                       f'fill="{ORANGE}"/>')
    out.append(_line(x(0), y(0), x(1), y(1), GREY, 'stroke-dasharray="4 3"'))
    out.append(_text(x(0.5), size + 20, "confidence (top letter's probability)", "middle"))
    return "".join(out) + "</svg>"
