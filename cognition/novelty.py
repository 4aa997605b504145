"""The novelty check's memory: the motivations of the nodes tried so far, as one matrix.

A new motivation is compared with every idea already tried (O(nodes) numpy, no re-embedding):
the index follows the ``nodes`` table incrementally through its ``updated_at`` column, so a
check reads only the rows changed since the previous one.

Which nodes count as tried: those evaluated successfully or on their way (``done``,
``running``, and ``pending`` with a motivation: a concurrent worker's accepted idea). Failed
nodes do not count (an idea that crashed may deserve a correct implementation) and neither do
pruned ones (a person took them out of the search).
"""

from __future__ import annotations

import numpy as np

from cognition.node_vectors import text_hash
from engine.store.database import Database
from engine.store.records import DONE, PENDING, RUNNING

TRIED = (DONE, RUNNING, PENDING)


class MotivationIndex:
    def __init__(self) -> None:
        self._cursor = float("-inf")
        self._row: dict[int, int] = {}  # node id -> row of the matrix
        self._hash: dict[int, str] = {}
        self._ids = np.zeros(0, dtype=np.int64)
        self._matrix = np.zeros((0, 0), dtype=np.float32)
        self._valid = np.zeros(0, dtype=bool)
        self._size = 0
        self._pending_cursor = self._cursor

    def changes(self, db: Database) -> tuple[dict[int, str], list[int]]:
        """(node id -> motivation to index, node ids to drop) since the last ``apply``."""
        rows = db.execute(
            "SELECT id, status, motivation, updated_at FROM nodes WHERE updated_at >= ?",
            [self._cursor],
        ).fetchall()
        add: dict[int, str] = {}
        drop: list[int] = []
        cursor = self._cursor
        for node_id, status, motivation, updated_at in rows:
            cursor = max(cursor, updated_at or cursor)
            text = (motivation or "").strip()
            if status in TRIED and text:
                if self._hash.get(node_id) != text_hash(text):
                    add[node_id] = text
            elif node_id in self._row:
                drop.append(node_id)
        self._pending_cursor = cursor
        return add, drop

    def apply(self, vectors: dict[int, tuple[str, np.ndarray]], drop: list[int]) -> None:
        """Take in the vectors of ``changes`` (node id -> (text, vector)) and the drops."""
        for node_id in drop:
            self._valid[self._row[node_id]] = False
            self._hash.pop(node_id, None)
        for node_id, (text, vector) in vectors.items():
            row = self._row.get(node_id)
            if row is None:
                row = self._append(node_id, vector)
            self._matrix[row] = vector
            self._valid[row] = True
            self._hash[node_id] = text_hash(text)
        self._cursor = self._pending_cursor

    def most_similar(self, vector: np.ndarray, exclude: int | None) -> tuple[int, float] | None:
        """The tried node whose motivation is closest to ``vector`` (not ``exclude``)."""
        if self._size == 0:
            return None
        scores = self._matrix[: self._size] @ np.asarray(vector, dtype=np.float32)
        mask = self._valid[: self._size].copy()
        if exclude is not None and exclude in self._row:
            mask[self._row[exclude]] = False
        if not mask.any():
            return None
        scores = np.where(mask, scores, -np.inf)
        best = int(np.argmax(scores))
        return int(self._ids[best]), float(scores[best])

    def __len__(self) -> int:
        return int(self._valid[: self._size].sum())

    def _append(self, node_id: int, vector: np.ndarray) -> int:
        if self._size == len(self._ids):  # grow by doubling: amortised O(1) per node
            capacity = max(64, 2 * len(self._ids))
            matrix = np.zeros((capacity, len(vector)), dtype=np.float32)
            if self._size:
                matrix[: self._size] = self._matrix[: self._size]
            self._matrix = matrix
            self._ids = np.resize(self._ids, capacity)
            valid = np.zeros(capacity, dtype=bool)
            valid[: self._size] = self._valid[: self._size]
            self._valid = valid
        row = self._size
        self._ids[row] = node_id
        self._row[node_id] = row
        self._size += 1
        return row
