"""The population as the TUI sees it: light node rows in memory, kept up to date by diffs.

At 100,000 nodes the table cannot hold every row, and re-sorting everything each second
would stall the screen, so the model keeps status counts and the best node incrementally and
the table shows a window: the first ``limit`` rows of the current sort and filter.

Where the task verifies its promising nodes (``engine/store/standing.py``), the model also
keeps, incrementally, each node's verify score, the baseline (the initial program) and the
best verified node: with them, ``standings`` ranks the run's reported best over a handful of
rows instead of the whole population.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from engine import direction
from engine.store.reader import NodeRow
from engine.store.schema import DONE, FAILED, FINISHED, PENDING, PRUNED, RUNNING
from engine.store.standing import VERIFIED, StageNames, Standings, verify_of

STATUS_ORDER = {RUNNING: 0, PENDING: 1, DONE: 2, FAILED: 3, PRUNED: 4}
SORTS = ("step", "score", "status")


@dataclass(frozen=True)
class View:
    """How the table is ordered and filtered."""

    sort: str = "step"
    filter: str = ""


def finite(score: float | None) -> bool:
    return score is not None and math.isfinite(score)


class Population:
    """Every node's light row, with counts and the best node kept incrementally."""

    def __init__(self, maximize: bool = True, names: StageNames | None = None) -> None:
        self.maximize = maximize
        self.names = names or StageNames()
        self.rows: dict[int, NodeRow] = {}
        self.counts: dict[str, int] = {}
        self.steps_done = 0
        self.best: NodeRow | None = None
        self.version = 0  # bumps on every real change (the curve redraws only then)
        self.root: NodeRow | None = None  # the initial program (step 0): the baseline
        self.verified: dict[int, float] = {}  # verify score of every verified node
        self.best_verified: NodeRow | None = None  # the best verified done node

    # --------------------------------------------------------------- updates
    def apply(self, rows: Iterable[NodeRow]) -> set[int]:
        """Merge fresh rows; returns the ids whose row really changed."""
        changed: set[int] = set()
        recompute_best = recompute_verified = False
        for row in rows:
            old = self.rows.get(row.id)
            if old == row:
                continue
            if old is not None:
                self._count(old, -1)
                if self.best is not None and self.best.id == row.id:
                    recompute_best = True
                if self.best_verified is not None and self.best_verified.id == row.id:
                    recompute_verified = True
            self.rows[row.id] = row
            self._count(row, +1)
            if not recompute_best and self._eligible(row) and self._better(row, self.best):
                self.best = row
            if self.names.verify is not None:
                self._verify(row, recompute_verified)
            if row.step == 0 and (self.root is None or row.id <= self.root.id):
                self.root = row
            changed.add(row.id)
        if recompute_best:
            self.best = None
            for row in self.rows.values():
                if self._eligible(row) and self._better(row, self.best):
                    self.best = row
        if recompute_verified:
            self.best_verified = None
            for node_id in list(self.verified):
                self._verify(self.rows[node_id], False)
        if changed:
            self.version += 1
        return changed

    def verify_score(self, row: NodeRow) -> float | None:
        """The node's verify score (None: not verified, or the task has no verify stage)."""
        if self.names.verify is None:
            return None
        score, state = verify_of(row.standing_row(self.names).stages, self.names)
        return score if state == VERIFIED else None

    def _verify(self, row: NodeRow, skip_best: bool) -> None:
        score = self.verify_score(row)
        if score is None:
            self.verified.pop(row.id, None)
            return
        self.verified[row.id] = score
        if skip_best or row.status != DONE:
            return
        best = self.best_verified
        if best is None or self._better_by(score, row.id, self.verified[best.id], best.id):
            self.best_verified = row

    def _better_by(self, score: float, node_id: int, than: float, than_id: int) -> bool:
        if score == than:
            return node_id < than_id
        return direction.better(score, than, self.maximize)

    def _count(self, row: NodeRow, sign: int) -> None:
        self.counts[row.status] = self.counts.get(row.status, 0) + sign
        if row.step >= 1 and row.status in FINISHED:
            self.steps_done += sign

    @staticmethod
    def _eligible(row: NodeRow) -> bool:
        return row.status == "done" and finite(row.score)

    def _better(self, row: NodeRow, than: NodeRow | None) -> bool:
        if than is None:
            return True
        assert row.score is not None and than.score is not None
        if row.score == than.score:
            return row.id < than.id
        return direction.better(row.score, than.score, self.maximize)

    # ----------------------------------------------------------------- reads
    def delta(self, row: NodeRow) -> float | None:
        """Score change against the parent (raw difference; its sign is the direction's)."""
        parent = self.rows.get(row.parent_id) if row.parent_id is not None else None
        if parent is None or not finite(row.score) or not finite(parent.score):
            return None
        return row.score - parent.score  # type: ignore[operator]

    def improved(self, delta: float) -> bool:
        return direction.improved(delta, self.maximize)

    def window(self, view: View, limit: int) -> tuple[list[int], int]:
        """The ids the table shows, in order, and how many rows match the filter."""
        match = matcher(view.filter)
        rows = self.rows.values() if match is None else [r for r in self.rows.values() if match(r)]
        key = self.sort_key(view.sort)
        top = heapq.nsmallest(limit, rows, key=key)
        return [r.id for r in top], len(rows)

    def sort_key(self, sort: str) -> Callable[[NodeRow], tuple]:
        maximize = self.maximize
        if sort == "score":  # best first
            return lambda r: (
                (0, -direction.fitness(r.score, maximize), r.id)
                if finite(r.score)
                else (1, 0.0, -r.step)
            )
        if sort == "status":
            return lambda r: (STATUS_ORDER.get(r.status, 9), -r.step)
        return lambda r: (-r.step, -r.id)

    def standings(self, ids: Iterable[int]) -> Standings:
        """The standings of these nodes, the baseline and the best ones: its ``best()`` is
        the run's reported best, its ``of(id)`` each of these nodes' standing."""
        wanted = set(ids)
        wanted.update(r.id for r in (self.root, self.best, self.best_verified) if r is not None)
        rows = (self.rows[i].standing_row(self.names) for i in wanted if i in self.rows)
        return Standings(rows, self.names, self.maximize)

    def flagged(self) -> int:
        """How many verified nodes score below the baseline's verify score."""
        baseline = self.verified.get(self.root.id) if self.root is not None else None
        if baseline is None:
            return 0
        return sum(
            1
            for node_id, score in self.verified.items()
            if self.rows[node_id].step != 0 and direction.better(baseline, score, self.maximize)
        )

    def curve(self) -> list[tuple[int, float]]:
        """(step, score) of every scored, finished node, in step order."""
        pts = [(r.step, r.score) for r in self.rows.values() if self._eligible(r)]
        pts.sort()
        return pts  # type: ignore[return-value]


def matcher(text: str) -> Callable[[NodeRow], bool] | None:
    """Filter: a status name, ``#ID``, ``island:N``, or a piece of the node's name."""
    text = text.strip().lower()
    if not text:
        return None
    if text in STATUS_ORDER:
        return lambda r: r.status == text
    if text.startswith("#") and text[1:].isdigit():
        wanted = int(text[1:])
        return lambda r: r.id == wanted
    if text.startswith("island:") and text[7:].isdigit():
        island = int(text[7:])
        return lambda r: r.island == island
    return lambda r: text in r.name.lower()
