"""Online backups of the run database, and bringing a run back from one.

A run is days of GPU time in one SQLite file. The engine copies it with SQLite's online
backup API every N finished nodes and when it stops, into ``RUN_DIR/backups/``, keeping the
newest few. If the database is deleted, replaced or damaged, the engine stops within one
step (``RunStore.check_intact``) and ``asi-evolve restore RUN_DIR`` puts the newest good
backup back: at most N nodes are lost, and those are simply run again. The sandbox keeps
evaluators from touching ``backups/`` (it is inside the read-only run directory).

Every copy is read through an SQLite connection - the engine's own one for its backups - and
never by a descriptor of ours: closing one would drop the engine's locks on the file. A copy
is a read transaction, so it neither waits for readers (a TUI holding a snapshot) nor holds
the write lock while it waits, as a ``wal_checkpoint(TRUNCATE)`` would. Restoring builds the
new database next to the old one and swaps it in by renames: the run always has a database.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from engine.store import readonly
from engine.store.run_store import DB_NAME, RunStore, StoreError
from engine.store.schema import FINISHED
from engine.text import command_help

log = logging.getLogger(__name__)

BACKUP_DIR = "backups"
DB_FILES = (DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", f"{DB_NAME}-journal")


def copy_database(source: sqlite3.Connection, dest: Path) -> None:
    """A consistent single-file copy of what ``source`` reads, written atomically to ``dest``.

    ``dest`` appears complete or not at all (a temp file, checked, then renamed over it).
    Raises StoreError with one line when the copy cannot be written or fails its check.
    """
    dest = Path(dest)
    tmp = dest.with_name(dest.name + ".partial")
    try:
        tmp.unlink(missing_ok=True)
        out = sqlite3.connect(tmp)
        try:
            source.backup(out)
            out.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
            check = out.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            out.close()
        if check != "ok":
            raise StoreError(f"the copy failed its integrity check: {check}")
        os.replace(tmp, dest)  # atomic: a reader never sees half a backup
    except (OSError, sqlite3.Error) as exc:
        tmp.unlink(missing_ok=True)
        reason = getattr(exc, "strerror", None) or str(exc)
        raise StoreError(f"cannot write the copy {dest}: {reason}") from None
    except StoreError:
        tmp.unlink(missing_ok=True)
        raise


class Backups:
    """Rotating backups in ``RUN_DIR/backups/``: every ``every`` finished nodes, at most one
    per ``seconds``, and on stop.

    The floor in seconds is what keeps cheap candidates cheap: a copy reads the whole
    database (and checks it) in the db thread, so at 30 ms a candidate a backup every 10
    nodes cost 2 ms a node on a 300-node run, and grows with the database. A crash loses
    at most the nodes finished since the last backup: ``every`` nodes, or ``seconds`` of
    them when they come faster.
    """

    def __init__(
        self,
        run_dir: Path,
        every: int = 10,
        keep: int = 3,
        seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.dir = Path(run_dir) / BACKUP_DIR
        self.every = every
        self.keep = keep
        self.seconds = seconds
        self._clock = clock
        self._last_at: int | None = None
        self._last_time = clock()

    def maybe(self, store: RunStore, steps_done: int) -> Path | None:
        """Back up when ``every`` more nodes finished, and ``seconds`` passed, since the last."""
        if self.every <= 0:
            return None
        if self._last_at is None:
            self._last_at = steps_done - steps_done % self.every
        if steps_done - self._last_at < self.every:
            return None
        if self._clock() - self._last_time < self.seconds:
            return None
        self._last_at = steps_done
        path = self.now(store, steps_done)
        self._last_time = self._clock()
        return path

    def now(self, store: RunStore, steps_done: int | None = None) -> Path:
        """Copy the run through ``store``'s own connection (the engine's, in its db thread)."""
        store.check_intact()  # never back up a database that is already gone or damaged
        self.dir.mkdir(exist_ok=True)
        done = store.steps_done() if steps_done is None else steps_done
        dest = self.dir / f"evolve-{done:06d}-{time.strftime('%Y%m%dT%H%M%S')}.db"
        copy_database(store.db.conn, dest)
        for old in self.list()[: -self.keep]:
            old.unlink(missing_ok=True)
        log.info("backup written: %s", dest)
        return dest

    def list(self) -> list[Path]:
        """Backups, oldest first."""
        if not self.dir.is_dir():
            return []
        return sorted(p for p in self.dir.glob("evolve-*.db") if p.is_file())


def is_run_dir(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a run (its database, or backups of one to restore from)."""
    return (run_dir / DB_NAME).is_file() or bool(Backups(run_dir).list())


def _run_database_file(path: Path, run_dir: Path) -> bool:
    """True when ``path`` is the run's database or one of its companion files."""
    path = Path(path)
    for name in DB_FILES:
        live = run_dir / name
        if path.absolute() == live.absolute():
            return True
        try:
            if live.exists() and path.exists() and os.path.samefile(path, live):
                return True
        except OSError:
            continue
    return False


def _usable(candidate: Path) -> int | None:
    """Finished steps in ``candidate`` when it is a sound run database, else None."""
    try:
        probe = readonly.connect_readonly(candidate)
    except sqlite3.Error:
        return None
    try:
        if probe.execute("PRAGMA quick_check").fetchone()[0] != "ok":
            return None
        marks = ",".join("?" * len(FINISHED))
        sql = f"SELECT count(*) FROM nodes WHERE step >= 1 AND status IN ({marks})"
        return probe.execute(sql, list(FINISHED)).fetchone()[0]
    except sqlite3.Error:
        return None
    finally:
        probe.close()


def restore(run_dir: Path, source: Path | None = None) -> tuple[Path, int]:
    """Put ``source`` (default: the newest good backup) back as the run database.

    The new database is written next to the old one first; only then are the current
    database files renamed to ``evolve.db*.damaged-<time>`` (never deleted) and the new one
    renamed into place, so a failure at any point leaves the run with a database. Returns
    the backup used and the number of finished steps it holds.
    """
    run_dir = Path(run_dir)
    if source is not None and _run_database_file(source, run_dir):
        raise StoreError(f"{source} is the run's own database; restore from a backup of it")
    candidates = [Path(source)] if source else list(reversed(Backups(run_dir).list()))
    if not candidates:
        raise StoreError(f"no backup found in {run_dir / BACKUP_DIR}")
    for candidate in candidates:
        if not candidate.is_file():
            raise StoreError(f"{candidate} does not exist")
        steps = _usable(candidate)
        if steps is not None:
            break
        if source:
            raise StoreError(f"{candidate} is not a usable run database")
    else:
        raise StoreError(f"no usable backup in {run_dir / BACKUP_DIR}")
    incoming = run_dir / f"{DB_NAME}.restoring"
    source_conn = readonly.connect_readonly(candidate)
    try:
        copy_database(source_conn, incoming)
    finally:
        source_conn.close()
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for name in DB_FILES:
        current = run_dir / name
        if current.exists():
            current.rename(run_dir / f"{name}.damaged-{stamp}")
    os.replace(incoming, run_dir / DB_NAME)
    return candidate, steps


# ------------------------------------------------------------------ command line
def register(sub) -> None:  # noqa: ANN001 - argparse's private subparsers type
    """``asi-evolve backup RUN_DIR DEST`` and ``asi-evolve restore RUN_DIR [--from FILE]``."""
    backup = sub.add_parser(
        "backup",
        help="a consistent single-file copy of a run's database",
        **command_help(
            "Write a consistent single-file copy of the run's database (SQLite's online "
            "backup: safe while an engine writes). DEST is a file, or a directory where "
            "<run name>-<time>.db is written. The engine also keeps its own backups in "
            "RUN_DIR/backups.",
            "asi-evolve backup runs/circle_packing copy.db",
            "asi-evolve backup runs/circle_packing /mnt/archive/",
        ),
    )
    backup.add_argument("run_dir", type=Path)
    backup.add_argument("dest", type=Path, help="file to write (its directory must exist)")
    backup.set_defaults(func=cmd_backup)
    restore_cmd = sub.add_parser(
        "restore",
        help="bring a run back from its newest good backup (or --from FILE)",
        **command_help(
            "Bring a run's database back from its newest good backup in RUN_DIR/backups, or "
            "from --from FILE. The replaced database is kept aside, never deleted; no engine "
            "may be running on the run. Then resume it with 'asi-evolve run TASK --run-dir "
            "RUN_DIR'.",
            "asi-evolve restore runs/circle_packing",
            "asi-evolve restore runs/circle_packing --from copy.db",
        ),
    )
    restore_cmd.add_argument("run_dir", type=Path)
    restore_cmd.add_argument("--from", dest="source", type=Path, help="a backup file to use")
    restore_cmd.set_defaults(func=cmd_restore)


def cmd_backup(args) -> int:  # noqa: ANN001
    run_dir: Path = args.run_dir
    if not (run_dir / DB_NAME).is_file():
        raise StoreError(f"{run_dir} is not a run directory (no {DB_NAME})")
    dest = args.dest
    if dest.is_dir():
        dest = dest / f"{run_dir.resolve().name}-{time.strftime('%Y%m%dT%H%M%S')}.db"
    if not dest.parent.is_dir():
        raise StoreError(f"{dest.parent} is not a directory")
    if _run_database_file(dest, run_dir):
        raise StoreError(f"{dest} is the run's own database; write the backup elsewhere")
    store = RunStore.open(run_dir, readonly=True)
    try:
        copy_database(store.db.conn, dest)
    finally:
        store.close()
    print(f"backup of {run_dir} written to {dest}")
    return 0


def cmd_restore(args) -> int:  # noqa: ANN001
    from engine.store.lock import LockedError, RunLock

    if not args.run_dir.is_dir():
        raise StoreError(f"{args.run_dir} is not a directory")
    if not is_run_dir(args.run_dir):  # nothing of ours to restore: touch nothing there
        raise StoreError(f"{args.run_dir} is not a run directory (no {DB_NAME}, no backups)")
    try:
        lock = RunLock(args.run_dir)
        lock.acquire()
    except LockedError as exc:
        raise LockedError(f"{exc}: stop it first") from None
    try:
        used, steps = restore(args.run_dir, args.source)
    finally:
        lock.release()
    print(f"restored {args.run_dir} from {used}: {steps} finished steps")
    print("resume it with asi-evolve run TASK --run-dir RUN_DIR")
    return 0
