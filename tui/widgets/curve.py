"""The score curve: best-so-far and per-node scores over steps, as a small text plot.

Steps are bucketed into the plot's columns, so the plot has the same size at 60 and 100,000
nodes. Every scored node is a dot (``•``) at its step and score, under the best-so-far line
(``━``, a green staircase); the value axis is labelled at the top and bottom, in a margin
just as wide as its labels, so every other column plots steps. Plain characters in two
ANSI colours: readable over SSH in any terminal.
"""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from engine import direction
from tui import format as fmt

MIN_COLS = 4  # plot columns needed to draw anything


def plot(points: list[tuple[int, float]], width: int, height: int, maximize: bool) -> Text:
    """Render (step, score) points, sorted by step, into ``width`` x ``height`` cells."""
    if not points:
        return Text("no scored node yet" if width >= MIN_COLS else "", style="dim")
    lo = min(v for _, v in points)
    hi = max(v for _, v in points)
    if hi == lo:
        lo, hi = lo - 1.0, hi + 1.0
    labels = fmt.score(hi), fmt.score(lo)
    margin = max(map(len, labels))  # the axis labels' width, then the axis line
    cols = width - margin - 1
    if cols < MIN_COLS or height < 2:
        return Text("")
    first, last = points[0][0], points[-1][0]
    span = max(1, last - first)

    def row(value: float) -> int:
        return height - 1 - round((value - lo) / (hi - lo) * (height - 1))

    grid = [[" "] * cols for _ in range(height)]
    style = [[""] * cols for _ in range(height)]
    running: list[int | None] = [None] * cols  # row of the best-so-far at each column
    best: float | None = None
    for step, value in points:
        c = min(cols - 1, (step - first) * (cols - 1) // span)
        grid[row(value)][c] = "•"
        best = value if best is None else direction.best_value((best, value), maximize)
        running[c] = row(best)
    prev: int | None = None
    for c in range(cols):
        r = running[c] if running[c] is not None else prev
        if r is None:
            continue
        if prev is None or prev == r:
            grid[r][c] = "━"
        else:  # a step of the staircase: corner, vertical run, corner
            up = r < prev
            for between in range(min(r, prev) + 1, max(r, prev)):
                grid[between][c], style[between][c] = "┃", "green"
            grid[prev][c] = "┛" if up else "┓"
            grid[r][c] = "┏" if up else "┗"
            style[prev][c] = "green"
        style[r][c] = "green"
        prev = r
    out = Text(no_wrap=True, overflow="crop")
    for r in range(height):
        label = labels[0] if r == 0 else labels[1] if r == height - 1 else ""
        out.append(f"{label:>{margin}}│", style="dim")
        for c in range(cols):
            out.append(grid[r][c], style=style[r][c] or None)
        if r < height - 1:
            out.append("\n")
    return out


class ScoreCurve(Widget):
    """Best-so-far (green line) and per-node best per column (dots) over steps."""

    DEFAULT_CSS = "ScoreCurve { height: 1fr; }"

    def __init__(self, **kwargs) -> None:  # noqa: ANN003 - Widget's keyword arguments
        super().__init__(**kwargs)
        self._points: list[tuple[int, float]] = []
        self._maximize = True
        self.border_title = "score"

    def set_points(self, points: list[tuple[int, float]], maximize: bool) -> None:
        self._points, self._maximize = points, maximize
        self.border_title = "score"
        if points:
            self.border_title = f"score · steps {points[0][0]}–{points[-1][0]}"
        self.refresh()

    def render(self) -> Text:
        return plot(self._points, self.size.width, self.size.height, self._maximize)
