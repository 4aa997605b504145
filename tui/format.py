"""Formatting of run data for the screen: numbers, durations, statuses, untrusted text.

Everything shown comes from programs and LLMs, so it is treated as data: wrapped in
``rich.text.Text`` (never parsed as markup), stripped of control characters, and cut to a
size the terminal can take. Colours are the 16 ANSI ones, readable on any terminal.
"""

from __future__ import annotations

import math
import re
import time

from rich.text import Text

from engine.text import one_line as text_line

STATUS_STYLE = {
    "running": "bold cyan",
    "pending": "cyan",
    "done": "green",
    "failed": "red",
    "pruned": "dim",
}
STATE_STYLE = {
    "starting": "bold green",
    "running": "bold green",
    "paused": "bold yellow",
    "stopped": "bold red",
    "finished": "bold blue",
    "failed": "bold red",
    "not running": "bold red",
}
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
MAX_TEXT = 200_000


def clean(text: object, limit: int = MAX_TEXT) -> str:
    """Untrusted text made safe to show: no control characters, bounded length."""
    s = text if isinstance(text, str) else ("" if text is None else str(text))
    if len(s) > limit:
        s = s[:limit] + f"\n… ({len(s) - limit:,} more characters not shown)"
    return _CONTROL.sub("", s.replace("\r\n", "\n").replace("\t", "    "))


def one_line(text: object, width: int = 0) -> str:
    """Cleaned of control characters, on one line, cut to ``width`` with an ellipsis."""
    return text_line(clean(text, 4000), width, mark="…")


def score(value: float | None) -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return str(value)
    return f"{value:.6g}" if abs(value) < 1e6 else f"{value:.4g}"


def delta(value: float | None, improved: bool) -> Text:
    if value is None:
        return Text("")
    if value == 0:
        return Text("±0", style="dim")
    text = f"{value:+.4g}"
    if len(text) > 8:  # keep the column narrow: +1.2e-05
        text = f"{value:+.2g}"
    return Text(text, style="green" if improved else "red")


def duration(seconds: float | None) -> str:
    """Compact duration: 0.4s, 12s, 3m05s, 2h07m, 3d04h."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "-"
    if seconds < 10:
        return f"{seconds:.1f}s"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def short_clock(seconds: float) -> str:
    """``m:ss`` below an hour (as ``engine.store.running.clock``), ``1h03m`` above."""
    s = int(max(0.0, seconds))
    if s < 3600:
        return f"{s // 60}:{s % 60:02d}"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def stage_clock(elapsed: float, timeout: float | None) -> str:
    """A stage's elapsed time over its limit: ``3:05/10:00``, ``1h03m/2h00m``, ``0:42``."""
    if not math.isfinite(elapsed):
        return "-"
    text = short_clock(elapsed)
    if timeout is not None and math.isfinite(timeout) and timeout > 0:
        text += "/" + short_clock(timeout)
    return text


def status(value: str) -> Text:
    return Text(value, style=STATUS_STYLE.get(value, ""))


def state(value: str) -> Text:
    return Text(f"● {value}", style=STATE_STYLE.get(value, "bold"))


def clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts)) if ts else "--:--:--"


def tokens(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1e6:.1f}M"
    if n >= 10_000:
        return f"{n / 1e3:.0f}k"
    return str(n)


def event_style(kind: str, message: str) -> str:
    upper = message.upper()
    if "FAILED" in upper or "ERROR" in upper or "TIMEOUT" in upper or "TIMED OUT" in upper:
        return "red"
    if kind == "command":
        return "cyan"
    if kind in ("engine", "run"):
        return "bold"
    if kind in ("resume", "novelty"):
        return "yellow"
    if kind == "cognition":
        return "magenta"
    return ""
