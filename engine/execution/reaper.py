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
  between is never hit. A supervisor (below) that exited with a code has already killed
  and reaped all of its evaluation, so that scan is skipped (``finish(clean=True)``).
* **A child subreaper** (``prctl(PR_SET_CHILD_SUBREAPER)``): orphans are re-parented to
  the engine instead of init, so the engine can reap the ones it killed.
* **Markers.** Before an evaluator starts, ``RUN_DIR/evaluators/<token>.json`` records the
  token, the boot and the engine; it is removed after the sweep. An engine killed with
  SIGKILL leaves its markers, and the next engine (holding the run lock) kills what they
  name with ``kill_orphans`` before it evaluates anything. The markers live outside the
  node's work dir, which the sandbox leaves read-only, so an evaluator cannot forge one.

A process that calls ``setsid``, clears its environment *and* outlives its parent carries
no mark left to find. Such an escapee is caught by the structure instead: under bubblewrap
and the fallback sandbox with a PID namespace (``engine/execution/sandbox.py``) the namespace dies
with the evaluation; otherwise (``none``, a fallback without PID namespaces) the evaluator
runs under a supervisor that is a subreaper of its own (``engine/execution/supervisor.py``), so the
escapee becomes the supervisor's child and dies with the rest. Should the supervisor itself
be killed, the orphans come to the engine (a subreaper too): after each evaluation and when
the ``subreaper()`` block ends, children of the engine that started a session of their own
and are no evaluator in flight are killed with everything below them (``adopted``).
Sweeps freeze before they kill (SIGSTOP, rescan, then SIGKILL), so a fork bomb cannot
outrun them.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import secrets
import time
from collections.abc import Collection, Iterator
from pathlib import Path

from engine.execution.procs import (  # noqa: F401 - kill_exact and snapshot: used through this module
    Proc,
    alive,
    descendants,
    kill_exact,
    now_ticks,
    read_proc,
    same_process,
    snapshot,
    stop_and_kill,
)

log = logging.getLogger(__name__)

TOKEN_ENV = "ASI_EVOLVE_EVAL_TOKEN"
MARKERS_DIR = "evaluators"
PROC = Path("/proc")
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
    (an in-process caller, e.g. a test, must not adopt the orphans of later code).
    Leaving it kills the orphans adopted meanwhile (see ``adopted``)."""
    before = is_subreaper()
    since = now_ticks()
    ok = set_subreaper(True)
    try:
        yield ok
    finally:
        if ok:
            owed = set(kill_adopted(since))
            deadline = time.monotonic() + 1.0
            while owed and time.monotonic() < deadline:  # none is left a zombie
                owed = reap(owed)
                time.sleep(0.01 if owed else 0)
        if not before:
            set_subreaper(False)


def adopted(
    procs: dict[int, Proc], since: int, keep: Collection[int] = (), dead: bool = False
) -> list[Proc]:
    """Orphans this subreaper adopted, and everything below them: children that started a
    session of their own (an escape starts with ``setsid``; the engine's own helpers, such
    as a local Ray cluster or the fork server, stay in its session) at or after ``since``
    (clock ticks), minus ``keep`` (evaluators in flight, whose supervisors are session
    leaders too). ``dead``: instead, the adopted children that are zombies already (an
    escapee's exited parent, an evaluator killed with its supervisor), to reap, whenever
    they started (one that came to us after an earlier evaluation's sweep is taken by the
    next one)."""
    me = procs.get(os.getpid())
    if me is None:
        return []
    found: list[Proc] = []
    for proc in procs.values():
        if proc.ppid == me.pid and proc.pid not in keep and proc.sid != me.sid:
            if dead and proc.state == "Z":
                found.append(proc)
            elif not dead and proc.start >= since and alive(proc):
                found.append(proc)
                found += descendants(proc.pid, procs)
    return found


def kill_adopted(since: int, keep: Collection[int] = ()) -> list[int]:
    """Freeze and kill what ``adopted`` finds (the caller reaps: an evaluator's supervisor
    may be among them, and its exit status is asyncio's)."""
    killed = stop_and_kill(lambda procs: adopted(procs, since, keep), SWEEP_SECONDS)
    if killed:
        log.warning("killed %d orphaned evaluator process(es)", len(killed))
    return killed


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


def targets(token: str | None, procs: dict[int, Proc], leader: int | None = None) -> list[Proc]:
    """Live processes of the evaluation ``token``: the token's carriers, their descendants,
    and members of the leader's session or group (and so the leader itself and everything
    below it), minus anything of another evaluation and this process's own ancestry.
    ``token`` None: by the leader alone."""
    protected = _ancestry(os.getpid(), procs)
    marked = {pid: token_of(pid) for pid in procs}
    found = {
        pid
        for pid, proc in procs.items()
        if alive(proc)
        and (
            (token is not None and marked[pid] == token)
            or (leader is not None and leader in (proc.sid, proc.pgid))
        )
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


def sweep_token(
    token: str | None, leader: int | None = None, seconds: float = SWEEP_SECONDS
) -> list[int]:
    """Freeze, then SIGKILL, every process of evaluation ``token`` (see ``targets``).

    Returns the pids killed. Blocks for one /proc scan when nothing is left (the usual
    case), a few more when something was.
    """
    return stop_and_kill(lambda procs: targets(token, procs, leader), seconds)


def reap(pids: set[int], wait: float = 0.05) -> set[int]:
    """Collect the exit status of those ``pids`` that are our (adopted) children and dead.

    Only pids we killed as escaped processes are passed here, never an evaluator that
    asyncio waits for, so no one else's exit status is taken. A SIGKILL takes effect
    asynchronously (on a loaded machine a killed child was still dying when reaped at once,
    and stayed a zombie until the next evaluation ended), so this polls for up to ``wait``
    seconds. Returns the ones still owed (reaped after a later evaluation).
    """
    owed = set(pids)
    deadline = time.monotonic() + wait
    while owed:
        for pid in list(owed):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # not our child (re-parented to init) or already reaped
                done = pid
            if done != 0:
                owed.discard(pid)
        if not owed or time.monotonic() >= deadline:
            break
        time.sleep(0.001)
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
        # An engine (with a run dir) owns its children: orphans it adopted are killed.
        self.owns_children = run_dir is not None
        self._leaders: dict[str, int] = {}
        self._starts: dict[str, int] = {}
        self._pending: set[str] = set()  # begun, not yet spawned: a child not known yet
        self._owed: set[int] = set()  # killed adopted children not yet reaped
        # Whether orphans may have come to us that no sweep has looked for: a new reaper
        # cannot know what an earlier one left, so its first sweep looks.
        self._adopt_owed = True
        self._markers: dict[str, dict[str, object]] = {}  # what each marker file holds
        self._dir_made = False
        self._boot = _boot_id()
        me = read_proc(os.getpid())
        self._engine = {"pid": os.getpid(), "start": me.start if me else 0}

    def begin(self, workdir: Path) -> str:
        token = secrets.token_hex(12)
        self._pending.add(token)
        self._write_marker(token, {"workdir": str(workdir)})
        return token

    def spawned(self, token: str, pid: int) -> None:
        self._pending.discard(token)
        self._leaders[token] = pid
        proc = read_proc(pid)
        if proc is not None:
            self._starts[token] = proc.start
            self._write_marker(token, {"pid": pid, "start": proc.start})

    def finish(self, token: str, clean: bool = False) -> int:
        """Kill whatever of evaluation ``token`` is still alive; returns how many.

        ``clean``: its supervisor exited with a code, which it does only once every process
        of the evaluation is dead and reaped (``engine/execution/supervisor.py``). Then no
        process carries the token and the /proc scan is skipped, unless orphans of an
        earlier evaluation whose supervisor was killed may still be about (``_adopt_owed``).
        """
        self._pending.discard(token)
        leader = self._leaders.pop(token, None)
        start = self._starts.pop(token, None)
        # Orphans of a supervisor that was itself killed came to us: found in the same
        # /proc scan (one scan per evaluation, not two).
        adopt = self.owns_children and start is not None and not self._pending
        if clean and not (adopt and self._adopt_owed):
            self._drop_marker(token)
            return 0
        keep = set(self._leaders.values())

        dead: set[int] = set()  # adopted orphans that died on their own: zombies to reap
        seen_adopted: set[int] = set()

        def find(procs: dict[int, Proc]) -> list[Proc]:
            found = targets(token, procs, leader)
            if adopt and start is not None:
                seen = {p.pid for p in found}
                orphans = adopted(procs, start, keep)
                seen_adopted.update(p.pid for p in orphans)
                found += [p for p in orphans if p.pid not in seen]
                dead.update(p.pid for p in adopted(procs, start, keep | {leader}, dead=True))
            return found

        killed = stop_and_kill(find, SWEEP_SECONDS)
        if killed:
            log.warning("killed %d leftover process(es) of an evaluation", len(killed))
        # The leader is asyncio's child: never take its exit status from under it.
        self._owed = reap((self._owed | set(killed) | dead) - {leader})
        if killed and adopt and start is not None:  # rare: their dead children came to us now
            later = adopted(snapshot(), start, keep | {leader}, dead=True)
            self._owed = reap(self._owed | {p.pid for p in later})
        # An unclean end may leave orphans, or zombies that come to us later: the next
        # evaluations look for them until one finds none.
        if adopt:
            self._adopt_owed = not clean or bool(seen_adopted or dead or self._owed)
        else:
            self._adopt_owed = self._adopt_owed or not clean
        self._drop_marker(token)
        return len(killed)

    def _drop_marker(self, token: str) -> None:
        self._markers.pop(token, None)
        if self.marker_dir is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.marker_dir / f"{token}.json")

    def _write_marker(self, token: str, extra: dict[str, object]) -> None:
        if self.marker_dir is None:
            return
        data = self._markers.setdefault(
            token, {"token": token, "boot_id": self._boot, "engine": self._engine}
        )
        data.update(extra)
        path = self.marker_dir / f"{token}.json"
        tmp = self.marker_dir / f"{token}.tmp"
        if not self._dir_made:
            self.marker_dir.mkdir(parents=True, exist_ok=True)
            self._dir_made = True
        try:
            tmp.write_text(json.dumps(data))
        except FileNotFoundError:  # the directory was removed under us
            self.marker_dir.mkdir(parents=True, exist_ok=True)
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
