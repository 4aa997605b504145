"""How a run is going: speed, time left, and whether the search has stalled.

A run watched over SSH for days needs three numbers more than any other: candidates per
minute (is it working?), the ETA of its budget (when to come back), and how many
candidates have finished since the best one was found (is it still finding anything?).
They are computed from the finish times and scores stored on the nodes, so ``status``,
the TUI and an export all read the same thing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from engine import direction
from engine.store.schema import DONE, FINISHED, PRUNED

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
    rows: list[tuple[int, float | None, float | None, str]], steps_total: int | None, maximize: bool
) -> Progress:
    """``rows``: (step, finished_at, score, status) of every node, in any order."""
    finished = sorted(
        (r for r in rows if r[0] >= 1 and r[1] is not None and r[3] in FINISHED),
        key=lambda r: r[1],
    )
    per_minute = eta = None
    recent = finished[-RATE_WINDOW:]
    if len(recent) >= 2 and recent[-1][1] > recent[0][1]:
        per_minute = 60 * (len(recent) - 1) / (recent[-1][1] - recent[0][1])
        if steps_total is not None:
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


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes = int(seconds // 60)
    if minutes >= 120:
        return f"{minutes // 60} h {minutes % 60:02d} min"
    return f"{minutes} min {int(seconds % 60):02d} s"
