"""Reads of the cognition base (``cognition_items``, ``retrievals``) for the TUI.

The cognition tables appear in a run database only once the cognition base has written to
it, and older runs never get them, so every read here first checks that the table exists
(and which columns it has) and returns nothing otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.store import schema
from tui.data import RunReader

ITEMS, RETRIEVALS = schema.COGNITION_ITEMS.name, schema.RETRIEVALS.name


@dataclass(frozen=True, slots=True)
class Proposal:
    """A pending cognition item waiting for a person's decision."""

    id: int
    title: str
    content: str
    origin: str
    node_id: int | None
    duplicate_of: int | None


@dataclass(frozen=True, slots=True)
class Retrieved:
    """An item shown to a node's Researcher, with the similarity that brought it."""

    item_id: int
    score: float | None
    title: str
    status: str


class KnowledgeReader:
    """Cognition reads on top of a :class:`RunReader`; absent tables read as empty."""

    def __init__(self, reader: RunReader) -> None:
        self.reader = reader

    def available(self) -> bool:
        return ITEMS in self.reader.tables()

    def _columns(self, table: str) -> set[str]:
        return {r[1] for r in self.reader.query(f"PRAGMA table_info({table})")}

    def pending(self, limit: int = 500) -> list[Proposal]:
        if not self.available():
            return []
        cols = self._columns(ITEMS)
        node = "node_id" if "node_id" in cols else "NULL"
        dup = "duplicate_of" if "duplicate_of" in cols else "NULL"
        origin = "origin" if "origin" in cols else "''"
        rows = self.reader.query(
            f"SELECT id, title, content, {origin}, {node}, {dup} FROM {ITEMS} "
            "WHERE status = 'pending' ORDER BY id LIMIT ?",
            (limit,),
        )
        return [
            Proposal(
                id=int(r[0]),
                title=str(r[1] or ""),
                content=str(r[2] or ""),
                origin=str(r[3] or ""),
                node_id=r[4] if isinstance(r[4], int) else None,
                duplicate_of=r[5] if isinstance(r[5], int) else None,
            )
            for r in rows
        ]

    def retrieved_for(self, node_id: int) -> list[Retrieved]:
        tables = self.reader.tables()
        if RETRIEVALS not in tables:
            return []
        if ITEMS in tables:
            sql = (
                f"SELECT r.item_id, r.score, c.title, c.status FROM {RETRIEVALS} r "
                f"LEFT JOIN {ITEMS} c ON c.id = r.item_id WHERE r.node_id = ? "
                "ORDER BY r.score DESC"
            )
        else:
            sql = (
                f"SELECT item_id, score, '', '' FROM {RETRIEVALS} WHERE node_id = ? "
                "ORDER BY score DESC"
            )
        rows = self.reader.query(sql, (node_id,))
        return [
            Retrieved(
                item_id=int(r[0]),
                score=float(r[1]) if isinstance(r[1], int | float) else None,
                title=str(r[2] or ""),
                status=str(r[3] or ""),
            )
            for r in rows
            if isinstance(r[0], int)
        ]
