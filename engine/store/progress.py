"""How a run is going: speed, time left, and whether the search has stalled.

A run watched over SSH for days needs three numbers more than any other: candidates per
minute (is it working?), the ETA of its budget (when to come back), and how many
candidates have finished since the best one was found (is it still finding anything?).
They are computed from the finish times and scores stored on the nodes, so ``status``,
the TUI and an export all read the same thing.

Idle time does not count. A run paused for an hour, or stopped overnight and resumed, did
not get slower: the engine records its idle intervals (``IDLE_KEY``: paused, or no engine
at all between a stop or crash and the next start) and the speed is measured over the
working time between finishes only. A run that is not working has no ETA.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from engine import direction
from engine.store.schema import DONE, FINISHED, PRUNED

IDLE_KEY = "idle"  # meta: [[start, end or null], ...], oldest first
MAX_IDLE = 200  # intervals kept (the rate window only reaches back a few)
RATE_WINDOW = 30  # finished candidates the speed is measured over
STALL_MIN = 20  # a stall is at least this many candidates without improvement ...
STALL_SHARE = 0.25  # ... and at least this share of the candidates so far


@dataclass
class Progress:
    per_minute: float | None  # finished candidates per minute, recent
    eta_seconds: float | None  # time left for the step budget at that speed
    since_improvement: int  # finished candidates since the best was found
    best_step: int | None
    stalled: bool
    pruned: int = 0  # candidates a person pruned (they count as finished, not as failures)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure(
    rows: list[tuple[int, float | None, float | None, str]],
    steps_total: int | None,
    maximize: bool,
    idle: Any = (),
    working: bool = True,
) -> Progress:
    """``rows``: (step, finished_at, score, status) of every node, in any order; ``idle``:
    the run's idle intervals (meta ``IDLE_KEY``); ``working``: an engine runs the run and is
    not paused (otherwise there is no ETA)."""
    finished = sorted(
        (r for r in rows if r[0] >= 1 and r[1] is not None and r[3] in FINISHED),
        key=lambda r: r[1],
    )
    per_minute = eta = None
    recent = finished[-RATE_WINDOW:]
    if len(recent) >= 2:
        start, end = recent[0][1], recent[-1][1]
        span = end - start - idle_within(intervals(idle), start, end)
        if span > 0:
            per_minute = 60 * (len(recent) - 1) / span
    if per_minute is not None and steps_total is not None and working:
        eta = max(0, steps_total - len(finished)) / per_minute * 60
    best_step, best_score, since = None, None, 0
    for step, _, score, status in sorted(rows, key=lambda r: (r[1] is None, r[1] or 0)):
        if status == DONE and score is not None and direction.better(score, best_score, maximize):
            best_step, best_score, since = step, score, 0
        elif step >= 1 and status in FINISHED:
            since += 1
    stalled = since >= max(STALL_MIN, STALL_SHARE * len(finished))
    pruned = sum(1 for r in rows if r[3] == PRUNED)
    return Progress(per_minute, eta, since, best_step, stalled, pruned)


def intervals(value: Any) -> list[tuple[float, float | None]]:
    """The idle intervals of a meta value, malformed entries left out."""
    out: list[tuple[float, float | None]] = []
    for item in value if isinstance(value, list) else []:
        if isinstance(item, list | tuple) and len(item) == 2 and _number(item[0]) is not None:
            end = _number(item[1])
            out.append((float(item[0]), end))
    return out


def idle_within(idle: list[tuple[float, float | None]], start: float, end: float) -> float:
    """Seconds of ``[start, end]`` inside the idle intervals (an open one runs to ``end``)."""
    total = 0.0
    for a, b in idle:
        b = end if b is None else b
        total += max(0.0, min(b, end) - max(a, start))
    return min(total, max(0.0, end - start))


def idle_opened(value: Any, at: float) -> list[list[float | None]]:
    """The intervals with one opened at ``at`` (unless one is open already)."""
    idle = [[a, b] for a, b in intervals(value)]
    if not idle or idle[-1][1] is not None:
        idle.append([at, None])
    return idle[-MAX_IDLE:]


def idle_closed(value: Any, at: float) -> list[list[float | None]]:
    """The intervals with the open one (if any) closed at ``at``."""
    idle = [[a, b] for a, b in intervals(value)]
    if idle and idle[-1][1] is None:
        idle[-1][1] = max(at, float(idle[-1][0] or 0.0))
    return idle[-MAX_IDLE:]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes = int(seconds // 60)
    if minutes >= 120:
        return f"{minutes // 60} h {minutes % 60:02d} min"
    return f"{minutes} min {int(seconds % 60):02d} s"
