"""How any process opens a run database, and asks whether an engine holds the run.

Shared by the engine's own readers (``status``, ``best``, ``export``, the store's read-only
opens) and the TUI, so the rules live in one place (standard library only: the TUI must not
import the engine's runtime):

* Only SQLite opens the database file. A descriptor of our own, once closed, drops every
  POSIX lock this process holds on the file, SQLite's included ("How To Corrupt An SQLite
  Database File", 2.2), and a live engine's write-ahead log is then reset under it.
* A live run is read through its write-ahead log (``mode=ro``), which sees every commit of
  the engine as soon as it is made. ``immutable=1`` skips the locks and the log, so it is
  used only where no engine can be writing: an archived run in a directory this process
  cannot write (SQLite needs the ``-shm`` file even to read) and that no engine holds.
* "Is an engine running on it?" is one probe, the shared lock on the run directory that the
  engine holds exclusively for its whole life (``engine/store/lock.py``).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

from engine.store.lock import engine_alive

__all__ = [
    "LiveRunUnreadable",
    "connect",
    "connect_readonly",
    "database_uri",
    "engine_alive",
    "path_too_long",
]

# SQLite's Unix VFS refuses paths over 512 bytes, "-journal" included; the rest is margin.
MAX_RUN_DIR_CHARS = 480


class LiveRunUnreadable(sqlite3.OperationalError):
    """A live run whose directory this process cannot write: SQLite cannot read it safely."""


def database_uri(path: Path, **params: str) -> str:
    """A ``file:`` URI for ``path`` (``?``, ``#`` and ``%`` in a directory name are escaped)."""
    query = "&".join(f"{key}={value}" for key, value in params.items())
    uri = "file:" + quote(str(Path(path).absolute()), safe="/")
    return f"{uri}?{query}" if query else uri


def path_too_long(run_dir: Path) -> str:
    """Why SQLite cannot open a database in ``run_dir`` (its path is too long), or ""."""
    length = len(os.fsencode(Path(run_dir).absolute()))
    if length <= MAX_RUN_DIR_CHARS:
        return ""
    return (
        f"the run directory's path is too long for SQLite: {length} characters "
        f"(at most {MAX_RUN_DIR_CHARS}); use a shorter --run-dir"
    )


def connect(path: Path, timeout: float = 10) -> sqlite3.Connection:
    """A read-write connection to an existing database (the engine's, the TUI's steering
    writes); it never creates one, so a write to a deleted run fails instead of starting an
    empty database in its place.

    It may be handed from one thread to another (``check_same_thread=False``): the engine
    opens its one connection on the main thread, its db thread alone uses it while the loop
    runs, and the main thread again after; nothing ever uses it from two threads at once.
    """
    return sqlite3.connect(
        database_uri(path, mode="rw"), uri=True, timeout=timeout, check_same_thread=False
    )


def connect_readonly(path: Path, timeout: float = 10) -> sqlite3.Connection:
    """A read-only connection that sees a live engine's commits at once, and also works on
    an archived run (a read-only directory, which no engine holds)."""
    path = Path(path)
    conn = sqlite3.connect(database_uri(path, mode="ro"), uri=True, timeout=timeout)
    try:
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        return conn
    except sqlite3.OperationalError:
        conn.close()
        if os.access(path.parent, os.W_OK) and os.access(path, os.W_OK):
            raise  # not a permission problem: the caller reports what SQLite said
    if engine_alive(path.parent):
        raise LiveRunUnreadable(
            f"cannot read the live run in {path.parent}: an engine is writing it and this "
            "user cannot write its directory (SQLite needs the -shm file); read a backup "
            "or ask the run's owner"
        )
    return sqlite3.connect(database_uri(path, mode="ro", immutable="1"), uri=True, timeout=timeout)
