"""Online backups of the run database, and bringing a run back from one.

A run is days of GPU time in one SQLite file. The engine copies it with SQLite's online
backup API (a consistent snapshot while it keeps writing) every N finished nodes and
when it stops, into ``RUN_DIR/backups/``, keeping the newest few. If the database is
deleted, replaced or damaged, the engine stops within one step (``RunStore.check_intact``)
and ``asi-evolve restore RUN_DIR`` puts the newest good backup back: at most N nodes are
lost, and those are simply run again. The sandbox keeps evaluators from touching
``backups/`` (it is inside the read-only run directory).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from pathlib import Path

from engine.schema import FINISHED
from engine.store import DB_NAME, RunStore, StoreError

log = logging.getLogger(__name__)

BACKUP_DIR = "backups"


def copy_database(source: Path, dest: Path) -> None:
    """A consistent single-file copy of the run database at ``source`` (WAL folded in)."""
    dest = Path(dest)
    tmp = dest.with_name(dest.name + ".partial")
    tmp.unlink(missing_ok=True)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    try:
        out = sqlite3.connect(tmp)
        try:
            src.backup(out)
            out.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
            check = out.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            out.close()
    finally:
        src.close()
    if check != "ok":
        tmp.unlink(missing_ok=True)
        raise StoreError(f"the copy of {source} failed its integrity check: {check}")
    os.replace(tmp, dest)  # atomic: a reader never sees half a backup


class Backups:
    """Rotating backups in ``RUN_DIR/backups/``: ``every`` finished nodes and on stop."""

    def __init__(self, run_dir: Path, every: int = 10, keep: int = 3) -> None:
        self.dir = Path(run_dir) / BACKUP_DIR
        self.every = every
        self.keep = keep
        self._last_at: int | None = None

    def maybe(self, store: RunStore, steps_done: int) -> Path | None:
        """Back up when ``every`` more nodes finished since the last backup."""
        if self.every <= 0:
            return None
        if self._last_at is None:
            self._last_at = steps_done - steps_done % self.every
        if steps_done - self._last_at < self.every:
            return None
        self._last_at = steps_done
        return self.now(store, steps_done)

    def now(self, store: RunStore, steps_done: int | None = None) -> Path:
        store.check_intact()  # never back up a database that is already gone or damaged
        store.checkpoint()
        self.dir.mkdir(exist_ok=True)
        done = store.steps_done() if steps_done is None else steps_done
        dest = self.dir / f"evolve-{done:06d}-{time.strftime('%Y%m%dT%H%M%S')}.db"
        copy_database(store.path, dest)
        for old in self.list()[: -self.keep]:
            old.unlink(missing_ok=True)
        log.info("backup written: %s", dest)
        return dest

    def list(self) -> list[Path]:
        """Backups, oldest first."""
        if not self.dir.is_dir():
            return []
        return sorted(p for p in self.dir.glob("evolve-*.db") if p.is_file())


def restore(run_dir: Path, source: Path | None = None) -> tuple[Path, int]:
    """Put ``source`` (default: the newest backup) back as the run database.

    The current database file, if any, is kept as ``evolve.db.damaged-<time>`` (never
    deleted); returns the backup used and the number of finished steps it holds.
    """
    run_dir = Path(run_dir)
    candidates = [Path(source)] if source else list(reversed(Backups(run_dir).list()))
    if not candidates:
        raise StoreError(f"no backup found in {run_dir / BACKUP_DIR}")
    for candidate in candidates:
        if not candidate.is_file():
            raise StoreError(f"{candidate} does not exist")
        try:
            probe = sqlite3.connect(f"file:{candidate}?mode=ro", uri=True)
            ok = probe.execute("PRAGMA quick_check").fetchone()[0] == "ok"
            steps = probe.execute(
                "SELECT count(*) FROM nodes WHERE step >= 1 AND status IN (?, ?, ?)", FINISHED
            ).fetchone()[0]
            probe.close()
        except sqlite3.DatabaseError:
            ok = False
        if ok:
            break
        if source:
            raise StoreError(f"{candidate} is not a usable run database")
    else:
        raise StoreError(f"no usable backup in {run_dir / BACKUP_DIR}")
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for suffix in ("", "-wal", "-shm"):
        current = run_dir / f"{DB_NAME}{suffix}"
        if current.exists():
            current.rename(run_dir / f"{DB_NAME}{suffix}.damaged-{stamp}")
    copy_database(candidate, run_dir / DB_NAME)
    return candidate, steps


# ------------------------------------------------------------------ command line
def register(sub) -> None:  # noqa: ANN001 - argparse's private subparsers type
    """``asi-evolve backup RUN_DIR DEST`` and ``asi-evolve restore RUN_DIR [--from FILE]``."""
    backup = sub.add_parser("backup", help="a consistent single-file copy of a run's database")
    backup.add_argument("run_dir", type=Path)
    backup.add_argument("dest", type=Path, help="file to write (its directory must exist)")
    backup.set_defaults(func=cmd_backup)
    restore_cmd = sub.add_parser(
        "restore", help="bring a run back from its newest good backup (or --from FILE)"
    )
    restore_cmd.add_argument("run_dir", type=Path)
    restore_cmd.add_argument("--from", dest="source", type=Path, help="a backup file to use")
    restore_cmd.set_defaults(func=cmd_restore)


def cmd_backup(args) -> int:  # noqa: ANN001
    source = args.run_dir / DB_NAME
    if not source.is_file():
        raise StoreError(f"{args.run_dir} is not a run directory (no {DB_NAME})")
    dest = args.dest
    if dest.is_dir():
        dest = dest / f"{args.run_dir.resolve().name}-{time.strftime('%Y%m%dT%H%M%S')}.db"
    if not dest.parent.is_dir():
        raise StoreError(f"{dest.parent} is not a directory")
    copy_database(source, dest)
    print(f"backup of {args.run_dir} written to {dest}")
    return 0


def cmd_restore(args) -> int:  # noqa: ANN001
    from engine.lock import LockedError, RunLock

    if not args.run_dir.is_dir():
        raise StoreError(f"{args.run_dir} is not a directory")
    try:
        lock = RunLock(args.run_dir)
        lock.acquire()
    except LockedError:
        raise LockedError(f"an engine is running on {args.run_dir}: stop it first") from None
    try:
        used, steps = restore(args.run_dir, args.source)
    finally:
        lock.release()
    print(f"restored {args.run_dir} from {used}: {steps} finished steps")
    print("resume it with asi-evolve run TASK --run-dir RUN_DIR")
    return 0
