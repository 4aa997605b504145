"""One engine per run directory.

Two engines writing one run would interleave steps and double-spend GPU time, so the
engine holds an exclusive ``flock`` on ``RUN_DIR/engine.lock`` for its whole life, and
one on the run directory itself: deleting ``engine.lock`` (by hand, or by an evaluator
running without a sandbox) must not let a second engine in. The kernel drops both locks
when the process dies, so a crash never leaves them stale.
"""

from __future__ import annotations

import contextlib
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
            raise LockedError(holder_message(self.path.parent))
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
            os.close(fd)
            raise LockedError(holder_message(self.path.parent)) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        """Unlock, and remove the lock file: nothing is left in a directory we were refused
        or failed in. (Exclusion rests on the directory's lock, which we still hold here.)"""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
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


def lock_holder(run_dir: Path) -> int | None:
    """The pid the engine wrote into its lock file, if an engine holds the run."""
    if not engine_alive(run_dir):
        return None
    try:
        text = (Path(run_dir) / LOCK_NAME).read_text(errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def flock_holders(path: Path) -> list[int]:
    """Pids holding a flock on ``path`` according to ``/proc/locks`` (empty where unknown)."""
    try:
        info = os.stat(path)
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return []
    device = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    pids = []
    for line in lines:
        fields = line.split()
        ours = len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == device
        if ours and fields[4].isdigit():
            pids.append(int(fields[4]))
    return pids


def holder_message(run_dir: Path) -> str:
    """Why the run directory is taken, in one line: an engine, or a process that is not one
    (e.g. an evaluator that escaped and took a lock: it must be stopped by hand)."""
    run_dir = Path(run_dir)
    try:
        recorded = (run_dir / LOCK_NAME).read_text(errors="replace").strip()
    except OSError:
        recorded = ""
    holders = [pid for pid in flock_holders(run_dir) if pid != os.getpid()]
    engines = [pid for pid in holders if str(pid) == recorded or _looks_like_engine(pid)]
    if holders and not engines:
        pid = holders[0]
        return (
            f"{run_dir} is locked by pid {pid} ({_command_of(pid)}), which is not an "
            f"ASI-Evolve engine of this run; stop it (kill {pid}) and try again"
        )
    pid = str(engines[0]) if engines else recorded
    engine = f" (pid {pid})" if pid.isdigit() else ""
    return f"another engine is running on {run_dir}{engine}"


def _looks_like_engine(pid: int) -> bool:
    """An ``asi-evolve`` process (a courtesy for the message: it decides nothing)."""
    command = _command_of(pid)
    return "asi-evolve" in command or "engine.cli" in command


def _command_of(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "command unknown"
    text = " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)
    return text[:80] or "command unknown"


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
