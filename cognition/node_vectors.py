"""Cached embeddings of node texts (motivations and analyses), table ``node_vectors``.

A context node is the query of many rounds and every motivation is compared with all later
ones, so each text is embedded once and kept, keyed by (node, field) and checked by a hash of
the text and the embedder's name: an edited text or another embedder simply misses the cache.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np

from cognition.embedder import to_blob
from cognition.items import NODE_VECTORS
from engine.store.database import Database

Key = tuple[int, str]  # (node id, "motivation" | "analysis")


def text_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "replace")).hexdigest()


class NodeVectors:
    def __init__(self, db: Database, model: str, writable: bool = True) -> None:
        self.db = db
        self.model = model
        self.writable = writable

    def lookup(self, wanted: dict[Key, str]) -> dict[Key, np.ndarray]:
        """The cached vectors of ``wanted`` (key -> text) whose text and model still match."""
        if not wanted or not self.db[NODE_VECTORS].exists():
            return {}
        found: dict[Key, np.ndarray] = {}
        node_ids = sorted({k[0] for k in wanted})
        for start in range(0, len(node_ids), 500):
            chunk = node_ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(
                f"SELECT node_id, field, text_hash, embedding FROM {NODE_VECTORS} "
                f"WHERE embed_model = ? AND node_id IN ({marks})",
                [self.model, *chunk],
            )
            for node_id, field, digest, blob in rows:
                key = (node_id, field)
                if key in wanted and digest == text_hash(wanted[key]):
                    found[key] = np.frombuffer(blob, dtype=np.float32)
        return found

    def store(self, vectors: dict[Key, tuple[str, np.ndarray]]) -> None:
        """Keep key -> (text, vector); a no-op on a read-only database."""
        if not vectors or not self.writable:
            return
        with self.db.conn:
            self.db.conn.executemany(
                f"INSERT OR REPLACE INTO {NODE_VECTORS}"
                "(node_id, field, text_hash, embed_model, embedding) VALUES (?, ?, ?, ?, ?)",
                [
                    (k[0], k[1], text_hash(text), self.model, to_blob(v))
                    for k, (text, v) in vectors.items()
                ],
            )

    def get(
        self, wanted: dict[Key, str], encode: Callable[[list[str]], np.ndarray]
    ) -> dict[Key, np.ndarray]:
        """Synchronous lookup + embed what is missing (one batch) + store."""
        found = self.lookup(wanted)
        missing = [k for k in wanted if k not in found]
        if missing:
            vectors = encode([wanted[k] for k in missing])
            fresh = {k: (wanted[k], vectors[i]) for i, k in enumerate(missing)}
            self.store(fresh)
            found.update({k: v for k, (_, v) in fresh.items()})
        return found
