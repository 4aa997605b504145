"""The run database: the single source of truth of a run (``RUN_DIR/evolve.db``).

Everything a run knows lives here: nodes, the engine's event log, commands from
outside (TUI, CLI), LLM calls and run metadata. The engine commits every state change
as it happens, so a crash at any instant loses no finished node. SQLite in WAL mode
lets the TUI and ``status`` read while the engine writes.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from engine import direction
from engine.store import readonly as readonly_access
from engine.store import running, schema, standing
from engine.store.database import Database
from engine.store.readonly import database_uri
from engine.store.records import Command, Node
from engine.store.schema import (
    COMMAND_HANDLED,
    COMMAND_KINDS,
    COMMAND_NEW,
    COMMAND_REJECTED,
    DB_NAME,
    DONE,
    FAILED,
    FINISHED,
    NODE_JSON_COLUMNS,
    NODES,
    PENDING,
    RUNNING,
    SCHEMA_VERSION,
    STATUSES,
    VERSION_KEY,
)
from engine.text import one_line

MAX_COMMAND_ARG = 1000
BUSY_TIMEOUT_MS = 10_000  # how long a write waits for another writer's lock
CHECKPOINT_WAIT_MS = 1_000  # how long a clean stop's checkpoint waits for old readers
BUILDING_NAME = f"{DB_NAME}.new"  # a new run's database until it is complete


class StoreError(Exception):
    """The run directory does not hold a usable run database."""


class DiskFull(StoreError):
    """The disk holding the run is full: nothing more can be recorded. What was committed
    is intact; the run resumes once there is space."""


def disk_full(exc: BaseException, where: Path) -> DiskFull | None:
    """``exc`` as a DiskFull when it says the disk is full (SQLite's SQLITE_FULL, ENOSPC)."""
    full = (
        isinstance(exc, sqlite3.OperationalError)
        and getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    ) or (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT))
    if not full:
        return None
    return DiskFull(
        f"the disk holding {where} is full ({one_line(exc, 200)}); everything committed so far "
        "is intact: free some space and run the same command to resume"
    )


class RunStore:
    """Typed access to one run database."""

    def __init__(self, db: Database, path: Path, readonly: bool = False) -> None:
        self.db = db
        self.path = path
        self.readonly = readonly
        self._identity = _identity(path)  # the file this connection writes to

    # ------------------------------------------------------------ integrity
    def check_intact(self) -> None:
        """Raise StoreError when the database file was deleted, replaced or damaged.

        An open connection keeps writing to a deleted file's inode, so without this check
        an engine would go on "committing" a run that no longer exists on disk. Cheap
        enough for every step: a stat, a one-row query and a read-only probe connection.

        The file is never opened by a descriptor of our own: closing *any* descriptor of
        the database drops every POSIX lock this process holds on it, SQLite's included,
        and another process would then checkpoint and reset the WAL under this connection
        ("How To Corrupt An SQLite Database File", 2.2). A second SQLite connection is
        safe: SQLite keeps such a descriptor open until this process holds no lock.
        The probe reads the file's header page afresh, which this connection, with the
        page in its cache, would not notice being overwritten.
        """
        restore = f"restore from backup: asi-evolve restore {self.path.parent}"
        try:
            now = _identity(self.path)
        except FileNotFoundError:
            raise StoreError(f"run database deleted: {self.path} ({restore})") from None
        if now != self._identity:
            raise StoreError(f"run database replaced by another file: {self.path} ({restore})")
        try:
            self.db.execute("SELECT value FROM meta WHERE key = ?", [VERSION_KEY]).fetchone()
            probe = sqlite3.connect(database_uri(self.path, mode="ro"), uri=True, timeout=10)
            try:
                probe.execute("PRAGMA schema_version").fetchone()
            finally:
                probe.close()
        except (OSError, sqlite3.DatabaseError) as exc:
            raise StoreError(f"damaged run database: {one_line(exc, 200)} ({restore})") from None

    def checkpoint(self) -> bool:
        """Fold the WAL into the database file at a clean stop; True when it all went in.

        A checkpoint that truncates the log waits for readers of older snapshots while it
        holds the write lock, so it waits at most a second: a TUI holding a long read must
        neither stall the exit nor make other writers fail. What is left is folded in by the
        next one; the data is safe in the log either way.
        """
        if self.readonly:
            return False
        self.db.execute(f"PRAGMA busy_timeout = {CHECKPOINT_WAIT_MS}")
        try:
            busy = self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        finally:
            self.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        return not busy

    # ---------------------------------------------------------------- opening
    @classmethod
    def create(cls, run_dir: Path, setup: Callable[[RunStore], None] | None = None) -> RunStore:
        """Create the database of a new run; the directory may exist but holds no run.

        The database is built as ``evolve.db.new``, ``setup(store)`` writes what makes it a
        run (its task, configuration, seeded knowledge), and only then is it renamed to
        ``evolve.db``: a crash before that leaves no run database, and the same command
        starts the run afresh instead of finding a run of task None.
        """
        if problem := readonly_access.path_too_long(run_dir):
            raise StoreError(problem)
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / DB_NAME
        if path.exists():
            raise StoreError(f"{path} already exists")
        building = run_dir / BUILDING_NAME
        for leftover in (building, building.with_name(building.name + "-journal")):
            leftover.unlink(missing_ok=True)  # an interrupted creation: start it again
        store = cls(Database(sqlite3.connect(building)), building)
        try:
            schema.create_schema(store.db.conn)
            if setup is not None:
                setup(store)
        except BaseException:
            store.close()
            building.unlink(missing_ok=True)
            raise
        store.close()
        os.rename(building, path)  # under the run lock: nothing else creates it
        _sync_directory(run_dir)
        return cls.open(run_dir)

    @classmethod
    def open(cls, run_dir: Path, readonly: bool = False) -> RunStore:
        """Open a run; for writing, an older schema is migrated first (engine/store/schema.py).

        Read-only opens never migrate: an archived or older run is read as it is."""
        path = Path(run_dir) / DB_NAME
        if not path.is_file():
            raise StoreError(f"{run_dir} is not a run directory (no {DB_NAME})")
        if problem := readonly_access.path_too_long(path.parent):
            raise StoreError(problem)
        # Check with a read-only connection first: never switch a foreign file to WAL.
        try:
            probe = _connect(path, readonly=True)
            version = schema.read_version(probe.conn)
            probe.conn.close()
        except readonly_access.LiveRunUnreadable as exc:
            raise StoreError(str(exc)) from None
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"damaged run database: {path}: {exc} "
                f"(restore from backup: asi-evolve restore {path.parent})"
            ) from None
        if version is None:
            raise StoreError(f"{path} is not an ASI-Evolve run database")
        try:
            schema.check_readable(version)
        except schema.SchemaError as exc:
            raise StoreError(str(exc)) from None
        store = cls(_connect(path, readonly=readonly), path, readonly=readonly)
        if not readonly:
            try:
                schema.ensure_schema(store.db.conn)
            except schema.SchemaError as exc:
                store.close()
                raise StoreError(str(exc)) from None
            except BaseException:
                store.close()
                raise
        return store

    def close(self) -> None:
        self.db.conn.close()

    # ------------------------------------------------------------------- meta
    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        if row is None:
            return default
        try:
            return json.loads(row[0])
        except (TypeError, ValueError):
            raise StoreError(
                f"damaged run database: meta {key!r} is not JSON "
                f"(restore from backup: asi-evolve restore {self.path.parent})"
            ) from None

    def set_meta(self, key: str, value: Any) -> None:
        with self.db.conn:
            self.db.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [key, json.dumps(value)],
            )

    def all_meta(self) -> dict[str, Any]:
        keys = [row[0] for row in self.db.execute("SELECT key FROM meta")]
        return {key: self.get_meta(key) for key in keys}

    # ------------------------------------------------------------------ nodes
    def insert_node(self, node: Node) -> int:
        now = time.time()
        node.created_at = node.created_at or now
        node.updated_at = now
        with self.db.conn:
            node.id = self.db["nodes"].insert(node.to_row()).last_pk
        return node.id

    def update_node(self, node_id: int, **fields: Any) -> None:
        """Commit a change of some node fields at once (JSON fields accept dicts/lists)."""
        row: dict[str, Any] = {}
        for key, value in fields.items():
            if key not in NODES.columns or key == "id":
                raise KeyError(f"unknown node field {key!r}")
            if key in NODE_JSON_COLUMNS:
                value = json.dumps(value)
            row[key] = value
        if "parent_ids" in fields:
            row["parent_id"] = fields["parent_ids"][0] if fields["parent_ids"] else None
        row["updated_at"] = time.time()
        sets = ", ".join(f"{k} = ?" for k in row)
        with self.db.conn:
            self.db.execute(f"UPDATE nodes SET {sets} WHERE id = ?", [*row.values(), node_id])

    def save_node(self, node: Node) -> None:
        """Write every field of ``node`` (which must already have an id)."""
        assert node.id is not None
        node.updated_at = time.time()
        row = node.to_row()
        row.pop("id")
        sets = ", ".join(f"{k} = ?" for k in row)
        with self.db.conn:
            self.db.execute(f"UPDATE nodes SET {sets} WHERE id = ?", [*row.values(), node.id])

    def get_node(self, node_id: int) -> Node | None:
        if not -(2**63) <= node_id < 2**63:  # beyond SQLite's integer range: no such node
            return None
        rows = list(self.db.query("SELECT * FROM nodes WHERE id = ?", [node_id]))
        return Node.from_row(rows[0]) if rows else None

    def nodes(self, where: str = "", params: list[Any] | None = None) -> Iterator[Node]:
        sql = "SELECT * FROM nodes" + (f" WHERE {where}" if where else "") + " ORDER BY id"
        for row in self.db.query(sql, params or []):
            yield Node.from_row(row)

    def node_summaries(self) -> Iterator[dict[str, Any]]:
        """Light rows (no code, no logs) for loading the in-memory population."""
        yield from self.db.query(
            "SELECT id, step, status, score, visits, island, parent_id, length(code) AS code_len "
            "FROM nodes ORDER BY id"
        )

    def status_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for status, n in self.db.execute("SELECT status, count(*) FROM nodes GROUP BY status"):
            counts[status] = n
        return counts

    def steps_done(self) -> int:
        """Evaluated candidates (the root, step 0, is not one)."""
        marks = ",".join("?" * len(FINISHED))
        sql = f"SELECT count(*) FROM nodes WHERE step >= 1 AND status IN ({marks})"
        return self.db.execute(sql, list(FINISHED)).fetchone()[0]

    def used_steps(self) -> set[int]:
        return {row[0] for row in self.db.execute("SELECT step FROM nodes")}

    def best_node(self, maximize: bool = True) -> Node | None:
        order = direction.sql_order(maximize)
        rows = list(
            self.db.query(
                f"SELECT * FROM nodes WHERE status = ? AND score IS NOT NULL "
                f"ORDER BY score {order}, id ASC LIMIT 1",
                [DONE],
            )
        )
        return Node.from_row(rows[0]) if rows else None

    def standings(self, maximize: bool = True) -> standing.Standings:
        """Every node's explore and verify scores and the run's reported best
        (``engine/store/standing.py``): the best *verified* node where the task verifies."""
        names = standing.StageNames.from_meta(self.get_meta(standing.META_KEY))
        return standing.Standings(self.standing_rows(), names, maximize)

    def standing_rows(self) -> list[standing.Row]:
        """(id, step, status, score, results["stages"]) of every node, without the rest of
        the results (logs, metrics) that a standing does not need."""
        sql = (
            "SELECT id, step, status, score, CASE WHEN json_valid(results) "
            "THEN json_extract(results, '$.stages') END FROM nodes"
        )
        return [standing.Row(*row) for row in self.db.execute(sql)]

    def running(self, now: float) -> list[running.Running]:
        """Every unfinished candidate with its stage, elapsed time and limit, by id."""
        sql = (
            "SELECT id, step, status, created_at, metadata FROM nodes "
            "WHERE status IN (?, ?) ORDER BY id"
        )
        rows = self.db.execute(sql, [schema.PENDING, schema.RUNNING])
        found = (running.running_of(*row, now=now) for row in rows)
        return [r for r in found if r is not None]

    def count_better(self, score: float, maximize: bool) -> int:
        """Done nodes whose *evaluation* score is strictly better than ``score``.

        A judged node's score is the judge's blend; its evaluation's own score is kept as
        ``results.eval_score``. A promotion gate compares a candidate's score-stage score,
        known before any judge has seen it, so it must be compared with evaluation scores:
        against the blends, a judge rating above the evaluation would keep every candidate
        out of the top k, and one below would let worse candidates in."""
        op = ">" if maximize else "<"
        # results may hold NaN (json.dumps writes it; SQLite's JSON does not read it)
        evaluated = (
            "COALESCE(CASE WHEN results LIKE '%\"eval_score\"%' AND json_valid(results) "
            "THEN json_extract(results, '$.eval_score') END, score)"
        )
        sql = f"SELECT count(*) FROM nodes WHERE status = ? AND {evaluated} {op} ?"
        return self.db.execute(sql, [DONE, score]).fetchone()[0]

    def node_place(self, node_id: int) -> tuple[int, int | None, int] | None:
        """(step, island, code length) of a node, or None: what a sampler mirrors of it."""
        return self.db.execute(
            "SELECT step, island, length(code) FROM nodes WHERE id = ?", [node_id]
        ).fetchone()

    def root_code(self) -> str | None:
        row = self.db.execute("SELECT code FROM nodes WHERE step = 0").fetchone()
        return None if row is None else row[0] or ""

    def cell_rows(self, with_code: bool, with_metrics: bool) -> Iterator[list[tuple]]:
        """Batches of (id, cached diversity, code when not cached, results) of every scored
        done node, for the islands sampler's start-up (the code only where it is needed)."""
        if with_code:
            schema.create_tables(self.db.conn, [schema.NODE_DIVERSITY])
        columns = (
            "n.id, d.value, CASE WHEN d.value IS NULL THEN n.code END"
            if with_code
            else "n.id, NULL, NULL"
        )
        join = "LEFT JOIN node_diversity d ON d.node_id = n.id" if with_code else ""
        metrics = ", n.results" if with_metrics else ", NULL"
        cursor = self.db.execute(
            f"SELECT {columns}{metrics} FROM nodes n {join} "
            "WHERE n.status = ? AND n.score IS NOT NULL",
            [DONE],
        )
        while batch := cursor.fetchmany(512):
            yield batch

    def save_diversity(self, values: list[tuple[int, float]]) -> None:
        with self.db.conn:
            self.db.conn.executemany(
                "INSERT OR REPLACE INTO node_diversity(node_id, value) VALUES (?, ?)", values
            )

    def progress_rows(self) -> list[tuple]:
        """(step, finished_at, score, status) of every node: what ``progress`` measures."""
        return self.db.execute("SELECT step, finished_at, score, status FROM nodes").fetchall()

    def interrupted_nodes(self) -> list[Node]:
        """Nodes a crash left half-way: the engine re-runs them on resume."""
        return list(self.nodes("status IN (?, ?)", [PENDING, RUNNING]))

    def add_visits(self, node_ids: list[int]) -> None:
        with self.db.conn:
            self.db.conn.executemany(
                "UPDATE nodes SET visits = visits + 1 WHERE id = ?", [(i,) for i in node_ids]
            )

    # ----------------------------------------------------------------- events
    def add_event(
        self, kind: str, message: str, node_id: int | None = None, data: dict | None = None
    ) -> None:
        with self.db.conn:
            self.db.execute(
                "INSERT INTO events(ts, kind, node_id, message, data) VALUES (?, ?, ?, ?, ?)",
                [time.time(), kind, node_id, message, json.dumps(data or {})],
            )

    def events(self, after_id: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        return list(
            self.db.query(
                "SELECT * FROM events WHERE id > ? ORDER BY id LIMIT ?", [after_id, limit]
            )
        )

    # --------------------------------------------------------------- commands
    def add_command(self, kind: str, arg: str = "") -> int:
        with self.db.conn:
            cur = self.db.execute(
                "INSERT INTO commands(ts, kind, arg, status) VALUES (?, ?, ?, ?)",
                [time.time(), kind, arg, COMMAND_NEW],
            )
        return cur.lastrowid

    def new_commands(self) -> list[Command]:
        """New commands in order; a malformed row (a BLOB or huge argument, a NULL or
        unknown kind) is marked rejected with the reason and never reaches the engine."""
        rows = self.db.execute(
            "SELECT id, typeof(kind), substr(kind, 1, 40), typeof(arg), length(arg), "
            "substr(arg, 1, ?), ts FROM commands WHERE status = ? ORDER BY id",
            [MAX_COMMAND_ARG, COMMAND_NEW],
        ).fetchall()
        commands = []
        for cid, kind_type, kind, arg_type, arg_len, arg, ts in rows:
            problem = ""
            if kind_type != "text" or kind not in COMMAND_KINDS:
                problem = f"unknown command kind {kind!r}" if kind_type == "text" else "bad kind"
            elif arg_type not in ("text", "null"):
                problem = f"argument must be text, got {arg_type}"
            elif (arg_len or 0) > MAX_COMMAND_ARG:
                problem = f"argument too long ({arg_len} characters)"
            if problem:
                self.finish_command(cid, problem, ok=False)
                continue
            commands.append(Command(id=cid, kind=kind, arg=arg or "", created_at=ts or 0.0))
        return commands

    def expire_stale_commands(self, before: float) -> int:
        """Reject the commands written while no engine ran (before it started): a pause
        or prune typed last week must not silently act on today's run."""
        with self.db.conn:
            cur = self.db.execute(
                "UPDATE commands SET status = ?, handled_at = ?, "
                "result = 'expired: written while no engine was running' "
                "WHERE status = ? AND (ts IS NULL OR typeof(ts) NOT IN ('real', 'integer') "
                "OR ts < ?)",
                [COMMAND_REJECTED, time.time(), COMMAND_NEW, before],
            )
        return cur.rowcount

    def finish_command(self, command_id: int, result: str, ok: bool = True) -> None:
        with self.db.conn:
            self.db.execute(
                "UPDATE commands SET status = ?, handled_at = ?, result = ? WHERE id = ?",
                [COMMAND_HANDLED if ok else COMMAND_REJECTED, time.time(), result, command_id],
            )

    def get_command(self, command_id: int) -> dict[str, Any] | None:
        rows = list(self.db.query("SELECT * FROM commands WHERE id = ?", [command_id]))
        return rows[0] if rows else None

    # -------------------------------------------------------------- llm calls
    def add_llm_call(self, **fields: Any) -> None:
        fields.setdefault("ts", time.time())
        with self.db.conn:
            self.db["llm_calls"].insert(fields)

    def llm_totals(self) -> dict[str, float]:
        row = self.db.execute(
            "SELECT count(*), coalesce(sum(prompt_tokens), 0), "
            "coalesce(sum(completion_tokens), 0), coalesce(sum(cost_usd), 0) FROM llm_calls"
        ).fetchone()
        return {
            "calls": row[0],
            "prompt_tokens": row[1],
            "completion_tokens": row[2],
            "cost_usd": row[3],
        }

    # ---------------------------------------------------------------- islands
    def island_members(self) -> list[tuple[int, int]]:
        return [tuple(r) for r in self.db.execute("SELECT node_id, island FROM island_members")]

    def add_island_members(self, pairs: list[tuple[int, int]]) -> None:
        now = time.time()
        with self.db.conn:
            self.db.conn.executemany(
                "INSERT OR IGNORE INTO island_members(node_id, island, since) VALUES (?, ?, ?)",
                [(n, i, now) for n, i in pairs],
            )


def _sync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (a descriptor of the directory, not of a file)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _identity(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_dev, info.st_ino


def _connect(path: Path, readonly: bool = False) -> Database:
    conn = readonly_access.connect_readonly(path) if readonly else readonly_access.connect(path)
    db = Database(conn)
    db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    if not readonly:
        if db.journal_mode != "wal":
            db.enable_wal()
        # WAL + NORMAL: every commit survives a crash of the process; only a power cut
        # can lose the last commits, and the database stays consistent even then.
        db.execute("PRAGMA synchronous = NORMAL")
    return db


__all__ = ["RunStore", "StoreError", "DB_NAME", "SCHEMA_VERSION", "DONE", "FAILED", "RUNNING"]
