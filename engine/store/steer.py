"""The only writes of a process other than the engine: a row in ``commands`` (pause, resume,
stop, prune) and a decision on a pending cognition item. The TUI makes them; so can a script.

Each write opens a short-lived read-write connection and closes it at once (an SQLite
connection: closing it never drops another connection's locks), so no outside process holds
a write lock the engine could wait on. The journal mode is left as the engine
set it (WAL). Decisions on cognition items are plain status updates; the engine reads the
status from the database when it retrieves.
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from pathlib import Path

from engine.store.readonly import connect
from engine.store.schema import (
    COGNITION_ITEMS,
    COMMAND_KINDS,
    COMMAND_NEW,
    DB_NAME,
    ITEM_ACTIVE,
    ITEM_REJECTED,
)

COMMANDS = COMMAND_KINDS
ITEMS = COGNITION_ITEMS.name
DECISIONS = {"approve": ITEM_ACTIVE, "reject": ITEM_REJECTED}


class SteerError(Exception):
    """A write the TUI could not make (read-only file, missing table...)."""


def _connect(run_dir: Path) -> sqlite3.Connection:
    try:
        conn = connect(Path(run_dir) / DB_NAME, timeout=5)
    except sqlite3.Error as exc:
        raise SteerError(f"cannot open the run database for writing: {exc}") from None
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


def send_command(run_dir: Path, kind: str, arg: str = "") -> int:
    """Insert a 'new' command row for the engine; returns its id."""
    if kind not in COMMANDS:
        raise SteerError(f"unknown command {kind!r}")
    try:
        with closing(_connect(run_dir)) as conn, conn:
            cur = conn.execute(
                "INSERT INTO commands(ts, kind, arg, status) VALUES (?, ?, ?, ?)",
                (time.time(), kind, arg, COMMAND_NEW),
            )
            return int(cur.lastrowid or 0)
    except sqlite3.Error as exc:
        raise SteerError(f"could not write the {kind} command: {exc}") from None


def decide_item(run_dir: Path, item_id: int, decision: str) -> str:
    """Approve or reject a pending cognition item; returns a one-line outcome."""
    status = DECISIONS[decision]
    try:
        with closing(_connect(run_dir)) as conn, conn:
            cols = {r[1] for r in conn.execute(f"PRAGMA table_info({ITEMS})")}
            if not cols:
                raise SteerError("this run has no cognition base")
            sets, params = "status = ?", [status]
            if "updated_at" in cols:
                sets += ", updated_at = ?"
                params.append(time.time())
            cur = conn.execute(
                f"UPDATE {ITEMS} SET {sets} WHERE id = ? AND status = 'pending'",
                [*params, item_id],
            )
            if cur.rowcount == 0:
                row = conn.execute(f"SELECT status FROM {ITEMS} WHERE id = ?", (item_id,))
                found = row.fetchone()
                if found is None:
                    raise SteerError(f"no cognition item #{item_id}")
                return f"item #{item_id} is already {found[0]}"
    except sqlite3.Error as exc:
        raise SteerError(f"could not {decision} item #{item_id}: {exc}") from None
    verb = "approved (now retrievable)" if decision == "approve" else "rejected"
    return f"item #{item_id} {verb}"
