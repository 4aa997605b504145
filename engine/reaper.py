"""No process outlives its evaluation: tag, sweep, and clean up after a killed engine.

Killing an evaluator's process group is not enough: a candidate can ``setsid()`` and
double-fork into a process that belongs to no group of ours and is re-parented away.
Three things close that gap:

* **A token.** Every evaluation gets a random token in ``$ASI_EVOLVE_EVAL_TOKEN``; every
  process it starts inherits it, ``setsid`` and double forks included. After the
  evaluation the engine scans ``/proc`` and kills every process carrying the token, their
  descendants, and what is left in the evaluator's session and group (these ids cannot be
  handed to a new process while a member lives), repeating until none is left. A process
  is identified by (pid, start time) and signalled through a pidfd, so a pid recycled in
  between is never hit.
* **A child subreaper** (``prctl(PR_SET_CHILD_SUBREAPER)``): orphans are re-parented to
  the engine instead of init, so the engine can reap the ones it killed.
* **Markers.** Before an evaluator starts, ``RUN_DIR/evaluators/<token>.json`` records the
  token, the boot and the engine; it is removed after the sweep. An engine killed with
  SIGKILL leaves its markers, and the next engine (holding the run lock) kills what they
  name with ``kill_orphans`` before it evaluates anything. The markers live outside the
  node's work dir, which the sandbox leaves read-only, so an evaluator cannot forge one.

Limit without a PID-namespace sandbox: a process that calls ``setsid``, clears its
environment *and* outlives its parent before the sweep carries no mark left to find.
Under bubblewrap (``engine/sandbox.py``) the PID namespace dies with the evaluation, so
nothing survives there at all.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

from engine.procs import PROC, Proc, alive, kill_exact, read_proc, same_process, snapshot

log = logging.getLogger(__name__)

TOKEN_ENV = "ASI_EVOLVE_EVAL_TOKEN"
MARKERS_DIR = "evaluators"
PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37
SWEEP_SECONDS = 2.0  # a fork bomb outrunning the sweep this long is left to the next one


# ---------------------------------------------------------------------- subreaper
def _prctl(option: int, arg: object) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.restype = ctypes.c_int
    return int(libc.prctl(option, arg, 0, 0, 0))


def set_subreaper(enabled: bool = True) -> bool:
    """Make this process a child subreaper (or stop being one); False where unsupported."""
    try:
        return _prctl(PR_SET_CHILD_SUBREAPER, int(enabled)) == 0
    except (OSError, AttributeError):
        return False


def is_subreaper() -> bool:
    value = ctypes.c_int(0)
    try:
        if _prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(value)) != 0:
            return False
    except (OSError, AttributeError):
        return False
    return bool(value.value)


def become_subreaper() -> bool:
    """Call once at engine start: orphans of evaluators come back to this process."""
    ok = set_subreaper(True)
    if not ok:
        log.warning("cannot become a child subreaper; escaped processes go to init")
    return ok


@contextlib.contextmanager
def subreaper() -> Iterator[bool]:
    """Be a subreaper inside the block and restore the previous setting after it
    (an in-process caller, e.g. a test, must not adopt the orphans of later code)."""
    before = is_subreaper()
    ok = set_subreaper(True)
    try:
        yield ok
    finally:
        if not before:
            set_subreaper(False)


def token_of(pid: int) -> str | None:
    """The evaluation token in ``pid``'s environment, if any (unreadable: None)."""
    try:
        environ = (PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return None
    prefix = f"{TOKEN_ENV}=".encode()
    for item in environ.split(b"\0"):
        if item.startswith(prefix):
            return item[len(prefix) :].decode(errors="replace")
    return None


def targets(token: str, procs: dict[int, Proc], leader: int | None = None) -> list[Proc]:
    """Live processes of the evaluation ``token``: the token's carriers, their descendants,
    and members of the leader's session or group, minus anything of another evaluation
    and this process's own ancestry."""
    protected = _ancestry(os.getpid(), procs)
    marked = {pid: token_of(pid) for pid in procs}
    found = {
        pid
        for pid, proc in procs.items()
        if alive(proc)
        and (marked[pid] == token or (leader is not None and leader in (proc.sid, proc.pgid)))
    }
    children: dict[int, list[int]] = {}
    for proc in procs.values():
        children.setdefault(proc.ppid, []).append(proc.pid)
    stack = list(found)
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found and alive(procs[child]):
                found.add(child)
                stack.append(child)
    return [
        procs[pid]
        for pid in sorted(found)
        if pid not in protected and marked.get(pid) in (None, token)
    ]


def _ancestry(pid: int, procs: dict[int, Proc]) -> set[int]:
    chain = set()
    while pid > 0 and pid not in chain:
        chain.add(pid)
        pid = procs[pid].ppid if pid in procs else 0
    return chain


def sweep_token(token: str, leader: int | None = None, seconds: float = SWEEP_SECONDS) -> list[int]:
    """SIGKILL every process of evaluation ``token`` until none is left (or time is up).

    Returns the pids signalled. Blocks for one /proc scan when nothing is left (the usual
    case), a few more when something was.
    """
    killed: list[int] = []
    deadline = time.monotonic() + seconds
    while True:
        found = targets(token, snapshot(), leader)
        if not found:
            return killed
        for proc in found:
            if kill_exact(proc.pid, proc.start):
                killed.append(proc.pid)
        if time.monotonic() > deadline:
            log.warning("evaluation %s: processes still spawning after %.1fs", token, seconds)
            return killed
        time.sleep(0.005)


def reap(pids: set[int]) -> set[int]:
    """Collect the exit status of those ``pids`` that are our (adopted) children and dead.

    Only pids we killed as escaped processes are passed here, never an evaluator that
    asyncio waits for, so no one else's exit status is taken. Returns the ones still owed.
    """
    owed = set()
    for pid in pids:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not our child (re-parented to init) or already reaped
            continue
        if done == 0:
            owed.add(pid)
    return owed


# ------------------------------------------------------------------ per evaluation
def _boot_id() -> str:
    try:
        return (PROC / "sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


class Reaper:
    """Tags the evaluations of one engine and sweeps each one when it ends.

    ``run_dir``: where markers are kept for ``kill_orphans``; None keeps no markers
    (tests, one-off callers). Use: ``token = begin(workdir)`` before spawning (put
    ``{TOKEN_ENV: token}`` in the evaluator's environment), ``spawned(token, pid)`` once
    it runs, ``finish(token)`` after its process group was killed.
    """

    def __init__(self, run_dir: Path | None = None) -> None:
        self.marker_dir = Path(run_dir) / MARKERS_DIR if run_dir is not None else None
        self._leaders: dict[str, int] = {}
        self._owed: set[int] = set()  # killed adopted children not yet reaped
        me = read_proc(os.getpid())
        self._engine = {"pid": os.getpid(), "start": me.start if me else 0}

    def begin(self, workdir: Path) -> str:
        token = secrets.token_hex(12)
        self._write_marker(token, {"workdir": str(workdir)})
        return token

    def spawned(self, token: str, pid: int) -> None:
        self._leaders[token] = pid
        proc = read_proc(pid)
        if proc is not None:
            self._write_marker(token, {"pid": pid, "start": proc.start})

    def finish(self, token: str) -> int:
        """Kill whatever of evaluation ``token`` is still alive; returns how many."""
        leader = self._leaders.pop(token, None)
        killed = sweep_token(token, leader)
        if killed:
            log.warning("killed %d leftover process(es) of an evaluation", len(killed))
        # The leader is asyncio's child: never take its exit status from under it.
        self._owed = reap((self._owed | set(killed)) - {leader})
        if self.marker_dir is not None:
            with contextlib.suppress(OSError):
                (self.marker_dir / f"{token}.json").unlink()
        return len(killed)

    def _write_marker(self, token: str, extra: dict[str, object]) -> None:
        if self.marker_dir is None:
            return
        path = self.marker_dir / f"{token}.json"
        try:
            old = json.loads(path.read_text()) if path.exists() else {}
        except (OSError, ValueError):
            old = {}
        data = {"token": token, "boot_id": _boot_id(), "engine": self._engine, **old, **extra}
        self.marker_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)


def kill_orphans(run_dir: Path) -> int:
    """Kill the evaluators a previous, dead engine of ``run_dir`` left running.

    Call with the run lock held, before anything is evaluated (new run or resume). A
    marker of another boot is stale; one whose engine still lives is left alone (that
    engine owns it). Returns how many processes were killed.
    """
    marker_dir = Path(run_dir) / MARKERS_DIR
    if not marker_dir.is_dir():
        return 0
    boot, total = _boot_id(), 0
    for path in sorted(marker_dir.glob("*.json")):
        try:
            data = json.loads(path.read_text())
            token = str(data["token"])
            engine = data.get("engine") or {}
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("ignoring unreadable evaluator marker %s", path.name)
            continue
        if data.get("boot_id") == boot:
            if same_process(int(engine.get("pid", 0)), int(engine.get("start", -1))):
                log.warning("evaluator marker %s belongs to a live engine", path.name)
                continue
            leader = data.get("pid")
            verified = leader is not None and same_process(int(leader), int(data.get("start", -1)))
            killed = sweep_token(token, int(leader) if verified else None)
            total += len(killed)
        with contextlib.suppress(OSError):
            path.unlink()
    return total
