"""The export's score plot: one inline SVG with labelled axes and round tick values.

x is the step, y the score. Grey dots are every explore score (the score stage's), the red
line the best explore score so far; where the task has a verify stage, blue diamonds are the
verify scores and a dashed blue line the initial program's (the baseline's) verify score.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from engine import direction
from engine.store.schema import DONE

WIDTH, HEIGHT = 760, 300
LEFT, RIGHT, TOP, BOTTOM = 72, 20, 34, 46  # margins: tick labels, legend, axis label


def nice_ticks(lo: float, hi: float, count: int = 5, integer: bool = False) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten apart) from at or below ``lo`` to
    at or above ``hi``, about ``count`` of them; whole numbers only when ``integer``."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi < lo:
        lo, hi = hi, lo
    if hi == lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / max(1, count - 1)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    wanted = max(1, count - 1)  # spaces between ticks
    step = min((m * magnitude for m in (1, 2, 5, 10)), key=lambda s: abs((hi - lo) / s - wanted))
    if integer:
        step = max(1.0, float(round(step)))
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    return [k * step for k in range(first, last + 1)]


def tick_label(value: float, ticks: Sequence[float]) -> str:
    """``value`` with as many decimals as the spacing of ``ticks`` needs."""
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else 1.0
    biggest = max(abs(t) for t in ticks)
    if step < 1e-6 or biggest >= 1e7:  # scientific, with the digits the spacing needs
        digits = math.floor(math.log10(biggest)) - math.floor(math.log10(step) + 1e-9) + 1
        return f"{value:.{max(1, digits)}g}"
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    text = f"{value:.{decimals}f}"
    return text.lstrip("-") if float(text) == 0 else text  # never "-0.0"


def curve_svg(data: list[dict[str, Any]], maximize: bool, baseline: float | None = None) -> str:
    """The plot of ``data`` (export rows: step, status, score and, optionally, verify)."""
    done = sorted(
        (r for r in data if r["status"] == DONE and _number(r["score"]) is not None),
        key=lambda r: (r["step"], r["id"]),
    )
    verified = [(r["step"], v) for r in data if (v := _number(r.get("verify"))) is not None]
    if not done and not verified:
        return "<p>No scored node yet.</p>"
    best, points = None, []
    for r in done:
        if direction.better(r["score"], best, maximize):
            best = r["score"]
        points.append((r["step"], float(r["score"]), float(best)))
    steps = [p[0] for p in points] + [s for s, _ in verified]
    values = [v for p in points for v in p[1:]] + [v for _, v in verified]
    if baseline is not None and verified:
        values.append(baseline)
    xs = nice_ticks(min(steps), max(steps), 8, integer=True)
    xs = [x for x in xs if x >= 0] if min(steps) >= 0 else xs  # no step before the first
    ys = nice_ticks(min(values), max(values), 5)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(step: float) -> float:
        return LEFT + (step - xs[0]) / ((xs[-1] - xs[0]) or 1) * plot_w

    def py(value: float) -> float:
        return TOP + plot_h - (value - ys[0]) / ((ys[-1] - ys[0]) or 1) * plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        'font-family="sans-serif" font-size="11">',
        '<rect width="100%" height="100%" fill="white"/>',
    ]
    for y in ys:
        parts.append(
            f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{py(y):.1f}" y2="{py(y):.1f}" '
            f'stroke="#eee"/><text class="ytick" x="{LEFT - 6}" y="{py(y) + 4:.1f}" '
            f'text-anchor="end">{tick_label(y, ys)}</text>'
        )
    for x in xs:
        parts.append(
            f'<line x1="{px(x):.1f}" x2="{px(x):.1f}" y1="{TOP + plot_h}" y2="{TOP + plot_h + 4}" '
            f'stroke="#333"/><text class="xtick" x="{px(x):.1f}" y="{TOP + plot_h + 16}" '
            f'text-anchor="middle">{int(x)}</text>'
        )
    parts.append(
        f'<polyline points="{LEFT},{TOP} {LEFT},{TOP + plot_h} {LEFT + plot_w},{TOP + plot_h}" '
        'fill="none" stroke="#333"/>'
        f'<text class="xlabel" x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 8}" '
        'text-anchor="middle" font-size="12">step</text>'
        f'<text class="ylabel" x="14" y="{TOP + plot_h / 2:.1f}" text-anchor="middle" '
        f'font-size="12" transform="rotate(-90 14 {TOP + plot_h / 2:.1f})">score</text>'
    )
    parts += [
        f'<circle cx="{px(s):.1f}" cy="{py(v):.1f}" r="2.5" fill="#999"/>' for s, v, _ in points
    ]
    if points:
        line = " ".join(f"{px(s):.1f},{py(b):.1f}" for s, _, b in points)
        parts.append(f'<polyline points="{line}" fill="none" stroke="#c0392b" stroke-width="2"/>')
    legend = "grey: every explore score · red: best explore score so far"
    if verified:
        if baseline is not None:
            parts.append(
                f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{py(baseline):.1f}" '
                f'y2="{py(baseline):.1f}" stroke="#2471a3" stroke-dasharray="5,4"/>'
            )
        parts += [_diamond(px(s), py(v)) for s, v in verified]
        legend += " · blue: verify scores"
        legend += ", dashed: the baseline's" if baseline is not None else ""
    parts.append(f'<text x="{LEFT}" y="16" font-size="12">{legend}</text></svg>')
    return "".join(parts)


def _diamond(x: float, y: float, r: float = 4.0) -> str:
    points = f"{x:.1f},{y - r:.1f} {x + r:.1f},{y:.1f} {x:.1f},{y + r:.1f} {x - r:.1f},{y:.1f}"
    return f'<polygon class="verify" points="{points}" fill="#2471a3"/>'


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None
