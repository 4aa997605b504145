"""The layout of the run database in one place: tables, columns, statuses, version, migrations.

The engine (``engine/store/run_store.py``), the cognition base, the islands sampler and the
TUI all meet in ``RUN_DIR/evolve.db``; they import the names and statements from here
instead of restating them. Only the standard library is imported, so the TUI can use this
module without loading the engine.

Versioning. The schema version lives in the SQLite header (``PRAGMA user_version``), and is
mirrored in ``meta.schema_version`` for people and older readers. The header is authoritative
because it is readable on any connection (also an immutable one on an archived run) without a
table, a non-run SQLite file reads 0, it changes in the same transaction as the DDL of a
migration, and no ``set_meta`` can overwrite it by accident. Every run written so far carries
both marks at 1; a run database with neither (``nodes`` and ``meta`` tables only) counts as v1.

* A fresh database is created at :data:`SCHEMA_VERSION`.
* An older one opened for writing is upgraded by :func:`ensure_schema`: the migrations from its
  version up run in order in one ``BEGIN IMMEDIATE`` transaction, so a crash leaves the old
  version intact, and concurrent openers (engine, heartbeat, writer thread) migrate once.
* A newer one is refused with one line: reading a layout this code does not know could
  misreport a run, and writing could damage days of GPU time.
* A read-only open (``status``, the TUI, an archived run) never migrates and writes nothing.
  Migrations must therefore only add (tables, indexes, nullable columns), never rename or
  drop: readers already treat missing optional tables as empty, so an older run stays
  readable as it is.

The cognition tables, ``node_diversity`` and ``program_hashes`` are optional parts of v1:
created on first use (``IF NOT EXISTS``), never at run creation, so a run without a cognition
base stays without its tables (the TUI shows "no cognition base" from their absence).
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

log = logging.getLogger(__name__)

DB_NAME = "evolve.db"
SCHEMA_VERSION = 1
VERSION_KEY = "schema_version"  # the meta row that mirrors PRAGMA user_version

# Node life cycle. ``pending``: the Researcher is writing it; ``running``: the Engineer is
# evaluating it; ``done``/``failed``: finished; ``pruned``: removed from the search by a
# person (its data is kept).
PENDING = "pending"
RUNNING = "running"
DONE = "done"
FAILED = "failed"
PRUNED = "pruned"
STATUSES = (PENDING, RUNNING, DONE, FAILED, PRUNED)
FINISHED = (DONE, FAILED, PRUNED)

# Commands written by the TUI and the CLI into ``commands``; the engine answers each one.
COMMAND_KINDS = ("pause", "resume", "stop", "prune")
COMMAND_NEW, COMMAND_HANDLED, COMMAND_REJECTED = "new", "handled", "rejected"
COMMAND_STATES = (COMMAND_NEW, COMMAND_HANDLED, COMMAND_REJECTED)

# Cognition item statuses: only active items are retrieved; near-duplicates wait as pending.
ITEM_ACTIVE, ITEM_PENDING, ITEM_REJECTED = "active", "pending", "rejected"
ITEM_STATUSES = (ITEM_ACTIVE, ITEM_PENDING, ITEM_REJECTED)


class SchemaError(Exception):
    """The database's layout is not one this code can use; the message is one line."""


@dataclass(frozen=True)
class Table:
    """One table: columns (name -> SQL declaration), primary key and secondary indexes.

    Index names follow sqlite-utils' ``idx_<table>_<columns>``, which every existing run
    database uses, so ``CREATE INDEX IF NOT EXISTS`` recognises the indexes it already has.
    """

    name: str
    columns: Mapping[str, str]
    primary_key: tuple[str, ...] = ("id",)
    indexes: tuple[tuple[str, ...], ...] = ()
    unique: tuple[tuple[str, ...], ...] = ()

    def statements(self) -> list[str]:
        """CREATE TABLE and CREATE INDEX statements, all ``IF NOT EXISTS``."""
        inline = len(self.primary_key) == 1
        lines = [
            f'"{col}" {decl}' + (" PRIMARY KEY" if inline and col == self.primary_key[0] else "")
            for col, decl in self.columns.items()
        ]
        if not inline:
            lines.append("PRIMARY KEY (" + ", ".join(f'"{c}"' for c in self.primary_key) + ")")
        out = [f'CREATE TABLE IF NOT EXISTS "{self.name}" (\n   ' + ",\n   ".join(lines) + "\n)"]
        for cols, kind in [(c, "UNIQUE INDEX") for c in self.unique] + [
            (c, "INDEX") for c in self.indexes
        ]:
            quoted = ", ".join(f'"{c}"' for c in cols)
            index = f"idx_{self.name}_{'_'.join(cols)}"
            out.append(f'CREATE {kind} IF NOT EXISTS "{index}" ON "{self.name}" ({quoted})')
        return out


def _columns(spec: str) -> dict[str, str]:
    """``"id INTEGER, step INTEGER NOT NULL"`` -> ``{"id": "INTEGER", "step": ...}``."""
    pairs = (part.strip().split(" ", 1) for part in spec.split(","))
    return {name: decl for name, decl in pairs}


NODES = Table(
    "nodes",
    _columns(
        "id INTEGER, step INTEGER NOT NULL, name TEXT,"
        " parent_id INTEGER,"  # first of parent_ids, for indexed lineage queries
        " parent_ids TEXT, context_ids TEXT,"  # JSON lists
        " motivation TEXT, code TEXT, results TEXT,"  # results: JSON object
        " analysis TEXT, score REAL,"
        " status TEXT NOT NULL,"  # one of STATUSES
        " error TEXT, runtime REAL, island INTEGER, visits INTEGER,"
        " created_at REAL, started_at REAL, finished_at REAL,"
        " updated_at REAL,"  # the TUI's incremental reads follow this column
        " metadata TEXT"  # JSON object
    ),
    unique=(("step",),),
    indexes=(("status", "score"), ("updated_at",), ("parent_id",)),
)
NODE_JSON_COLUMNS = ("parent_ids", "context_ids", "results", "metadata")
EVENTS = Table(
    "events", _columns("id INTEGER, ts REAL, kind TEXT, node_id INTEGER, message TEXT, data TEXT")
)
COMMANDS = Table(
    "commands",
    _columns(
        "id INTEGER, ts REAL,"
        " kind TEXT,"  # one of COMMAND_KINDS (the engine rejects others)
        " arg TEXT,"
        " status TEXT,"  # one of COMMAND_STATES
        " handled_at REAL, result TEXT"
    ),
    indexes=(("status",),),
)
LLM_CALLS = Table(
    "llm_calls",
    _columns(
        "id INTEGER, ts REAL, node_id INTEGER, role TEXT, model TEXT, prompt_tokens INTEGER,"
        " completion_tokens INTEGER, latency REAL, cost_usd REAL, ok INTEGER, error TEXT,"
        " prompt TEXT, response TEXT"
    ),
    indexes=(("node_id",),),
)
ISLAND_MEMBERS = Table(
    "island_members",
    _columns("node_id INTEGER, island INTEGER, since REAL"),
    primary_key=("node_id", "island"),
    indexes=(("island",),),
)
META = Table("meta", _columns("key TEXT, value TEXT"), primary_key=("key",))  # JSON values
CORE_TABLES = (NODES, EVENTS, COMMANDS, LLM_CALLS, ISLAND_MEMBERS, META)

COGNITION_ITEMS = Table(
    "cognition_items",
    _columns(
        "id INTEGER, title TEXT, content TEXT,"
        " tags TEXT,"  # JSON list
        " source TEXT,"
        " status TEXT NOT NULL,"  # one of ITEM_STATUSES
        " origin TEXT NOT NULL,"  # seed | analyzer | user
        " node_id INTEGER,"  # the node whose analysis proposed it
        " created_at REAL, updated_at REAL, duplicate_of INTEGER, duplicate_score REAL,"
        " embedding BLOB,"  # float32, L2-normalised
        " embed_model TEXT"  # which embedder wrote it; another one re-embeds
    ),
    indexes=(("status",),),
)
RETRIEVALS = Table(
    "retrievals",
    _columns("node_id INTEGER, item_id INTEGER, score REAL, query_node_id INTEGER, ts REAL"),
    primary_key=("node_id", "item_id"),
    indexes=(("item_id",),),
)
NODE_VECTORS = Table(
    "node_vectors",
    # field: motivation | analysis
    _columns("node_id INTEGER, field TEXT, text_hash TEXT, embed_model TEXT, embedding BLOB"),
    primary_key=("node_id", "field"),
)
COGNITION_TABLES = (COGNITION_ITEMS, RETRIEVALS, NODE_VECTORS)
# The islands sampler's cache of each node's code diversity (recomputable, never exported).
NODE_DIVERSITY = Table(
    "node_diversity", _columns("node_id INTEGER, value REAL NOT NULL"), primary_key=("node_id",)
)
# The first node that evaluated each program text (``engine/store/twins.py``; recomputable).
PROGRAM_HASHES = Table(
    "program_hashes", _columns("hash TEXT, node_id INTEGER"), primary_key=("hash",)
)
OPTIONAL_TABLES = (*COGNITION_TABLES, NODE_DIVERSITY, PROGRAM_HASHES)

Migration = Callable[[sqlite3.Connection], None]
# Migration to version N, keyed by N; each runs inside the upgrade's transaction, so it uses
# ``conn.execute`` only (``executescript`` would commit half an upgrade) and only adds.
MIGRATIONS: Mapping[int, Migration] = {}


def create_tables(conn: sqlite3.Connection, tables: Iterable[Table]) -> None:
    """Create the tables and their indexes where missing (in the caller's transaction)."""
    for table in tables:
        for sql in table.statements():
            conn.execute(sql)


def table_names(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def read_version(conn: sqlite3.Connection) -> int | None:
    """The schema version of a run database; None when it is not one.

    The larger of the header and the meta mirror counts, so a database either mark calls
    newer is refused; a run database with neither mark is v1 (today's layout)."""
    tables = table_names(conn)
    if not {NODES.name, META.name} <= tables:
        return None
    header = int(conn.execute("PRAGMA user_version").fetchone()[0])
    row = conn.execute(f"SELECT value FROM {META.name} WHERE key = ?", [VERSION_KEY]).fetchone()
    mirror = _int_or_none(row[0]) if row else None
    return max(header, mirror or 0, 1)


def check_readable(version: int, code_version: int | None = None) -> None:
    """Refuse a database written by a newer asi-evolve (any older version reads)."""
    code_version = SCHEMA_VERSION if code_version is None else code_version
    if version > code_version:
        raise SchemaError(
            f"run database schema v{version} is newer than this asi-evolve "
            f"(v{code_version}); upgrade asi-evolve"
        )


def create_schema(conn: sqlite3.Connection) -> None:
    """Create the core tables of a new run at :data:`SCHEMA_VERSION`, in one transaction:
    a reader never sees a run database without its version."""
    with _immediate(conn):
        create_tables(conn, CORE_TABLES)
        _stamp(conn, SCHEMA_VERSION)


def ensure_schema(
    conn: sqlite3.Connection,
    target: int | None = None,
    migrations: Mapping[int, Migration] | None = None,
) -> int:
    """Bring a database opened for writing to ``target``; returns the version it had.

    An empty database is created at the current version; an older run database is migrated
    (nothing is written when it is already current); a newer one raises :class:`SchemaError`.
    ``target`` and ``migrations`` default to :data:`SCHEMA_VERSION` and :data:`MIGRATIONS`,
    looked up at call time so that a test can exercise an upgrade through ``RunStore.open``.
    """
    target = SCHEMA_VERSION if target is None else target
    migrations = MIGRATIONS if migrations is None else migrations
    if not table_names(conn) and int(conn.execute("PRAGMA user_version").fetchone()[0]) == 0:
        create_schema(conn)
        return 0
    version = _run_version(conn)
    check_readable(version, target)
    if version == target:
        return version
    with _immediate(conn):
        version = _run_version(conn)  # another connection may have migrated meanwhile
        check_readable(version, target)
        for step in range(version + 1, target + 1):
            if step not in migrations:
                raise SchemaError(f"no migration to run database schema v{step}")
            migrations[step](conn)
        if version < target:
            _stamp(conn, target)
    if version < target:
        log.info("run database migrated from schema v%d to v%d", version, target)
    return version


def _run_version(conn: sqlite3.Connection) -> int:
    version = read_version(conn)
    if version is None:
        raise SchemaError("not an ASI-Evolve run database (no nodes and meta tables)")
    return version


def _stamp(conn: sqlite3.Connection, version: int) -> None:
    conn.execute(f"PRAGMA user_version = {int(version)}")
    conn.execute(
        f"INSERT INTO {META.name}(key, value) VALUES (?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [VERSION_KEY, json.dumps(version)],
    )


@contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction taken up front (BEGIN IMMEDIATE): DDL and the version stamp
    commit together or not at all, and a second opener waits instead of migrating twice."""
    if conn.in_transaction:
        raise SchemaError("schema change requested inside an open transaction")
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.rollback()
        raise
    conn.commit()


def _int_or_none(text: str | None) -> int | None:
    try:
        value = json.loads(text) if text is not None else None
    except ValueError:
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None
