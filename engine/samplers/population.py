"""The sampler's in-memory mirror of the run: numpy columns, so a round stays O(n) and fast.

At 100,000 nodes a per-round database query or a Python loop over nodes would dominate the
engine's overhead; a few vectorized passes over contiguous arrays cost well under a
millisecond. Whole-population passes use a slice (a view, no gather) and rely on one
invariant instead of a mask: ``fitness`` is NaN on every row that is not eligible.
"""

from __future__ import annotations

import numpy as np

from engine.store.records import DONE, FINISHED, PRUNED

Rows = np.ndarray | slice  # explicit rows, or ``all_rows()``: the whole population
_SMALL_K = 16  # up to this many picks, repeated max passes beat a full partition


class Population:
    """Column arrays of every node the sampler knows, grown by doubling.

    Row order is the order the sampler learnt of the nodes, not id order (nodes finish out of
    order), so every tie is broken on ``ids``. ``fitness`` always means higher is better.
    """

    _COLUMNS = ("ids", "step", "fitness", "visits", "island", "code_len")
    _FLAGS = ("eligible", "pruned", "finished")

    def __init__(self, capacity: int = 1024) -> None:
        self.size = 0
        self._row: dict[int, int] = {}
        self.n_finished = 0  # nodes with step >= 1 that are done, failed or pruned
        self.n_eligible = 0
        self.eligible_visits = 0  # sum of visits over eligible rows (UCB1's N without a pass)
        self.ids = np.zeros(capacity, dtype=np.int64)
        self.step = np.zeros(capacity, dtype=np.int64)
        self.fitness = np.full(capacity, np.nan)
        self.visits = np.zeros(capacity)  # float: exact for counts, no int->float per round
        self.island = np.full(capacity, -1, dtype=np.int64)  # home island, -1 for none
        self.code_len = np.zeros(capacity, dtype=np.int64)
        self.eligible = np.zeros(capacity, dtype=bool)
        self.pruned = np.zeros(capacity, dtype=bool)
        self.finished = np.zeros(capacity, dtype=bool)

    def row(self, node_id: int) -> int | None:
        return self._row.get(node_id)

    def all_rows(self) -> slice:
        return slice(0, self.size)

    def eligible_rows(self) -> np.ndarray:
        return np.flatnonzero(self.eligible[: self.size])

    def upsert(
        self,
        node_id: int,
        *,
        step: int,
        status: str,
        fitness: float | None,
        island: int | None,
        code_len: int,
        visits: int | None = None,
    ) -> int:
        """Add or refresh one node; ``visits`` only seeds new rows (memory is ahead of rows)."""
        i = self._row.get(node_id)
        if i is None:
            i = self._append(node_id)
            self.visits[i] = visits or 0
        self.step[i] = step
        self.island[i] = -1 if island is None else island
        self.code_len[i] = code_len
        self.pruned[i] |= status == PRUNED
        ok = status == DONE and fitness is not None and not self.pruned[i]
        self._set_eligible(i, fitness if ok else None)
        if status in FINISHED:
            self.mark_finished(i)
        return i

    def prune(self, i: int) -> None:
        self.pruned[i] = True
        self._set_eligible(i, None)
        self.mark_finished(i)

    def mark_finished(self, i: int) -> None:
        if not self.finished[i]:
            self.finished[i] = True
            self.n_finished += int(self.step[i] >= 1)

    def add_visits(self, rows: list[int]) -> None:
        for i in rows:  # a handful per round; a loop keeps repeated rows right
            self.visits[i] += 1
            self.eligible_visits += int(self.eligible[i])

    def _set_eligible(self, i: int, fitness: float | None) -> None:
        was = bool(self.eligible[i])
        now = fitness is not None
        self.eligible[i] = now
        self.fitness[i] = np.nan if fitness is None else fitness
        self.n_eligible += int(now) - int(was)
        self.eligible_visits += (int(now) - int(was)) * int(self.visits[i])

    def _append(self, node_id: int) -> int:
        if self.size == len(self.ids):
            for name in self._COLUMNS + self._FLAGS:
                old = getattr(self, name)
                new = np.empty(2 * len(old), dtype=old.dtype)
                new[: len(old)] = old
                setattr(self, name, new)
        i = self.size
        self.size += 1
        self._row[node_id] = i
        self.ids[i] = node_id
        self.fitness[i] = np.nan
        self.visits[i] = 0
        for name in self._FLAGS:
            getattr(self, name)[i] = False
        return i


def take(rows: Rows, positions: np.ndarray) -> np.ndarray:
    """Population rows of ``positions`` within ``rows`` (``all_rows()`` starts at row 0)."""
    return positions if isinstance(rows, slice) else rows[positions]


def rank_desc(value: np.ndarray, fitness: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` best entries: higher value, then fitness, then lower id; NaN never.

    Exact ties are resolved over the whole tied set, so the result never depends on row
    order. Small ``k`` (the usual context size) takes repeated max passes; larger ``k`` a
    partition; both stay O(n) at 100,000 nodes.
    """
    v = np.where(np.isnan(value), -np.inf, value)
    if k <= _SMALL_K:
        picked: list[np.ndarray] = []
        need = k
        while need > 0:
            best = v.max(initial=-np.inf)
            if best == -np.inf:
                break
            tied = np.flatnonzero(v == best)
            if tied.size > 1:
                tied = tied[np.lexsort((ids[tied], -fitness[tied]))]
            picked.append(tied[:need])
            need -= min(need, tied.size)
            v[tied] = -np.inf
        return np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)
    finite = np.flatnonzero(v > -np.inf)
    if finite.size > k:
        kth = np.partition(v[finite], finite.size - k)[finite.size - k]
        finite = finite[v[finite] >= kth]
    order = np.lexsort((ids[finite], -fitness[finite], -v[finite]))
    return finite[order[:k]]
