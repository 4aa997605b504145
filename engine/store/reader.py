"""A run as every process but the engine reads it: the TUI, and the engine's read commands.

Standard library only: the TUI never imports the engine's runtime; it meets the engine only
through ``RUN_DIR/evolve.db``, whose layout comes from ``engine/store/schema.py`` and which
is opened as every reader opens it (``engine/store/readonly.py``). Every query an outside
reader makes is here (the cognition tables and a node's lineage too), so that none is
written a second time elsewhere. Reads go
through a read-only connection per thread and are incremental (nodes by ``updated_at``, events
and LLM calls by id), so a refresh costs the same at 100 nodes and at 100,000. Text is decoded
leniently: a node with non-UTF-8 output must not take the screen down.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.store import schema
from engine.store.readonly import connect_readonly, engine_alive
from engine.store.running import RUNNING_STAGE, Running, running_of
from engine.store.schema import DB_NAME, PENDING, RUNNING
from engine.store.standing import Row, StageNames

HEARTBEAT_STALE_S = 5.0
# Re-read nodes changed within this window of the newest change seen: a commit whose
# timestamp was taken just before another one's is never missed.
OVERLAP_S = 1.0
NODE_FIELDS = (
    "id, step, name, parent_id, score, status, runtime, island, started_at, updated_at, finished_at"
)
# What runs now (engine/store/running.py): the stage record of an unfinished node only.
STAGE_FIELDS = (
    "created_at, CASE WHEN status IN ('pending', 'running') AND json_valid(metadata)"
    " THEN json_extract(metadata, '$.running_stage') END"
)
# A node's verify stage (engine/store/standing.py): whether its record exists, then its ok,
# score and skipped fields, never the rest of it (its results and error may be large).
VERIFY_FIELDS = (
    "CASE WHEN json_valid(results) THEN json_type(results, ?) END,"
    " CASE WHEN json_valid(results) THEN json_extract(results, ?, ?, ?) END"
)


class RunNotFound(Exception):
    """The directory does not hold an ASI-Evolve run database."""


@dataclass(slots=True)
class NodeRow:
    """The light columns of a node: what the population table and the curve need."""

    id: int
    step: int
    name: str
    parent_id: int | None
    score: float | None
    status: str
    runtime: float | None
    island: int | None
    started_at: float | None
    updated_at: float
    finished_at: float | None = None  # the speed and ETA are measured on it
    created_at: float | None = None
    stage: dict[str, Any] | None = None  # metadata["running_stage"] while a stage runs
    # (ok, score, skipped) of the run's verify stage; None: no such record (or not read)
    verify: tuple[Any, Any, Any] | None = None

    def running(self, now: float) -> Running | None:
        """Its stage, elapsed time and limit while unfinished (``engine/store/running.py``);
        a running node without a stage record counts from when it started running."""
        if self.status not in (PENDING, RUNNING):
            return None
        since = (self.started_at or self.created_at) if self.status == RUNNING else self.created_at
        metadata = {RUNNING_STAGE: self.stage} if self.stage is not None else None
        return running_of(self.id, self.step, self.status, since, metadata, now)

    def standing_row(self, names: StageNames) -> Row:
        """What ``engine/store/standing.Standings`` needs of it."""
        stages = None
        if names.verify is not None and self.verify is not None:
            ok, score, skipped = self.verify
            stages = {names.verify: {"ok": ok, "score": score, "skipped": skipped}}
        return Row(self.id, self.step, self.status, self.score, stages)


LIVE_STATES = ("starting", "running", "paused")  # an engine is at work on the run
ENDED_STATES = ("finished", "stopped", "failed")  # the engine left the run saying why


@dataclass
class EngineState:
    """Whether an engine holds the run, and what its heartbeat says."""

    alive: bool  # some process holds the run lock
    # starting / running / paused while an engine works; finished / stopped / failed once it
    # ended that way; "not running" when none holds the run (killed) or its heartbeat is stale.
    state: str
    busy: int = 0
    workers: int = 0
    started: float | None = None
    heartbeat: float | None = None
    slots: dict[str, Any] | None = None  # {"gpus": {"busy", "total"}, "cpus": {...}}

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES


@dataclass
class LlmTotals:
    calls: int = 0
    tokens: int = 0
    cost: float = 0.0
    last_id: int = 0


@dataclass
class Cursor:
    """How far the incremental reads have got."""

    updated_at: float = 0.0
    event_id: int = 0
    llm: LlmTotals = field(default_factory=LlmTotals)


def lenient_text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


class RunReader:
    """Read-only access to one run database, safe to use from several threads."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / DB_NAME
        self._local = threading.local()
        self._lock = threading.Lock()
        self.generation = 0  # how often the database file was replaced under this reader
        if not self.run_dir.is_dir():
            raise RunNotFound(f"{self.run_dir} is not a directory")
        if not self.path.is_file():
            raise RunNotFound(f"{self.run_dir} is not a run directory (no {DB_NAME})")
        try:
            version = schema.read_version(self.conn())
            if version is None:
                raise RunNotFound(f"{self.path} is not an ASI-Evolve run database")
            schema.check_readable(version)
            self.query("SELECT id, step, status, score, updated_at FROM nodes LIMIT 1")
        except sqlite3.Error as exc:
            raise RunNotFound(f"{self.path} is not a readable run database: {exc}") from None
        except schema.SchemaError as exc:
            raise RunNotFound(str(exc)) from None

    # ------------------------------------------------------------ connection
    def conn(self) -> sqlite3.Connection:
        """This thread's connection, reopened when the file was replaced (``restore``: an
        open connection would go on reading the old, renamed file)."""
        conn = getattr(self._local, "conn", None)
        identity = _identity(self.path)
        if conn is not None and identity is not None and identity != self._local.identity:
            conn.close()
            conn = None
            with self._lock:
                self.generation += 1  # the Poller starts over from this database
        if conn is None:
            conn = connect_readonly(self.path)
            conn.text_factory = lenient_text
            conn.execute("PRAGMA busy_timeout = 10000")
            self._local.conn, self._local.identity = conn, identity
        return conn

    def query(self, sql: str, params: tuple | list = ()) -> list[tuple]:
        return self.conn().execute(sql, params).fetchall()

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def tables(self) -> set[str]:
        return {r[0] for r in self.query("SELECT name FROM sqlite_master WHERE type = 'table'")}

    # ------------------------------------------------------------------ meta
    def meta(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in self.query("SELECT key, value FROM meta"):
            try:
                out[key] = json.loads(value)
            except (TypeError, ValueError):
                out[key] = value
        return out

    def engine_state(self, meta: dict[str, Any], now: float) -> EngineState:
        """'not running' unless a process holds the lock and its heartbeat is fresh."""
        info = meta.get("engine")
        info = info if isinstance(info, dict) else {}
        alive = engine_alive(self.run_dir)
        beat = _num(info.get("heartbeat"))
        fresh = beat is not None and now - beat <= HEARTBEAT_STALE_S
        state = str(meta.get("state") or info.get("state") or "unknown")
        if not (alive and fresh):  # an engine that ended cleanly said how; any other is gone
            state = state if state in ENDED_STATES and not alive else "not running"
        slots = info.get("slots")
        return EngineState(
            alive=alive,
            state=state,
            busy=int(_num(info.get("busy")) or 0),
            workers=int(_num(info.get("workers")) or 0),
            started=_num(info.get("started")),
            heartbeat=beat,
            slots=slots if isinstance(slots, dict) and alive and fresh else None,
        )

    # ----------------------------------------------------------------- nodes
    def changed_nodes(self, cursor: Cursor, verify: str | None = None) -> list[NodeRow]:
        """Nodes updated since the cursor (oldest first); advances the cursor.

        The first call reads every node (light columns only); later calls use the
        ``updated_at`` index and return only what changed (plus the overlap window).
        ``verify`` names the run's verify stage: its outcome is read too (``NodeRow.verify``).
        """
        path = _stage_path(verify)
        fields, params = f"{NODE_FIELDS}, {STAGE_FIELDS}", []
        if path is not None:
            fields += f", {VERIFY_FIELDS}"
            params = [path, f"{path}.ok", f"{path}.score", f"{path}.skipped"]
        if cursor.updated_at:
            rows = self.query(
                f"SELECT {fields} FROM nodes WHERE updated_at > ? ORDER BY updated_at",
                (*params, cursor.updated_at - OVERLAP_S),
            )
        else:
            rows = self.query(f"SELECT {fields} FROM nodes ORDER BY updated_at", params)
        out = [_node_row(r) for r in rows]
        if out:
            cursor.updated_at = max(cursor.updated_at, out[-1].updated_at)
        return out

    def node(self, node_id: int) -> dict[str, Any] | None:
        """Every column of one node (code, analysis, results...)."""
        cur = self.conn().execute("SELECT * FROM nodes WHERE id = ?", (node_id,))
        row = cur.fetchone()
        if row is None:
            return None
        return {d[0]: v for d, v in zip(cur.description, row, strict=True)}

    # ---------------------------------------------------------------- events
    def events(self, cursor: Cursor, backlog: int = 200) -> list[tuple[int, float, str, str]]:
        """(id, ts, kind, message) after the cursor; on the first read, the last ``backlog``."""
        if cursor.event_id == 0:
            rows = self.query(
                "SELECT id, ts, kind, message FROM "
                "(SELECT * FROM events ORDER BY id DESC LIMIT ?) ORDER BY id",
                (backlog,),
            )
        else:
            rows = self.query(
                "SELECT id, ts, kind, message FROM events WHERE id > ? ORDER BY id LIMIT 1000",
                (cursor.event_id,),
            )
        if rows:
            cursor.event_id = rows[-1][0]
        return [(r[0], _num(r[1]) or 0.0, str(r[2] or ""), str(r[3] or "")) for r in rows]

    # ------------------------------------------------------------- llm calls
    def llm_totals(self, cursor: Cursor) -> LlmTotals:
        totals = cursor.llm
        row = self.query(
            "SELECT count(*), coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0),"
            " coalesce(sum(cost_usd), 0), max(id) FROM llm_calls WHERE id > ?",
            (totals.last_id,),
        )[0]
        if row[0]:
            totals.calls += int(row[0])
            totals.tokens += int(row[1] or 0) + int(row[2] or 0)
            totals.cost += float(row[3] or 0.0)
            totals.last_id = int(row[4])
        return totals

    # ------------------------------------------------------------ cognition
    def has_cognition(self) -> bool:
        """The cognition tables appear once the cognition base has written to the run."""
        return schema.COGNITION_ITEMS.name in self.tables()

    def _columns(self, table: str) -> set[str]:
        return {r[1] for r in self.query(f"PRAGMA table_info({table})")}

    def pending_items(self, limit: int = 500) -> list[tuple]:
        """(id, title, content, origin, node_id, duplicate_of) of pending items; an older
        run without some of these columns reads them as NULL."""
        items = schema.COGNITION_ITEMS.name
        if not self.has_cognition():
            return []
        cols = self._columns(items)
        node = "node_id" if "node_id" in cols else "NULL"
        dup = "duplicate_of" if "duplicate_of" in cols else "NULL"
        origin = "origin" if "origin" in cols else "''"
        return self.query(
            f"SELECT id, title, content, {origin}, {node}, {dup} FROM {items} "
            "WHERE status = 'pending' ORDER BY id LIMIT ?",
            (limit,),
        )

    def retrieved(self, node_id: int) -> list[tuple]:
        """(item id, score, title, status) of what the node's Researcher was shown, best first."""
        items, retrievals = schema.COGNITION_ITEMS.name, schema.RETRIEVALS.name
        tables = self.tables()
        if retrievals not in tables:
            return []
        if items in tables:
            sql = (
                f"SELECT r.item_id, r.score, c.title, c.status FROM {retrievals} r "
                f"LEFT JOIN {items} c ON c.id = r.item_id WHERE r.node_id = ? "
                "ORDER BY r.score DESC"
            )
        else:
            sql = (
                f"SELECT item_id, score, '', '' FROM {retrievals} WHERE node_id = ? "
                "ORDER BY score DESC"
            )
        return self.query(sql, (node_id,))

    # -------------------------------------------------------------- lineage
    def ancestry(self, node_id: int, max_depth: int) -> list[tuple]:
        """(id, step, name, status, score, motivation, parent_id) of the node and its
        ancestors, the node first, at most ``max_depth`` + 1 rows: one recursive query on
        the parent links, bounded in depth, so a cycle in odd data cannot hang a reader."""
        return self.query(
            "WITH RECURSIVE chain(id, depth) AS ("
            " SELECT ?, 0"
            " UNION ALL"
            " SELECT n.parent_id, c.depth + 1 FROM nodes n JOIN chain c ON n.id = c.id"
            " WHERE n.parent_id IS NOT NULL AND c.depth < ?)"
            " SELECT n.id, n.step, n.name, n.status, n.score, n.motivation, n.parent_id"
            " FROM chain c JOIN nodes n ON n.id = c.id ORDER BY c.depth",
            (node_id, max_depth),
        )

    # ------------------------------------------------------------- commands
    def command(self, command_id: int) -> tuple[str, str] | None:
        """(status, result) of one command row."""
        rows = self.query("SELECT status, result FROM commands WHERE id = ?", (command_id,))
        return (str(rows[0][0] or ""), str(rows[0][1] or "")) if rows else None


def _identity(path: Path) -> tuple[int, int] | None:
    """Which file ``path`` names now (a stat: never a descriptor of the database)."""
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _num(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _stage_path(name: str | None) -> str | None:
    """The JSON path of a stage's record in a node's results (stage names are
    ``[a-z][a-z0-9_-]*``: anything else is not looked up)."""
    if not name or not all(c.isalnum() or c in "_-" for c in name):
        return None
    return f'$.stages."{name}"'


def _json(value: Any) -> Any:
    if not isinstance(value, str):
        return None
    try:
        return json.loads(value)
    except ValueError:
        return None


def _node_row(r: tuple) -> NodeRow:
    stage = verify = None
    if len(r) > 12 and r[12] is not None:
        stage = _json(r[12])
    if len(r) > 14 and r[13] == "object":
        fields = _json(r[14])
        if isinstance(fields, list) and len(fields) == 3:
            verify = (fields[0], fields[1], fields[2])
    return NodeRow(
        id=int(r[0]),
        step=int(r[1] if r[1] is not None else -1),
        name=str(r[2] or ""),
        parent_id=int(r[3]) if isinstance(r[3], int) else None,
        score=float(r[4]) if isinstance(r[4], int | float) else None,
        status=str(r[5] or "?"),
        runtime=float(r[6]) if isinstance(r[6], int | float) else None,
        island=int(r[7]) if isinstance(r[7], int) else None,
        started_at=float(r[8]) if isinstance(r[8], int | float) else None,
        updated_at=float(r[9]) if isinstance(r[9], int | float) else 0.0,
        finished_at=float(r[10]) if isinstance(r[10], int | float) else None,
        created_at=float(r[11]) if len(r) > 11 and isinstance(r[11], int | float) else None,
        stage=stage if isinstance(stage, dict) else None,
        verify=verify,
    )
