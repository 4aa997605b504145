"""What runs now: every unfinished candidate, its stage, how long it has run, and its limit.

A candidate of a GPU task runs for hours, and the only sign of life used to be a line when
it ended. So the pipeline records, in the node's metadata and committed before the stage's
process starts, which stage it is in, since when, and under which wall-clock limit
(``RUNNING_STAGE``); ``status``, the TUI and the console all read that same record. A node
still being written by the Researcher has no stage yet: it shows as ``research`` since its
creation.

Only the standard library is imported, so the TUI reads it with this very code.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any

from engine.store.schema import PENDING, RUNNING

RUNNING_STAGE = "running_stage"  # node metadata: {"name", "started_at", "timeout"}
RESEARCH = "research"  # the stage of a pending node: the Researcher is writing it
WAITING = "waiting"  # between two stages: a gate's decision, or a slot for the next stage


@dataclass(frozen=True)
class Running:
    """One unfinished candidate.

    stage: the stage it is in (``research`` while the Researcher writes it).
    elapsed: seconds since that stage started (clamped at 0 against clock skew).
    timeout: the stage's wall-clock limit in seconds; None for research (no limit of ours).
    """

    node_id: int
    step: int
    stage: str
    started_at: float
    elapsed: float
    timeout: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """E.g. ``#12 explore 3:05 / 10:00``."""
        limit = f" / {clock(self.timeout)}" if self.timeout else ""
        return f"#{self.node_id} {self.stage} {clock(self.elapsed)}{limit}"


def stage_record(name: str, started_at: float, timeout: float | None) -> dict[str, Any]:
    """The metadata value the pipeline commits when a stage starts (and, named
    ``WAITING`` without a limit, when one ends: the next may wait for a GPU for hours)."""
    return {"name": name, "started_at": started_at, "timeout": timeout}


def running_of(
    node_id: int,
    step: int,
    status: str,
    created_at: float | None,
    metadata: Any,
    now: float,
) -> Running | None:
    """The candidate's stage from its row; None for a finished node."""
    if status not in (PENDING, RUNNING):
        return None
    if isinstance(metadata, str | bytes):
        try:
            metadata = json.loads(metadata)
        except ValueError:
            metadata = None
    record = metadata.get(RUNNING_STAGE) if isinstance(metadata, dict) else None
    if status == RUNNING and isinstance(record, dict) and isinstance(record.get("name"), str):
        started = _number(record.get("started_at")) or _number(created_at) or now
        timeout = _number(record.get("timeout"))
        return Running(node_id, step, record["name"], started, max(0.0, now - started), timeout)
    started = _number(created_at) or now
    stage = RESEARCH if status == PENDING else "starting"
    return Running(node_id, step, stage, started, max(0.0, now - started), None)


def clock(seconds: float | None) -> str:
    """``m:ss`` below an hour, ``h:mm:ss`` above; ``-`` for None."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    total = int(max(0.0, seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None
