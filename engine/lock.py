"""One engine per run directory.

Two engines writing one run would interleave steps and double-spend GPU time, so the
engine holds an exclusive ``flock`` on ``RUN_DIR/engine.lock`` for its whole life, and
one on the run directory itself: deleting ``engine.lock`` (by hand, or by an evaluator
running without a sandbox) must not let a second engine in. The kernel drops both locks
when the process dies, so a crash never leaves them stale.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

LOCK_NAME = "engine.lock"


class LockedError(Exception):
    """Another engine holds the run directory."""


class RunLock:
    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK_NAME
        self._fd: int | None = None
        self._dir_fd: int | None = None

    def acquire(self) -> None:
        dir_fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
        if not _try_lock(dir_fd, fcntl.LOCK_EX):
            os.close(dir_fd)
            raise LockedError(f"another engine is running on {self.path.parent}")
        self._dir_fd = dir_fd
        try:
            self._lock_file()
        except BaseException:
            self._unlock_dir()
            raise

    def _lock_file(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        # A reader (engine_alive) may hold a shared lock for a moment: retry briefly.
        for _ in range(10):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                time.sleep(0.05)
        else:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise LockedError(
                f"another engine (pid {holder}) is running on {self.path.parent}"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        self._unlock_dir()

    def _unlock_dir(self) -> None:
        if self._dir_fd is not None:
            fcntl.flock(self._dir_fd, fcntl.LOCK_UN)
            os.close(self._dir_fd)
            self._dir_fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def engine_alive(run_dir: Path) -> bool:
    """True when some engine holds the run (readers use this to tell 'not running')."""
    try:
        fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return False
    try:
        return not _try_lock(fd, fcntl.LOCK_SH, release=True)
    finally:
        os.close(fd)


def _try_lock(fd: int, kind: int, release: bool = False) -> bool:
    """Take the flock ``kind`` without blocking (a reader's shared lock may hold it for a
    moment, so retry briefly); False when someone else holds it."""
    for _ in range(10):
        try:
            fcntl.flock(fd, kind | fcntl.LOCK_NB)
        except BlockingIOError:
            time.sleep(0.05)
            continue
        if release:
            fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    return False
