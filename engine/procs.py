"""Processes as /proc shows them, and signals that cannot hit a recycled pid.

A pid alone does not name a process: once it exits, the kernel may hand the number to
another one. (pid, start time) does, and a pidfd pins the process while it is checked,
so ``kill_exact`` signals exactly the process that was seen, or nothing.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
_PF_EXITING = 0x4  # task flag (field 9 of /proc/PID/stat)


@dataclass(frozen=True)
class Proc:
    """One process as /proc shows it. ``start`` is in clock ticks since boot;
    ``exiting``: the kernel is already tearing it down (PF_EXITING)."""

    pid: int
    ppid: int
    pgid: int
    sid: int
    start: int
    state: str
    exiting: bool = False


def read_proc(pid: int) -> Proc | None:
    try:
        raw = (PROC / str(pid) / "stat").read_bytes()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = raw[raw.rfind(b")") + 2 :].split()
    try:
        return Proc(
            pid,
            ppid=int(fields[1]),
            pgid=int(fields[2]),
            sid=int(fields[3]),
            start=int(fields[19]),
            state=fields[0].decode(),
            exiting=bool(int(fields[6]) & _PF_EXITING),
        )
    except (IndexError, ValueError):
        return None


def snapshot() -> dict[int, Proc]:
    procs: dict[int, Proc] = {}
    for entry in os.scandir(PROC):
        if entry.name.isdigit() and (proc := read_proc(int(entry.name))) is not None:
            procs[proc.pid] = proc
    return procs


def alive(proc: Proc) -> bool:
    return proc.state not in ("Z", "X") and not proc.exiting


def same_process(pid: int, start: int) -> bool:
    proc = read_proc(pid)
    return proc is not None and proc.start == start and alive(proc)


def kill_exact(pid: int, start: int, sig: int = signal.SIGKILL) -> bool:
    """Signal ``pid`` only if it is still the process that started at ``start``."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return False
    try:  # the pidfd pins the process: checking after opening cannot race a recycled pid
        if not same_process(pid, start):
            return False
        signal.pidfd_send_signal(fd, sig)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
