"""What the TUI shows of the cognition base: pending proposals and what a node was shown.

The queries are the reader's (``engine/store/reader.py``: absent tables and columns read as
empty); here they become the records the screens draw.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.store.reader import RunReader


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
        return self.reader.has_cognition()

    def pending(self, limit: int = 500) -> list[Proposal]:
        return [
            Proposal(
                id=int(r[0]),
                title=str(r[1] or ""),
                content=str(r[2] or ""),
                origin=str(r[3] or ""),
                node_id=r[4] if isinstance(r[4], int) else None,
                duplicate_of=r[5] if isinstance(r[5], int) else None,
            )
            for r in self.reader.pending_items(limit)
        ]

    def retrieved_for(self, node_id: int) -> list[Retrieved]:
        return [
            Retrieved(
                item_id=int(r[0]),
                score=float(r[1]) if isinstance(r[1], int | float) else None,
                title=str(r[2] or ""),
                status=str(r[3] or ""),
            )
            for r in self.reader.retrieved(node_id)
            if isinstance(r[0], int)
        ]
