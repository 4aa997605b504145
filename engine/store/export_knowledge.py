"""The knowledge an export shows: which items each node was shown, and which items the run's
nodes proposed, with their provenance (which node proposed an item, which nodes used it).

The cognition tables (``engine/store/schema.py``) are optional: a run without a knowledge base
has none, and an older layout may lack some columns; both read as empty or NULL. Read-only,
on the store's connection. A node that has no retrieval row (a run whose ``retrievals`` table
is missing) falls back on what its metadata recorded (``metadata["knowledge"]``: ids, scores).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.store import schema
from engine.store.run_store import RunStore

ITEM_COLUMNS = ("id", "title", "content", "status", "origin", "node_id")


@dataclass(frozen=True)
class Item:
    """One knowledge item; ``node_id`` is the node whose analysis proposed it."""

    id: int
    title: str
    content: str
    status: str
    origin: str
    node_id: int | None


@dataclass(frozen=True)
class Use:
    """An item shown to a node, with the retrieval's similarity score."""

    item_id: int
    score: float | None


@dataclass
class Knowledge:
    """The run's knowledge base as the export sees it."""

    available: bool = False  # the run has the cognition tables
    items: dict[int, Item] = field(default_factory=dict)
    uses: dict[int, list[Use]] = field(default_factory=dict)  # node id -> its items, best first

    def used_by_node(self, node_id: int, metadata: Mapping[str, Any] | None = None) -> list[Use]:
        """The items shown to a node: its retrieval rows, else its metadata's record."""
        if node_id in self.uses:
            return self.uses[node_id]
        recorded = (metadata or {}).get("knowledge")
        if not isinstance(recorded, list):
            return []
        found = []
        for entry in recorded:
            if isinstance(entry, Mapping) and _integer(entry.get("id")) is not None:
                found.append(Use(int(entry["id"]), _number(entry.get("score"))))
        return found

    def users(self, item_id: int) -> list[int]:
        """The nodes that were shown the item, in id order."""
        return sorted(n for n, uses in self.uses.items() if any(u.item_id == item_id for u in uses))

    def proposed(self, node_ids: Iterable[int]) -> list[Item]:
        """Items proposed by one of ``node_ids`` (the run's nodes), in id order."""
        wanted = set(node_ids)
        return [i for _, i in sorted(self.items.items()) if i.node_id in wanted]


def read(store: RunStore) -> Knowledge:
    """The items and retrievals of a run; empty when it has no knowledge base."""
    tables = set(store.db.table_names())
    items_table, retrievals_table = schema.COGNITION_ITEMS.name, schema.RETRIEVALS.name
    knowledge = Knowledge(available=items_table in tables)
    if items_table in tables:
        present = {row[1] for row in store.db.execute(f"PRAGMA table_info({items_table})")}
        columns = ", ".join(c if c in present else "NULL" for c in ITEM_COLUMNS)
        for row in store.db.execute(f"SELECT {columns} FROM {items_table} ORDER BY id"):
            if (item_id := _integer(row[0])) is None:
                continue
            knowledge.items[item_id] = Item(
                item_id,
                _text(row[1]),
                _text(row[2]),
                _text(row[3]),
                _text(row[4]),
                _integer(row[5]),
            )
    if retrievals_table in tables:
        sql = f"SELECT node_id, item_id, score FROM {retrievals_table} ORDER BY node_id, score DESC"
        for node_id, item_id, score in store.db.execute(sql):
            if _integer(node_id) is None or _integer(item_id) is None:
                continue
            knowledge.uses.setdefault(node_id, []).append(Use(item_id, _number(score)))
    return knowledge


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None
