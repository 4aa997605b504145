"""The few things the store and the cognition base ask of an SQLite connection.

A thin layer over ``sqlite3`` in place of the ``sqlite-utils`` library, whose import pulls
in pandas, numpy and pyarrow (0.3 s on every command and every engine start, 0.6 s on a busy
machine) for the handful of calls used here: ``execute`` that commits a lone write the way
sqlite-utils does, ``query`` returning rows as dicts, and a table's ``insert``, ``exists``,
``rows``, ``rows_where``, ``count`` and ``get``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

_TRANSACTION_KEYWORDS = {"BEGIN", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE"}


def _keyword(sql: str) -> str:
    return sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class Database:
    """``conn`` with sqlite-utils' ``execute``/``query`` semantics (see the module doc)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, parameters: Sequence | dict[str, Any] | None = None):  # noqa: ANN201 - sqlite3.Cursor
        """Run ``sql``. A write outside a transaction is committed at once; inside one (a
        ``with conn:`` block) it becomes part of it. A failed statement leaves no open
        transaction behind."""
        was_in_transaction = self.conn.in_transaction
        try:
            if parameters is None:
                cursor = self.conn.execute(sql)
            else:
                cursor = self.conn.execute(sql, parameters)
        except Exception:
            if not was_in_transaction and self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        if (
            not was_in_transaction
            and self.conn.in_transaction
            and cursor.description is None
            and _keyword(sql) not in _TRANSACTION_KEYWORDS
        ):
            self.conn.execute("COMMIT")
        return cursor

    def query(
        self, sql: str, params: Sequence | dict[str, Any] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Rows of a SELECT as dicts (column name -> value)."""
        cursor = self.execute(sql, params)
        keys = [d[0] for d in cursor.description or ()]
        return (dict(zip(keys, row, strict=True)) for row in cursor)

    def __getitem__(self, name: str) -> Table:
        return Table(self, name)

    def table_names(self) -> list[str]:
        rows = self.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return [row[0] for row in rows]

    @property
    def journal_mode(self) -> str:
        return str(self.execute("PRAGMA journal_mode").fetchone()[0])

    def enable_wal(self) -> None:
        if self.journal_mode != "wal":
            self.execute("PRAGMA journal_mode = wal")


@dataclass(frozen=True)
class Index:
    name: str


class Table:
    """One table of ``db``; ``last_pk`` is the rowid of the last ``insert``."""

    def __init__(self, db: Database, name: str) -> None:
        self.db = db
        self.name = name
        self.last_pk: int | None = None

    def exists(self) -> bool:
        sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        return self.db.execute(sql, [self.name]).fetchone() is not None

    def insert(self, record: dict[str, Any]) -> Table:
        columns = ", ".join(_quote(k) for k in record)
        marks = ", ".join("?" for _ in record)
        sql = f"INSERT INTO {_quote(self.name)} ({columns}) VALUES ({marks})"
        self.last_pk = self.db.execute(sql, list(record.values())).lastrowid
        return self

    def insert_all(self, records: list[dict[str, Any]]) -> Table:
        with self.db.conn:
            for record in records:
                self.insert(record)
        return self

    @property
    def rows(self) -> Iterator[dict[str, Any]]:
        return self.rows_where()

    def rows_where(
        self, where: str | None = None, params: Sequence | None = None
    ) -> Iterator[dict[str, Any]]:
        sql = f"SELECT * FROM {_quote(self.name)}" + (f" WHERE {where}" if where else "")
        return self.db.query(sql, params)

    @property
    def count(self) -> int:
        return int(self.db.execute(f"SELECT count(*) FROM {_quote(self.name)}").fetchone()[0])

    def get(self, pk: int) -> dict[str, Any]:
        rows = list(self.db.query(f"SELECT * FROM {_quote(self.name)} WHERE rowid = ?", [pk]))
        if not rows:
            raise KeyError(f"{self.name}: no row {pk}")
        return rows[0]

    @property
    def indexes(self) -> list[Index]:
        rows = self.db.execute(f"PRAGMA index_list({_quote(self.name)})").fetchall()
        return [Index(row[1]) for row in rows]
