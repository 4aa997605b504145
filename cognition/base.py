"""The cognition base of one run: items in the run database, searched by cosine in numpy.

Database work and embedding are kept apart on purpose: the engine embeds in a worker thread
(a model load takes seconds and must not stall the event loop) while the SQLite connection
stays on the loop's thread. So the methods here take vectors that were computed elsewhere,
and ``refresh``/``encode`` are the synchronous conveniences for the command line.

Search is a matrix-vector product over the active items: O(items), milliseconds for
thousands of items; no index to keep in sync with the table. Ranking is by cosine to the
query alone (no boost for any origin or status); items the Analyzer derived from the run
itself are capped at ``max_derived`` of the top-k, because their texts share the run's
vocabulary and would otherwise fill every query's slots and crowd out the seed priors.
"""

from __future__ import annotations

import json
import time

import numpy as np

from cognition.embedder import Embedder, from_blobs, to_blob
from cognition.items import (
    ACTIVE,
    ANALYZER,
    ITEMS,
    PENDING,
    RETRIEVALS,
    STATUSES,
    CognitionError,
    Draft,
    Item,
    ensure_schema,
    has_tables,
)
from cognition.ranking import Hit, top_hits
from cognition.settings import CognitionSettings
from engine.store.database import Database


class CognitionBase:
    def __init__(
        self,
        db: Database,
        settings: CognitionSettings | None = None,
        embedder: Embedder | None = None,
        writable: bool = True,
    ) -> None:
        self.db = db
        self.settings = settings or CognitionSettings()
        self._embedder = embedder
        self.writable = writable
        self._tables = False  # seen to exist: tables are never dropped, so this stays true
        if writable:
            ensure_schema(db)

    @property
    def embedder(self) -> Embedder:
        """Built on first use, so reading items never needs a model or an endpoint."""
        if self._embedder is None:
            self._embedder = self.settings.make_embedder()
        return self._embedder

    def _has_tables(self) -> bool:
        """Whether the cognition tables exist. Only a yes is kept: a reader opened before the
        engine created them asks again, and a retrieval does not query sqlite_master on
        every call (1-2 % of the engine's CPU per candidate, issue 22)."""
        if not self._tables:
            self._tables = has_tables(self.db)
        return self._tables

    def encode(self, texts: list[str]) -> np.ndarray:
        return self.embedder.encode(texts)

    # ---------------------------------------------------------------- reading
    def items(self, status: str | None = None, origin: str | None = None) -> list[Item]:
        if not self._has_tables():
            return []
        where, params = [], []
        if status:
            where.append("status = ?")
            params.append(status)
        if origin:
            where.append("origin = ?")
            params.append(origin)
        sql = f"SELECT * FROM {ITEMS}" + (f" WHERE {' AND '.join(where)}" if where else "")
        return [Item.from_row(r) for r in self.db.query(sql + " ORDER BY id", params)]

    def get(self, item_id: int) -> Item | None:
        if not self._has_tables():
            return None
        rows = list(self.db.query(f"SELECT * FROM {ITEMS} WHERE id = ?", [item_id]))
        return Item.from_row(rows[0]) if rows else None

    def check_ids(self, ids: list[int]) -> list[Item]:
        """The items, or a CognitionError naming the unknown ids (before anything changes)."""
        found = {i: self.get(i) for i in ids}
        missing = [str(i) for i, item in found.items() if item is None]
        if missing:
            raise CognitionError(f"no cognition item with id {', '.join(missing)}")
        return [found[i] for i in ids]

    def stale(self) -> list[tuple[int, str]]:
        """(id, text) of items without a vector from the current embedder."""
        if not self._has_tables():
            return []
        rows = self.db.execute(
            f"SELECT id, title, content FROM {ITEMS} "
            "WHERE embedding IS NULL OR embed_model IS NOT ?",
            [self.embedder.name],
        ).fetchall()
        return [(r[0], Draft(r[1] or "", r[2] or "").text) for r in rows]

    def matrix(
        self, statuses: tuple[str, ...] = (ACTIVE,), extra: dict[int, np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of the items with these statuses and a current vector.

        ``extra`` supplies vectors computed but not stored (a read-only search)."""
        if not self._has_tables():
            return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
        marks = ",".join("?" * len(statuses))
        rows = self.db.execute(
            f"SELECT id, embedding, embed_model FROM {ITEMS} WHERE status IN ({marks}) ORDER BY id",
            list(statuses),
        ).fetchall()
        ids, blobs = [], []
        for item_id, blob, model in rows:
            if extra and item_id in extra:
                ids.append(item_id)
                blobs.append(to_blob(extra[item_id]))
            elif blob is not None and model == self.embedder.name:
                ids.append(item_id)
                blobs.append(blob)
        return np.asarray(ids, dtype=np.int64), from_blobs(blobs)

    def derived(self, ids: np.ndarray) -> np.ndarray:
        """Mask of ``ids`` proposed by the Analyzer (knowledge derived from the run)."""
        if len(ids) == 0 or not self._has_tables():
            return np.zeros(len(ids), dtype=bool)
        rows = self.db.execute(f"SELECT id FROM {ITEMS} WHERE origin = ?", [ANALYZER])
        return np.isin(ids, np.fromiter((r[0] for r in rows), dtype=np.int64))

    def search(self, vector: np.ndarray, top_k: int, threshold: float) -> list[Item]:
        """Active items by cosine to ``vector``: best ``top_k`` at or above ``threshold``, at
        most ``max_derived`` of them proposed by the Analyzer (as retrieval does)."""
        extra = self.refresh()
        ids, matrix = self.matrix(extra=extra)
        hits = top_hits(
            ids,
            matrix,
            vector,
            top_k,
            threshold,
            derived=self.derived(ids),
            max_derived=self.settings.max_derived,
        )
        out = []
        for hit in hits:
            item = self.get(hit.item_id)
            if item is not None:
                item.score = hit.score
                out.append(item)
        return out

    # ---------------------------------------------------------------- writing
    def refresh(self) -> dict[int, np.ndarray]:
        """Embed stale items (sync). Stored when writable; always returned."""
        stale = self.stale()
        if not stale:
            return {}
        vectors = self.encode([text for _, text in stale])
        fresh = {item_id: vectors[i] for i, (item_id, _) in enumerate(stale)}
        if self.writable:
            self.set_vectors(fresh)
        return fresh

    def set_vectors(self, vectors: dict[int, np.ndarray]) -> None:
        with self.db.conn:
            self.db.conn.executemany(
                f"UPDATE {ITEMS} SET embedding = ?, embed_model = ? WHERE id = ?",
                [(to_blob(v), self.embedder.name, i) for i, v in vectors.items()],
            )

    def add(
        self,
        drafts: list[Draft],
        vectors: np.ndarray | None,
        origin: str,
        status: str = ACTIVE,
        node_id: int | None = None,
        flag: bool = True,
    ) -> list[Item]:
        """Store drafts in one transaction; near-duplicates are flagged and kept pending.

        A draft whose cosine to an existing item (any status) or to an earlier draft of the
        same batch exceeds ``duplicate_threshold`` gets ``duplicate_of`` and status
        ``pending``: a person decides. Without vectors (the embedder failed) items are stored
        unembedded, unchecked, and embedded on the next search. ``flag=False``: the caller
        has already decided (the retriever drops the Analyzer's duplicates, ``dedupe``).
        """
        if status not in STATUSES:
            raise CognitionError(f"unknown status {status!r}")
        check = flag and vectors is not None
        duplicates = self._duplicates(vectors) if check else [None] * len(drafts)
        now = time.time()
        stored: list[int] = []
        with self.db.conn:
            for i, draft in enumerate(drafts):
                vector = vectors[i] if vectors is not None else None
                duplicate = duplicates[i]
                if duplicate is not None and duplicate[0] < 0:  # an earlier draft of this batch
                    duplicate = (stored[-duplicate[0] - 1], duplicate[1])
                row = {
                    "title": draft.title,
                    "content": draft.content,
                    "tags": json.dumps(draft.tags),
                    "source": draft.source,
                    "status": PENDING if duplicate else status,
                    "origin": origin,
                    "node_id": node_id,
                    "created_at": now,
                    "updated_at": now,
                    "duplicate_of": duplicate[0] if duplicate else None,
                    "duplicate_score": duplicate[1] if duplicate else None,
                    "embedding": to_blob(vector) if vector is not None else None,
                    "embed_model": self.embedder.name if vector is not None else None,
                }
                stored.append(self.db[ITEMS].insert(row).last_pk)
        return [item for i in stored if (item := self.get(i)) is not None]

    def _duplicates(self, vectors: np.ndarray) -> list[tuple[int, float] | None]:
        """Per new vector: (id, cosine) of the closest stored item or earlier new vector
        above ``duplicate_threshold`` (an earlier new vector j is written as id -(j + 1)).

        Blocks of rows keep memory bounded; O(new x (stored + new)) products in numpy."""
        ids, matrix = self.matrix(statuses=STATUSES)
        out: list[tuple[int, float] | None] = []
        threshold = self.settings.duplicate_threshold
        block = 1024
        for start in range(0, len(vectors), block):
            rows = vectors[start : start + block]
            stored = rows @ matrix.T if len(ids) else np.zeros((len(rows), 0), np.float32)
            batch = rows @ vectors[: start + len(rows)].T
            for r in range(len(rows)):
                i = start + r
                best: tuple[int, float] | None = None
                if stored.shape[1]:
                    j = int(np.argmax(stored[r]))
                    best = (int(ids[j]), float(stored[r, j]))
                if i > 0:
                    j = int(np.argmax(batch[r, :i]))
                    if best is None or batch[r, j] > best[1]:
                        best = (-(j + 1), float(batch[r, j]))
                out.append(best if best is not None and best[1] > threshold else None)
        return out

    def add_texts(
        self, drafts: list[Draft], origin: str, status: str = ACTIVE, node_id: int | None = None
    ) -> list[Item]:
        """Embed (sync, one batch) and add: the command line's way in.

        Stale items are embedded in the same batch so that they take part in the duplicate
        check; nothing is written unless every text could be embedded."""
        stale = self.stale()
        vectors = self.encode([text for _, text in stale] + [d.text for d in drafts])
        self.set_vectors({item_id: vectors[i] for i, (item_id, _) in enumerate(stale)})
        return self.add(drafts, vectors[len(stale) :], origin, status, node_id)

    def revise(
        self, item_id: int, draft: Draft, vector: np.ndarray | None, node_id: int | None
    ) -> Item | None:
        """Replace a pending item's statement with a newer one about the same change (its
        net evidence), keeping its id: one proposal per change waits for a person, not one
        per verdict. Without a vector the item is re-embedded on the next search."""
        with self.db.conn:
            self.db.conn.execute(
                f"UPDATE {ITEMS} SET title = ?, content = ?, tags = ?, node_id = ?, "
                "updated_at = ?, embedding = ?, embed_model = ? WHERE id = ?",
                [
                    draft.title,
                    draft.content,
                    json.dumps(draft.tags),
                    node_id,
                    time.time(),
                    to_blob(vector) if vector is not None else None,
                    self.embedder.name if vector is not None else None,
                    item_id,
                ],
            )
        return self.get(item_id)

    def set_status(self, ids: list[int], status: str) -> list[Item]:
        self.check_ids(ids)
        with self.db.conn:
            self.db.conn.executemany(
                f"UPDATE {ITEMS} SET status = ?, updated_at = ? WHERE id = ?",
                [(status, time.time(), i) for i in ids],
            )
        return self.check_ids(ids)

    def remove(self, ids: list[int]) -> list[Item]:
        """Delete items; their retrieval records stay (the report shows them as removed)."""
        items = self.check_ids(ids)
        with self.db.conn:
            self.db.conn.executemany(f"DELETE FROM {ITEMS} WHERE id = ?", [(i,) for i in ids])
        return items

    # ------------------------------------------------------------- provenance
    def record_retrievals(self, node_id: int, hits: list[Hit]) -> None:
        now = time.time()
        with self.db.conn:
            self.db.conn.executemany(
                f"INSERT OR REPLACE INTO {RETRIEVALS}(node_id, item_id, score, query_node_id, ts) "
                "VALUES (?, ?, ?, ?, ?)",
                [(node_id, h.item_id, h.score, h.query_node_id, now) for h in hits],
            )

    def retrievals(self, node_id: int | None = None) -> list[dict]:
        if not self.db[RETRIEVALS].exists():
            return []
        sql = f"SELECT * FROM {RETRIEVALS}"
        if node_id is not None:
            return list(self.db.query(sql + " WHERE node_id = ? ORDER BY score DESC", [node_id]))
        return list(self.db.query(sql + " ORDER BY node_id, score DESC"))
