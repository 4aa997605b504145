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
base existed) gains them on first write. Readers treat missing tables as empty.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import sqlite_utils

ACTIVE, PENDING, REJECTED = "active", "pending", "rejected"
STATUSES = (ACTIVE, PENDING, REJECTED)
SEED, ANALYZER, USER = "seed", "analyzer", "user"
ORIGINS = (SEED, ANALYZER, USER)

ITEMS, RETRIEVALS, NODE_VECTORS = "cognition_items", "retrievals", "node_vectors"


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


ITEM_COLUMNS: dict[str, type] = {
    "id": int,
    "title": str,
    "content": str,
    "tags": str,  # JSON list
    "source": str,
    "status": str,
    "origin": str,
    "node_id": int,  # the node whose analysis proposed it (analyzer origin)
    "created_at": float,
    "updated_at": float,
    "duplicate_of": int,
    "duplicate_score": float,
    "embedding": bytes,  # float32, L2-normalised
    "embed_model": str,  # which embedder wrote it; another one re-embeds
}


def has_tables(db: sqlite_utils.Database) -> bool:
    return db[ITEMS].exists()


def ensure_schema(db: sqlite_utils.Database) -> None:
    """Create the cognition tables if missing (safe to call on every open)."""
    if db[ITEMS].exists() and db[RETRIEVALS].exists() and db[NODE_VECTORS].exists():
        return
    with db.conn:
        db[ITEMS].create(ITEM_COLUMNS, pk="id", not_null={"status", "origin"}, if_not_exists=True)
        db[ITEMS].create_index(["status"], if_not_exists=True)
        db[RETRIEVALS].create(
            {
                "node_id": int,
                "item_id": int,
                "score": float,
                "query_node_id": int,
                "ts": float,
            },
            pk=("node_id", "item_id"),
            if_not_exists=True,
        )
        db[RETRIEVALS].create_index(["item_id"], if_not_exists=True)
        db[NODE_VECTORS].create(
            {
                "node_id": int,
                "field": str,  # motivation | analysis
                "text_hash": str,
                "embed_model": str,
                "embedding": bytes,
            },
            pk=("node_id", "field"),
            if_not_exists=True,
        )


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
