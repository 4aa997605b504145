"""Plain records shared by the engine, the samplers and the agents.

They mirror rows of the run database (see ``schema.py``) so that every part of the
engine speaks about the same things with the same names. The node statuses are defined
with the schema and re-exported here, where most modules have always imported them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from engine.store.schema import DONE, FAILED, FINISHED, PENDING, PRUNED, RUNNING, STATUSES

__all__ = [
    "DONE",
    "FAILED",
    "FINISHED",
    "PENDING",
    "PRUNED",
    "RUNNING",
    "STATUSES",
    "Command",
    "Node",
    "Selection",
]


@dataclass
class Node:
    """One candidate: what was tried, why, and what came of it."""

    step: int
    code: str = ""
    name: str = ""
    parent_ids: list[int] = field(default_factory=list)
    context_ids: list[int] = field(default_factory=list)
    motivation: str = ""
    results: dict[str, Any] = field(default_factory=dict)
    analysis: str = ""
    score: float | None = None
    status: str = PENDING
    error: str = ""
    runtime: float | None = None
    island: int | None = None
    visits: int = 0
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    updated_at: float = 0.0
    metadata: dict[str, Any] = field(default_factory=dict)
    id: int | None = None

    @property
    def parent_id(self) -> int | None:
        return self.parent_ids[0] if self.parent_ids else None

    def to_row(self) -> dict[str, Any]:
        row = {
            "step": self.step,
            "name": self.name,
            "parent_id": self.parent_id,
            "parent_ids": json.dumps(self.parent_ids),
            "context_ids": json.dumps(self.context_ids),
            "motivation": self.motivation,
            "code": self.code,
            "results": json.dumps(self.results),
            "analysis": self.analysis,
            "score": self.score,
            "status": self.status,
            "error": self.error,
            "runtime": self.runtime,
            "island": self.island,
            "visits": self.visits,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "updated_at": self.updated_at,
            "metadata": json.dumps(self.metadata),
        }
        if self.id is not None:
            row["id"] = self.id
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Node:
        return cls(
            id=row["id"],
            step=row["step"],
            name=row["name"] or "",
            parent_ids=_json_or(row["parent_ids"], []),
            context_ids=_json_or(row["context_ids"], []),
            motivation=row["motivation"] or "",
            code=row["code"] or "",
            results=_json_or(row["results"], {}),
            analysis=row["analysis"] or "",
            score=row["score"],
            status=row["status"],
            error=row["error"] or "",
            runtime=row["runtime"],
            island=row["island"],
            visits=row["visits"] or 0,
            created_at=row["created_at"] or 0.0,
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            updated_at=row["updated_at"] or 0.0,
            metadata=_json_or(row["metadata"], {}),
        )


@dataclass
class Command:
    """A request from outside the engine (TUI, CLI): pause, resume, prune NODE, stop."""

    id: int
    kind: str
    arg: str
    created_at: float


@dataclass
class Selection:
    """What a sampler chose for the next round: the parent and the context nodes.

    ``context_ids`` always starts with the parent; ``island`` is where the child lives;
    ``elite_ids`` are the fittest eligible nodes, best first (``sample(elite=k)``).
    """

    parent_id: int
    context_ids: list[int]
    island: int | None = None
    elite_ids: list[int] = field(default_factory=list)  # the fittest nodes, when asked for


def _json_or(text: str | None, default: Any) -> Any:
    if not text:
        return default
    try:
        return json.loads(text)
    except ValueError:
        return default
