"""The lineage of a node: its ancestors back to the initial program, with what each changed.

Why a node scores what it does is mostly told by its line of descent: which idea (the
Researcher's motivation) each generation tried and how much the score moved. The chain is
read in one recursive query on the parent links (``RunReader.ancestry``), bounded in depth,
so a cycle in odd data or a 100,000-generation chain cannot hang the screen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.store.reader import RunReader

MAX_DEPTH = 1000  # ancestors read at most (the screen says when the chain goes further)


@dataclass(frozen=True, slots=True)
class Ancestor:
    """One generation of the chain: the node, its score and the change from its parent."""

    id: int
    step: int
    name: str
    status: str
    score: float | None
    delta: float | None  # score minus the parent's score (None when either is missing)
    motivation: str


@dataclass(frozen=True)
class Lineage:
    chain: list[Ancestor]  # the node first, then its parent, ... the root last
    truncated: bool  # the chain goes back further than MAX_DEPTH


def _score(value: object) -> float | None:
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def read_lineage(reader: RunReader, node_id: int, max_depth: int = MAX_DEPTH) -> Lineage:
    rows = reader.ancestry(node_id, max_depth)
    chain: list[Ancestor] = []
    for i, r in enumerate(rows[:max_depth]):  # one row more was read: the last one's parent
        score = _score(r[4])
        parent = _score(rows[i + 1][4]) if i + 1 < len(rows) else None
        chain.append(
            Ancestor(
                id=int(r[0]),
                step=int(r[1]) if isinstance(r[1], int) else -1,
                name=str(r[2] or ""),
                status=str(r[3] or "?"),
                score=score,
                delta=score - parent if score is not None and parent is not None else None,
                motivation=str(r[5] or ""),
            )
        )
    return Lineage(chain, truncated=len(rows) > max_depth)
