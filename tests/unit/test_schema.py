"""Schema versions: fresh runs carry theirs, older runs migrate, newer ones are refused untouched.

``V1_SQL`` is the layout every run created before ``engine/store/schema.py`` has, copied literally
from ``sqlite_master`` of such a run (core tables plus the lazily created cognition and
diversity tables). It is frozen on purpose: the code's statements may change, old runs don't.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from conftest import cli

from engine.store import schema
from engine.store.reader import RunNotFound, RunReader
from engine.store.records import DONE, FAILED, RUNNING, Node
from engine.store.run_store import RunStore, StoreError

V1_SQL = """
CREATE TABLE "nodes" (
   "id" INTEGER PRIMARY KEY, "step" INTEGER NOT NULL, "name" TEXT, "parent_id" INTEGER,
   "parent_ids" TEXT, "context_ids" TEXT, "motivation" TEXT, "code" TEXT, "results" TEXT,
   "analysis" TEXT, "score" REAL, "status" TEXT NOT NULL, "error" TEXT, "runtime" REAL,
   "island" INTEGER, "visits" INTEGER, "created_at" REAL, "started_at" REAL,
   "finished_at" REAL, "updated_at" REAL, "metadata" TEXT);
CREATE UNIQUE INDEX "idx_nodes_step" ON "nodes" ("step");
CREATE INDEX "idx_nodes_status_score" ON "nodes" ("status", "score");
CREATE INDEX "idx_nodes_updated_at" ON "nodes" ("updated_at");
CREATE INDEX "idx_nodes_parent_id" ON "nodes" ("parent_id");
CREATE TABLE "events" ("id" INTEGER PRIMARY KEY, "ts" REAL, "kind" TEXT, "node_id" INTEGER,
   "message" TEXT, "data" TEXT);
CREATE TABLE "commands" ("id" INTEGER PRIMARY KEY, "ts" REAL, "kind" TEXT, "arg" TEXT,
   "status" TEXT, "handled_at" REAL, "result" TEXT);
CREATE INDEX "idx_commands_status" ON "commands" ("status");
CREATE TABLE "llm_calls" ("id" INTEGER PRIMARY KEY, "ts" REAL, "node_id" INTEGER, "role" TEXT,
   "model" TEXT, "prompt_tokens" INTEGER, "completion_tokens" INTEGER, "latency" REAL,
   "cost_usd" REAL, "ok" INTEGER, "error" TEXT, "prompt" TEXT, "response" TEXT);
CREATE INDEX "idx_llm_calls_node_id" ON "llm_calls" ("node_id");
CREATE TABLE "island_members" ("node_id" INTEGER, "island" INTEGER, "since" REAL,
   PRIMARY KEY ("node_id", "island"));
CREATE INDEX "idx_island_members_island" ON "island_members" ("island");
CREATE TABLE "meta" ("key" TEXT PRIMARY KEY, "value" TEXT);
CREATE TABLE "cognition_items" ("id" INTEGER PRIMARY KEY, "title" TEXT, "content" TEXT,
   "tags" TEXT, "source" TEXT, "status" TEXT NOT NULL, "origin" TEXT NOT NULL,
   "node_id" INTEGER, "created_at" REAL, "updated_at" REAL, "duplicate_of" INTEGER,
   "duplicate_score" REAL, "embedding" BLOB, "embed_model" TEXT);
CREATE INDEX "idx_cognition_items_status" ON "cognition_items" ("status");
CREATE TABLE "retrievals" ("node_id" INTEGER, "item_id" INTEGER, "score" REAL,
   "query_node_id" INTEGER, "ts" REAL, PRIMARY KEY ("node_id", "item_id"));
CREATE INDEX "idx_retrievals_item_id" ON "retrievals" ("item_id");
CREATE TABLE "node_vectors" ("node_id" INTEGER, "field" TEXT, "text_hash" TEXT,
   "embed_model" TEXT, "embedding" BLOB, PRIMARY KEY ("node_id", "field"));
CREATE TABLE node_diversity (node_id INTEGER PRIMARY KEY, value REAL NOT NULL);
PRAGMA user_version = 1;
INSERT INTO meta(key, value) VALUES ('schema_version', '1'), ('task', '"toy"');
INSERT INTO nodes(id, step, name, parent_id, parent_ids, context_ids, code, results, score,
   status, error, visits, created_at, updated_at, metadata) VALUES
   (1, 0, 'initial', NULL, '[]', '[]', 'X = 1', '{"score": 1.0}', 1.0, 'done', '', 2, 1.0,
    1.5, '{}'),
   (2, 1, 'größer', 1, '[1]', '[1]', 'X = 2', '{"score": 2.5}', 2.5, 'done', '', 0, 2.0,
    2.5, '{"k": [1, 2]}'),
   (3, 2, 'broken', 2, '[2]', '[2, 1]', 'X =', '{}', NULL, 'failed', 'SyntaxError', 0, 3.0,
    3.5, '{}'),
   (4, 3, '', 2, '[2]', '[2]', 'X = 3', '{}', NULL, 'running', '', 0, 4.0, 4.5, '{}');
INSERT INTO cognition_items(id, title, content, tags, status, origin) VALUES
   (1, 'Hexagons', 'dense', '[]', 'active', 'seed');
"""


def v1_run(run_dir: Path) -> Path:
    """A run directory whose database was written by asi-evolve before schema.py."""
    run_dir.mkdir(parents=True)
    with closing(sqlite3.connect(run_dir / schema.DB_NAME)) as conn:
        conn.executescript(V1_SQL)
    return run_dir


def layout(conn: sqlite3.Connection) -> dict[str, tuple]:
    """Columns (name, type, not null, pk) and indexes (name, unique, columns) per table."""
    out = {}
    for name in sorted(schema.table_names(conn)):
        columns = [tuple(r[1:4]) + (r[5],) for r in conn.execute(f"PRAGMA table_info({name})")]
        indexes = sorted(
            (r[1], r[2], tuple(c[2] for c in conn.execute(f"PRAGMA index_info('{r[1]}')")))
            for r in conn.execute(f"PRAGMA index_list({name})")
        )
        out[name] = (columns, indexes)
    return out


def has_index(conn: sqlite3.Connection, name: str) -> bool:
    sql = "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?"
    return conn.execute(sql, [name]).fetchone() is not None


def stamp(path: Path) -> tuple[bytes, int, int]:
    """The database file's bytes and mtime, and the size of its WAL (a read-only reader of a
    WAL database may leave an empty ``-wal``/``-shm`` pair behind: SQLite needs them to read)."""
    wal = path.with_name(path.name + "-wal")
    return path.read_bytes(), path.stat().st_mtime_ns, wal.stat().st_size if wal.exists() else 0


def test_fresh_run_carries_the_version(tmp_path: Path) -> None:
    store = RunStore.create(tmp_path / "run")
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION
    assert store.get_meta(schema.VERSION_KEY) == schema.SCHEMA_VERSION
    assert schema.table_names(store.db.conn) == {t.name for t in schema.CORE_TABLES}
    assert schema.read_version(store.db.conn) == schema.SCHEMA_VERSION


def test_v1_run_upgrades_to_the_fresh_layout(tmp_path: Path) -> None:
    """Whatever the migrations, an old run ends with exactly the layout of a new one."""
    run = v1_run(tmp_path / "old")
    before = [n.to_row() for n in RunStore.open(run, readonly=True).nodes()]
    store = RunStore.open(run)
    assert schema.read_version(store.db.conn) == schema.SCHEMA_VERSION
    assert [n.to_row() for n in store.nodes()] == before
    fresh = RunStore.create(tmp_path / "new")
    schema.create_tables(fresh.db.conn, schema.OPTIONAL_TABLES)
    schema.create_tables(store.db.conn, schema.OPTIONAL_TABLES)  # newer ones: on first use
    assert layout(store.db.conn) == layout(fresh.db.conn)


def _add_lineage_index(conn: sqlite3.Connection) -> None:
    conn.execute('CREATE INDEX "idx_nodes_island" ON "nodes" ("island")')


def test_older_run_migrates_and_its_nodes_stay_identical(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = v1_run(tmp_path / "run")
    with closing(sqlite3.connect(run / schema.DB_NAME)) as conn:
        rows_before = conn.execute("SELECT * FROM nodes ORDER BY id").fetchall()
    nodes_before = list(RunStore.open(run, readonly=True).nodes())
    calls: list[int] = []

    def to_v2(conn: sqlite3.Connection) -> None:
        calls.append(2)
        _add_lineage_index(conn)

    monkeypatch.setattr(schema, "SCHEMA_VERSION", 2)
    monkeypatch.setattr(schema, "MIGRATIONS", {2: to_v2})
    store = RunStore.open(run)  # the engine's open: migrates
    assert calls == [2]
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == 2
    assert store.get_meta(schema.VERSION_KEY) == 2
    assert "idx_nodes_island" in {i.name for i in store.db["nodes"].indexes}
    assert list(store.nodes()) == nodes_before
    assert store.db.execute("SELECT * FROM nodes ORDER BY id").fetchall() == rows_before
    assert store.get_node(2).name == "größer" and store.get_node(2).metadata == {"k": [1, 2]}
    store.close()
    RunStore.open(run).close()  # already current: the migration does not run again
    assert calls == [2]


def test_failed_migration_leaves_the_run_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = v1_run(tmp_path / "run")

    def broken(conn: sqlite3.Connection) -> None:
        _add_lineage_index(conn)
        conn.execute("UPDATE nodes SET name = 'half-migrated'")
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(schema, "SCHEMA_VERSION", 2)
    monkeypatch.setattr(schema, "MIGRATIONS", {2: broken})
    with pytest.raises(sqlite3.OperationalError):
        RunStore.open(run)
    with closing(sqlite3.connect(run / schema.DB_NAME)) as conn:
        assert schema.read_version(conn) == 1
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
        assert "half-migrated" not in {r[0] for r in conn.execute("SELECT name FROM nodes")}
        assert not has_index(conn, "idx_nodes_island")


def test_missing_migration_is_refused(tmp_path: Path) -> None:
    run = v1_run(tmp_path / "run")
    with closing(sqlite3.connect(run / schema.DB_NAME)) as conn:
        with pytest.raises(schema.SchemaError, match="no migration to run database schema v3"):
            schema.ensure_schema(conn, target=3, migrations={2: _add_lineage_index})
        assert schema.read_version(conn) == 1
        assert not has_index(conn, "idx_nodes_island")


def test_older_run_opens_read_only_without_a_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = v1_run(tmp_path / "run")
    before = stamp(run / schema.DB_NAME)
    monkeypatch.setattr(schema, "SCHEMA_VERSION", 2)
    monkeypatch.setattr(schema, "MIGRATIONS", {2: _add_lineage_index})
    store = RunStore.open(run, readonly=True)
    assert [n.status for n in store.nodes()] == [DONE, DONE, FAILED, RUNNING]
    assert store.best_node().name == "größer"
    store.close()
    reader = RunReader(run)
    assert reader.node(2)["name"] == "größer"
    reader.close()
    assert stamp(run / schema.DB_NAME) == before


def test_unversioned_run_counts_as_v1(tmp_path: Path) -> None:
    run = v1_run(tmp_path / "run")
    with closing(sqlite3.connect(run / schema.DB_NAME)) as conn, conn:
        conn.execute("PRAGMA user_version = 0")
        conn.execute("DELETE FROM meta WHERE key = ?", [schema.VERSION_KEY])
    with closing(sqlite3.connect(run / schema.DB_NAME)) as conn:
        assert schema.read_version(conn) == 1
    assert len(list(RunStore.open(run).nodes())) == 4


def _newer_run(run_dir: Path, header: int, mirror: int) -> Path:
    store = RunStore.create(run_dir)
    store.insert_node(Node(step=0, code="X = 1", status=DONE, score=1.0))
    store.close()
    with closing(sqlite3.connect(run_dir / schema.DB_NAME)) as conn, conn:
        conn.execute(f"PRAGMA user_version = {header}")
        conn.execute("UPDATE meta SET value = ? WHERE key = ?", [str(mirror), schema.VERSION_KEY])
    return run_dir


@pytest.mark.parametrize("marks", [(3, 3), (1, 3), (3, 1)], ids=["both", "meta", "header"])
def test_newer_run_is_refused_untouched(tmp_path: Path, marks: tuple[int, int]) -> None:
    newer = schema.SCHEMA_VERSION + 2
    header, mirror = (newer if m == 3 else schema.SCHEMA_VERSION for m in marks)
    run = _newer_run(tmp_path / "run", header, mirror)
    before = stamp(run / schema.DB_NAME)
    expected = (
        f"run database schema v{newer} is newer than this asi-evolve "
        f"(v{schema.SCHEMA_VERSION}); upgrade asi-evolve"
    )
    for readonly in (True, False):
        with pytest.raises(StoreError) as info:
            RunStore.open(run, readonly=readonly)
        assert str(info.value) == expected
    with pytest.raises(RunNotFound, match="upgrade asi-evolve"):
        RunReader(run)
    if marks == (3, 3):  # the real entry point, in a subprocess: one line, exit 2
        result = cli("status", str(run))
        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [f"asi-evolve: error: {expected}"]
    assert stamp(run / schema.DB_NAME) == before


def test_statements_are_idempotent(tmp_path: Path) -> None:
    run = v1_run(tmp_path / "run")
    with closing(sqlite3.connect(run / schema.DB_NAME)) as conn:
        before = layout(conn)
        schema.create_tables(conn, (*schema.CORE_TABLES, *schema.OPTIONAL_TABLES))
        after = layout(conn)
        assert {name: after[name] for name in before} == before  # nothing doubled or changed
        schema.create_tables(conn, (*schema.CORE_TABLES, *schema.OPTIONAL_TABLES))
        assert layout(conn) == after  # optional tables newer than the run: added once


def test_not_a_run_database(tmp_path: Path) -> None:
    with closing(sqlite3.connect(tmp_path / "other.db")) as conn:
        conn.execute("CREATE TABLE x (a)")
        assert schema.read_version(conn) is None
        with pytest.raises(schema.SchemaError, match="not an ASI-Evolve run database"):
            schema.ensure_schema(conn)
