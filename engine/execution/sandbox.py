"""Evaluators run in an OS sandbox, so a candidate cannot destroy or forge its run.

A candidate program is untrusted code: without confinement it can delete
``../../evolve.db``, rewrite other nodes' results or the task's evaluator, read the
engine's environment (API keys) through ``/proc``, or stop and kill the engine. Two ways:

* ``bwrap`` (bubblewrap): the evaluator sees the whole file system read-only, a fresh
  ``/proc`` of its own PID namespace (the engine is invisible and cannot be signalled),
  the host ``/dev`` (GPU jobs need ``/dev/nvidia*``), and write access only to its node's
  work dir and the configured extra paths. The namespace dies with the evaluation, so no
  process of it can survive, however it forks. It needs user namespaces (or root).
* the **fallback** where bubblewrap is missing (config value ``landlock``): the
  evaluator's supervisor (``engine/execution/supervisor.py``) with every layer this machine allows,
  chosen by a trial run (``fallback_layers``): a PID namespace with its own ``/proc`` (the
  engine is out of sight and out of reach; everything dies with the evaluation), a mount
  namespace in which everything but the evaluator's own paths is mounted read-only (no
  ``chmod``, rename or delete of the run), a user namespace where the engine is not root,
  and Landlock (``engine/execution/landlock.py``): writes only to the evaluator's paths and an
  explicit list of devices, and from Linux 6.12 no signal or abstract-socket connection
  beyond the evaluation. Root evaluators lose every capability. In a run the supervisor
  is forked from one small server (``engine/execution/launcher.py``), not started as an
  interpreter per evaluation; with a PID namespace no reaper sweep is needed either
  (``contains_all``). Whatever the chosen layers
  cannot stop on this machine is said in ``describe()``.

Both: writable = the work dir (``TMPDIR`` is ``WORKDIR/.tmp``), the extra paths of
``engineer.sandbox_writable`` (default ``~/.cache``, for model and dataset caches) and
devices (bwrap: all of ``/dev``; the fallback: null, zero, full, random, urandom, tty and
GPU/accelerator nodes, and ``/dev/shm`` unless the run or task dir is inside it);
the run and task directories stay read-only even when a writable path contains them
(bubblewrap re-mounts them read-only; Landlock cannot carve them out, so the fallback
refuses such a path). The network is left as it is unless ``sandbox_network: false``
(bubblewrap only). ``auto`` takes bubblewrap, then the fallback, then none, and says which.
With ``none`` the evaluator still runs under the supervisor, which kills everything it
leaves behind, but nothing else is kept from it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from engine.execution import landlock, namespaces
from engine.execution.namespaces import Layers, shm_holds

KINDS = ("auto", "bwrap", "landlock", "none")
FALLBACK = "landlock"  # the config value (and resolved kind) of the fallback
TMP_NAME = ".tmp"
DEFAULT_WRITABLE = ("~/.cache",)
_PROBE_TIMEOUT = 20.0
PR_GET_DUMPABLE, PR_SET_DUMPABLE = 3, 4
_TRIALS: dict[tuple[str, bool, int], str] = {}  # (kind, network, euid) -> reason ("" works)
_LAYERS: dict[int, tuple[Layers | None, str]] = {}  # euid -> (fallback layers, reason)


class SandboxError(Exception):
    """The requested sandbox cannot be used here; the message is one line."""


@dataclass(frozen=True)
class SandboxSettings:
    """The ``engineer:`` knobs of the sandbox.

    kind: auto | bwrap | landlock (the fallback) | none.
    network: False cuts the evaluator off the network (bubblewrap's --unshare-net).
    writable: extra paths the evaluator may write (``~`` expanded; created if missing).
    """

    kind: str = "auto"
    network: bool = True
    writable: tuple[str, ...] = DEFAULT_WRITABLE


@dataclass(frozen=True)
class Sandbox:
    """How every evaluator command of a run is confined.

    kind: bwrap | landlock (the fallback) | none (resolved, never auto).
    readonly: directories kept read-only whatever ``writable`` says (run dir, task dir).
    writable: extra writable directories (absolute, existing).
    network: whether the evaluator keeps the host network.
    note: why this kind was chosen, for the run's event log.
    layers: the fallback's namespaces and Landlock ABI on this machine.
    shm: the fallback's /dev/shm: "private" (a tmpfs of its own), "host" or "closed".
    """

    kind: str
    readonly: tuple[Path, ...] = ()
    writable: tuple[Path, ...] = ()
    network: bool = True
    note: str = ""
    layers: Layers | None = None
    shm: str = "closed"

    def wrap(
        self, argv: list[str], workdir: Path, rlimits: Iterable[tuple[int, int, int]] = ()
    ) -> list[str]:
        """``argv`` as spawned: under the supervisor of ``engine/execution/supervisor.py`` (the
        fallback and none), which applies ``rlimits`` (resource, soft, hard) to the command
        itself, or under bubblewrap (itself under a supervisor without layers when there are
        rlimits to apply). Creates the work dir's private temp dir."""
        workdir = Path(workdir).resolve()
        if self.kind == "none":
            return namespaces.command(argv, Layers(), rlimits=rlimits)
        (workdir / TMP_NAME).mkdir(exist_ok=True)
        if self.kind == "bwrap":
            confined = bwrap_argv(argv, workdir, self.readonly, self.writable, self.network)
            # rlimits through a supervisor too: a preexec_fn would fork the engine.
            return namespaces.command(confined, Layers(), rlimits=rlimits) if rlimits else confined
        layers = self.layers or fallback_layers()[0]
        if layers is None:  # never the fallback's name without its confinement
            raise SandboxError(f"the fallback sandbox does not work here: {fallback_layers()[1]}")
        shm = self.shm
        if shm == "private" and not layers.mount:
            shm = "host"
        return namespaces.command(
            argv, layers, self.readonly, [workdir, *self.writable], shm, rlimits
        )

    @property
    def contains_all(self) -> bool:
        """Whether nothing the evaluator starts can outlive it, by the kernel's rules: under
        bubblewrap it runs in a PID namespace whose init ends with it (every process in it
        is killed then) and dies with the engine (``--die-with-parent``), so neither a
        ``setsid`` nor a double fork escapes and no reaper sweep or marker is needed. The
        fallback with a PID namespace holds the same way: its init ends with the evaluator,
        and its supervisor, which dies with the engine, kills init first."""
        if self.kind == FALLBACK:
            layers = self.layers or fallback_layers()[0]
            return layers is not None and layers.pid
        return self.kind == "bwrap"

    @property
    def supervised(self) -> bool:
        """Whether ``wrap`` always puts the supervisor in front (bubblewrap's own PID
        namespace and --die-with-parent already end everything with the evaluation)."""
        return self.kind != "bwrap"

    def env(self, workdir: Path) -> dict[str, str]:
        """Environment the confined command needs (its temp dir inside the work dir)."""
        if self.kind == "none":
            return {}
        tmp = str(Path(workdir).resolve() / TMP_NAME)
        return {"TMPDIR": tmp, "TMP": tmp, "TEMP": tmp}

    def describe(self) -> str:
        """One line for the run's start: what confines evaluators and what it cannot stop."""
        if self.kind == "none":
            return (
                f"sandbox: none - evaluators can write anywhere the engine can and signal it "
                f"(a supervisor still kills all they leave behind) ({self.note})"
            )
        net = "" if self.network else ", no network"
        extra = ", ".join(str(p) for p in self.writable) or "nothing else"
        if self.kind == "bwrap":
            return f"sandbox: bwrap (writable: node work dir, /dev, {extra}{net}) - {self.note}"
        layers = self.layers or Layers()
        shm = {"private": "a private /dev/shm", "host": "/dev/shm"}.get(
            self.shm, "not /dev/shm (it holds the run)"
        )
        gaps = "; ".join(
            layers.gaps() + ["read what the user can read (key files too)", "use the network"]
        )
        return (
            f"sandbox: fallback ({layers.describe()}; writable: node work dir, null/tty/GPU "
            f"devices, {shm}, {extra}) - {self.note}; cannot stop: {gaps}"
        )


def bwrap_argv(
    argv: list[str],
    workdir: Path,
    readonly: tuple[Path, ...] = (),
    writable: tuple[Path, ...] = (),
    network: bool = True,
) -> list[str]:
    """The bubblewrap command line. Later mounts win: extras, then read-only, then work."""
    cmd = ["bwrap", "--die-with-parent", "--unshare-pid"]
    if not network:
        cmd.append("--unshare-net")
    cmd += ["--ro-bind", "/", "/", "--dev-bind", "/dev", "/dev", "--proc", "/proc"]
    for path in writable:
        cmd += ["--bind", str(path), str(path)]
    for path in readonly:
        cmd += ["--ro-bind", str(path), str(path)]
    cmd += ["--bind", str(workdir), str(workdir), "--chdir", str(workdir), "--", *argv]
    return cmd


# ------------------------------------------------------------------ detection
def probe(kind: str, network: bool = True) -> str:
    """Why ``kind`` cannot confine a command here, or "" when a trial run worked.

    The answer is kept for the life of the process (a Ray worker resolves its sandbox for
    every stage run)."""
    key = (kind, network, os.geteuid())
    if key not in _TRIALS:
        _TRIALS[key] = _probe(kind, network)
    return _TRIALS[key]


def _probe(kind: str, network: bool) -> str:
    if kind == "bwrap":
        if shutil.which("bwrap") is None:
            return "bwrap is not installed"
        with tempfile.TemporaryDirectory(prefix="asi-evolve-sandbox-") as tmp:
            argv = Sandbox(kind, network=network).wrap(
                ["/bin/sh", "-c", "echo ok > probe"], Path(tmp)
            )
            return _trial(argv, Path(tmp), kind)
    if kind == FALLBACK:
        if not network:
            return "the fallback cannot cut the network off (sandbox_network: false needs bwrap)"
        return fallback_layers()[1]
    return f"unknown sandbox {kind!r}"


def _trial(argv: list[str], work: Path, kind: str) -> str:
    try:
        done = subprocess.run(
            argv,
            cwd=work,
            capture_output=True,
            text=True,
            timeout=_PROBE_TIMEOUT,
            start_new_session=True,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{kind} trial run failed: {_one_line(str(exc))}"
    if done.returncode != 0 or not (work / "probe").is_file():
        why = _one_line(done.stderr) or f"exit code {done.returncode}"
        return f"{kind} trial run failed: {why}"
    return ""


def fallback_layers() -> tuple[Layers | None, str]:
    """The strongest layers of the fallback that work here, or None and why none does.

    Tried in order: mount + PID namespaces, then mount alone (each with a user namespace
    unless root; root tries without one first), then Landlock alone, which is required.
    Kept for the life of the process."""
    key = os.geteuid()
    if key in _LAYERS:
        return _LAYERS[key]
    abi = landlock.abi_version()
    if abi < 1:
        _LAYERS[key] = (None, "Landlock is not supported by this kernel (Linux >= 5.13)")
        return _LAYERS[key]
    if key == 0:  # root: no user namespace needed, but a container may still want one
        tries = [Layers(False, True, True, abi), Layers(True, True, True, abi)]
        tries += [Layers(False, True, False, abi), Layers(True, True, False, abi)]
    else:
        tries = [Layers(True, True, True, abi), Layers(True, True, False, abi)]
    reasons = []
    for layers in [*tries, Layers(landlock=abi)]:
        with tempfile.TemporaryDirectory(prefix="asi-evolve-sandbox-") as tmp:
            run = Path(tmp).resolve() / "run"
            work = run / "work"
            work.mkdir(parents=True)
            box = Sandbox(FALLBACK, readonly=(run,), layers=layers, shm="private")
            argv = box.wrap(["/bin/sh", "-c", "echo ok > probe"], work)
            why = _trial(argv, work, f"{FALLBACK} ({layers.describe()})")
        if not why:
            _LAYERS[key] = (layers, "")
            return _LAYERS[key]
        reasons.append(why)
    _LAYERS[key] = (None, "; ".join(dict.fromkeys(reasons)))
    return _LAYERS[key]


def choose(kind: str, network: bool = True) -> tuple[str, str]:
    """The kind to use and why; raises SandboxError when the requested one cannot work."""
    if kind not in KINDS:
        raise SandboxError(f"engineer.sandbox must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind == "none":
        return "none", "engineer.sandbox: none"
    if kind != "auto":
        reason = probe(kind, network)
        if reason:
            raise SandboxError(f"engineer.sandbox: {kind} is not available here: {reason}")
        return kind, f"engineer.sandbox: {kind}"
    reasons = []
    for candidate in ("bwrap", FALLBACK):
        reason = probe(candidate, network)
        if not reason:
            if reasons:  # bubblewrap is not there: say why the fallback was taken
                return candidate, f"auto: {'; '.join(reasons)}; the fallback works here"
            return candidate, f"auto: {candidate} works here"
        reasons.append(reason)
    if not network:
        raise SandboxError(
            "engineer.sandbox_network: false needs a working bwrap: " + "; ".join(reasons)
        )
    return "none", "auto: no sandbox available (" + "; ".join(reasons) + ")"


def make_sandbox(settings: SandboxSettings, run_dir: Path, task_dir: Path | None = None) -> Sandbox:
    """Resolve ``settings`` for a run; raises SandboxError with a one-line reason."""
    kind, note = choose(settings.kind, settings.network)
    readonly = tuple(Path(p).resolve() for p in (run_dir, task_dir) if p is not None)
    writable = []
    for raw in settings.writable:
        path = Path(os.path.expandvars(os.path.expanduser(raw)))
        if not path.is_absolute():
            raise SandboxError(f"engineer.sandbox_writable: {raw!r} is not an absolute path")
        if kind == "none":  # everything is writable anyway: create nothing
            continue
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SandboxError(f"engineer.sandbox_writable: cannot create {path}: {exc}") from None
        path = path.resolve()
        if kind == FALLBACK:
            for kept in readonly:
                if kept == path or path in kept.parents:
                    raise SandboxError(
                        f"engineer.sandbox_writable: {path} holds {kept}, which must stay "
                        "read-only (Landlock cannot exclude it; use bwrap or a narrower path)"
                    )
        writable.append(path)
    if kind != FALLBACK:
        return Sandbox(kind, readonly, tuple(writable), settings.network, note)
    layers, _ = fallback_layers()
    if shm_holds(readonly):
        shm = "closed"  # writable, it would let the evaluator delete the run
    elif shm_holds(writable):
        shm = "closed"  # the extra path under it stays writable by its own rule
    else:
        shm = "private" if layers is not None and layers.mount else "host"
    return Sandbox(kind, readonly, tuple(writable), settings.network, note, layers, shm)


@contextlib.contextmanager
def private_memory() -> Iterator[bool]:
    """Inside the block this process is not dumpable, as ssh-agent does for its keys.

    Then ``/proc/<engine>/environ``, ``maps`` and ``mem`` (where the API keys live) are
    closed to other processes of the same user unless they hold CAP_SYS_PTRACE: the
    evaluators under Landlock or no sandbox, where the engine's /proc is visible. Children
    are dumpable again after exec, so the reaper can still read theirs. Restored after.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        before = libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0)
        ok = before >= 0 and libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0
    except (OSError, AttributeError):
        before, ok = -1, False
    try:
        yield ok
    finally:
        if ok and before > 0:
            libc.prctl(PR_SET_DUMPABLE, before, 0, 0, 0)


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= 200 else line[:197] + "..."
