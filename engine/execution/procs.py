"""Processes as /proc shows them, and signals that cannot hit a recycled pid.

A pid alone does not name a process: once it exits, the kernel may hand the number to
another one. (pid, start time) does, and a pidfd pins the process while it is checked,
so ``kill_exact`` signals exactly the process that was seen, or nothing.

Imported by the evaluator's supervisor (``engine/execution/supervisor.py``, a fresh interpreter per
evaluation), so it keeps to cheap modules: no dataclasses, no pathlib.
"""

from __future__ import annotations

import _signal as signal  # the C module: ``signal`` imports enum, 4 ms the supervisor saves
import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

PROC = "/proc"
_PF_EXITING = 0x4  # task flag (field 9 of /proc/PID/stat)


class Proc:
    """One process as /proc shows it. ``start`` is in clock ticks since boot;
    ``exiting``: the kernel is already tearing it down (PF_EXITING)."""

    __slots__ = ("pid", "ppid", "pgid", "sid", "start", "state", "exiting")

    def __init__(
        self,
        pid: int,
        ppid: int,
        pgid: int,
        sid: int,
        start: int,
        state: str,
        exiting: bool = False,
    ) -> None:
        self.pid, self.ppid, self.pgid, self.sid = pid, ppid, pgid, sid
        self.start, self.state, self.exiting = start, state, exiting

    def __repr__(self) -> str:
        return (
            f"Proc(pid={self.pid}, ppid={self.ppid}, pgid={self.pgid}, sid={self.sid}, "
            f"start={self.start}, state={self.state!r}, exiting={self.exiting})"
        )


def read_proc(pid: int) -> Proc | None:
    try:
        with open(f"{PROC}/{pid}/stat", "rb") as f:
            raw = f.read()
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


def now_ticks() -> int:
    """Now, in the unit of ``Proc.start``: clock ticks since boot."""
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * os.sysconf("SC_CLK_TCK"))


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


def descendants(root: int, procs: dict[int, Proc]) -> list[Proc]:
    """Live processes below ``root`` (not ``root`` itself)."""
    children: dict[int, list[int]] = {}
    for proc in procs.values():
        children.setdefault(proc.ppid, []).append(proc.pid)
    found, stack = [], [root]
    while stack:
        for pid in children.get(stack.pop(), []):
            if pid != root and alive(procs[pid]):
                found.append(procs[pid])
                stack.append(pid)
    return found


def stop_and_kill(find: Callable[[dict[int, Proc]], Iterable[Proc]], seconds: float) -> list[int]:
    """SIGSTOP every process ``find`` picks until a /proc scan picks nothing new, then
    SIGKILL them all and wait (a second at most) until they are dead. A stopped process
    cannot fork, so each scan can only add processes the previous one missed, and the set
    closes even against a fork bomb. Returns the pids killed."""
    deadline = time.monotonic() + seconds
    stopped: dict[int, int] = {}
    while True:
        new = [p for p in find(snapshot()) if stopped.get(p.pid) != p.start]
        held = 0
        for proc in new:
            if kill_exact(proc.pid, proc.start, signal.SIGSTOP):
                stopped[proc.pid] = proc.start
                held += 1
        if not new or time.monotonic() > deadline:
            break
        if not held:  # exiting, or not ours to stop: look again in a moment
            time.sleep(0.005)
    killed = {p: start for p, start in stopped.items() if kill_exact(p, start, signal.SIGKILL)}
    settle = time.monotonic() + 1.0  # dead (a zombie at most) before the caller reaps
    while any(same_process(pid, start) for pid, start in killed.items()):
        if time.monotonic() > settle:
            break
        time.sleep(0.002)
    return list(killed)
