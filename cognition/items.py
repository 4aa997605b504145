"""Knowledge items and their tables in the run database.

A cognition item is one piece of knowledge the Researcher may be shown: a human prior seeded
from the task, something a person added, or an insight the Analyzer proposed. Items live in
the run database next to the nodes, so a run carries its own knowledge and its provenance:

* ``cognition_items``: the items (status ``active`` / ``pending`` / ``rejected``; only active
  ones are retrieved). ``duplicate_of`` flags a near-duplicate of an earlier item.
* ``retrievals``: which items were shown to which node, with the similarity score and the
  context node whose analysis (or motivation) was the query.
* ``node_vectors``: cached embeddings of node motivations and analyses (novelty check,
  queries, provenance report), so no text is embedded twice.

Tables are created idempotently, so any run database (also one created before the cognition
base existed) gains them on first write. Readers treat missing tables as empty. Their layout
is defined with the rest of the run database in ``engine/store/schema.py``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from engine.store import schema
from engine.store.database import Database

ACTIVE, PENDING, REJECTED = schema.ITEM_ACTIVE, schema.ITEM_PENDING, schema.ITEM_REJECTED
STATUSES = schema.ITEM_STATUSES
SEED, ANALYZER, USER = "seed", "analyzer", "user"
ORIGINS = (SEED, ANALYZER, USER)

ITEMS = schema.COGNITION_ITEMS.name
RETRIEVALS = schema.RETRIEVALS.name
NODE_VECTORS = schema.NODE_VECTORS.name


class CognitionError(Exception):
    """Bad cognition input or settings; the message is a one-line explanation."""


@dataclass
class Draft:
    """An item not stored yet (from a file, the command line, or the Analyzer)."""

    title: str
    content: str
    tags: list[str] = field(default_factory=list)
    source: str = ""

    @property
    def text(self) -> str:
        """What is embedded: the title carries the gist, the content the detail."""
        return f"{self.title}\n{self.content}"


@dataclass
class Item:
    """A stored item (without its embedding, which stays in the database)."""

    id: int
    title: str
    content: str
    tags: list[str]
    source: str
    status: str
    origin: str
    node_id: int | None
    created_at: float
    updated_at: float
    duplicate_of: int | None = None
    duplicate_score: float | None = None
    score: float | None = None  # similarity, when the item comes from a search

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Item:
        return cls(
            id=row["id"],
            title=row["title"] or "",
            content=row["content"] or "",
            tags=_tags(row["tags"]),
            source=row["source"] or "",
            status=row["status"],
            origin=row["origin"],
            node_id=row["node_id"],
            created_at=row["created_at"] or 0.0,
            updated_at=row["updated_at"] or 0.0,
            duplicate_of=row["duplicate_of"],
            duplicate_score=row["duplicate_score"],
        )

    def to_json(self) -> dict[str, Any]:
        data = {
            "id": self.id,
            "title": self.title,
            "status": self.status,
            "origin": self.origin,
            "content": self.content,
            "tags": self.tags,
            "source": self.source,
            "node_id": self.node_id,
            "created_at": self.created_at,
            "duplicate_of": self.duplicate_of,
            "duplicate_score": self.duplicate_score,
        }
        if self.score is not None:
            data["score"] = round(self.score, 6)
        return data


def has_tables(db: Database) -> bool:
    return db[ITEMS].exists()


def ensure_schema(db: Database) -> None:
    """Create the cognition tables if missing (safe to call on every open)."""
    if db[ITEMS].exists() and db[RETRIEVALS].exists() and db[NODE_VECTORS].exists():
        return
    with db.conn:
        schema.create_tables(db.conn, schema.COGNITION_TABLES)


def make_draft(raw: Any, where: str) -> Draft:
    """Check one raw item (a mapping from YAML/JSON/the Analyzer) and normalise it.

    Other fields than title, content, tags and source are ignored (files written for other
    tools often carry extra keys); a missing or empty title or content is an error."""
    if not isinstance(raw, dict):
        raise CognitionError(f"{where}: an item must be a mapping, got {type(raw).__name__}")
    title, content = raw.get("title"), raw.get("content")
    for name, value in (("title", title), ("content", content)):
        if not isinstance(value, str) or not value.strip():
            raise CognitionError(f"{where}: item needs a non-empty string {name!r}")
    source = raw.get("source", "") or ""
    if not isinstance(source, str):
        raise CognitionError(f"{where}: source must be a string")
    return Draft(
        title=" ".join(title.split()),
        content=content.strip(),
        tags=parse_tags(raw.get("tags"), where),
        source=source.strip(),
    )


def parse_tags(value: Any, where: str) -> list[str]:
    """Tags as a list of strings, or one comma-separated string."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list) or not all(isinstance(t, str | int | float) for t in value):
        raise CognitionError(f"{where}: tags must be a list of strings")
    return [str(t).strip() for t in value if str(t).strip()]


def _tags(text: str | None) -> list[str]:
    if not text:
        return []
    try:
        value = json.loads(text)
    except ValueError:
        return []
    return [str(t) for t in value] if isinstance(value, list) else []
