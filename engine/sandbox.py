"""Evaluators run in an OS sandbox, so a candidate cannot destroy or forge its run.

A candidate program is untrusted code: without confinement it can delete
``../../evolve.db``, rewrite other nodes' results or the task's evaluator, or read the
engine's environment (API keys) through ``/proc``. Two maintained tools do the work:

* ``bwrap`` (bubblewrap): the evaluator sees the whole file system read-only, a fresh
  ``/proc`` of its own PID namespace (the engine is invisible and cannot be signalled),
  the host ``/dev`` (GPU jobs need ``/dev/nvidia*``), and write access only to its node's
  work dir and the configured extra paths. The namespace dies with the evaluation, so no
  process of it can survive, however it forks. It needs user namespaces (or root).
* Landlock (Linux >= 5.13, through the ``landlock`` package): the same file-system rule,
  applied by a tiny wrapper (this file run as a script) that restricts itself and execs
  the command. Landlock cannot hide ``/proc``, but it refuses ptrace-class access to
  processes outside the sandbox, so ``/proc/<engine>/environ`` is unreadable.

Both: writable = the work dir (``TMPDIR`` is ``WORKDIR/.tmp``), ``/dev`` and
``engineer.sandbox_writable`` (default ``~/.cache``, for model and dataset caches); the
run and task directories stay read-only even when a writable path contains them
(bubblewrap re-mounts them read-only; Landlock cannot carve them out, so such a path is
refused). The network is left as it is unless ``sandbox_network: false`` (bubblewrap
only). ``auto`` takes bubblewrap, then Landlock, then none, and says which.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

KINDS = ("auto", "bwrap", "landlock", "none")
TMP_NAME = ".tmp"
DEFAULT_WRITABLE = ("~/.cache",)
_PROBE_TIMEOUT = 20.0
PR_GET_DUMPABLE, PR_SET_DUMPABLE = 3, 4


class SandboxError(Exception):
    """The requested sandbox cannot be used here; the message is one line."""


@dataclass(frozen=True)
class SandboxSettings:
    """The ``engineer:`` knobs of the sandbox.

    kind: auto | bwrap | landlock | none.
    network: False cuts the evaluator off the network (bubblewrap's --unshare-net).
    writable: extra paths the evaluator may write (``~`` expanded; created if missing).
    """

    kind: str = "auto"
    network: bool = True
    writable: tuple[str, ...] = DEFAULT_WRITABLE


@dataclass(frozen=True)
class Sandbox:
    """How every evaluator command of a run is confined.

    kind: bwrap | landlock | none (resolved, never auto).
    readonly: directories kept read-only whatever ``writable`` says (run dir, task dir).
    writable: extra writable directories (absolute, existing).
    network: whether the evaluator keeps the host network.
    note: why this kind was chosen, for the run's event log.
    """

    kind: str
    readonly: tuple[Path, ...] = ()
    writable: tuple[Path, ...] = ()
    network: bool = True
    note: str = ""

    def wrap(self, argv: list[str], workdir: Path) -> list[str]:
        """``argv`` confined to ``workdir``; creates the work dir's private temp dir."""
        if self.kind == "none":
            return list(argv)
        workdir = Path(workdir).resolve()
        (workdir / TMP_NAME).mkdir(exist_ok=True)
        if self.kind == "landlock":
            write = [workdir, Path("/dev"), *self.writable]
            flags = [arg for path in write for arg in ("--write", str(path))]
            return [sys.executable, "-I", str(Path(__file__).resolve()), *flags, "--", *argv]
        return bwrap_argv(argv, workdir, self.readonly, self.writable, self.network)

    def env(self, workdir: Path) -> dict[str, str]:
        """Environment the confined command needs (its temp dir inside the work dir)."""
        if self.kind == "none":
            return {}
        tmp = str(Path(workdir).resolve() / TMP_NAME)
        return {"TMPDIR": tmp, "TMP": tmp, "TEMP": tmp}

    def describe(self) -> str:
        if self.kind == "none":
            return f"sandbox: none - evaluators can write anywhere the engine can ({self.note})"
        net = "" if self.network else ", no network"
        extra = ", ".join(str(p) for p in self.writable) or "nothing else"
        return f"sandbox: {self.kind} (writable: node work dir, /dev, {extra}{net}) - {self.note}"


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
    """Why ``kind`` cannot confine a command here, or "" when a trial run worked."""
    with tempfile.TemporaryDirectory(prefix="asi-evolve-sandbox-") as tmp:
        work = Path(tmp)
        if kind == "bwrap":
            if shutil.which("bwrap") is None:
                return "bwrap is not installed"
        elif kind == "landlock":
            if not network:
                return "Landlock cannot cut the network off (sandbox_network: false needs bwrap)"
            try:
                import landlock  # noqa: F401 - presence check; the wrapper uses it
            except ImportError:
                return "the landlock package is not installed"
        argv = Sandbox(kind, network=network).wrap(["/bin/sh", "-c", "echo ok > probe"], work)
        try:
            done = subprocess.run(
                argv, cwd=work, capture_output=True, text=True, timeout=_PROBE_TIMEOUT
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{kind} trial run failed: {_one_line(str(exc))}"
        if done.returncode != 0 or not (work / "probe").is_file():
            why = _one_line(done.stderr) or f"exit code {done.returncode}"
            return f"{kind} trial run failed: {why}"
    return ""


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
    for candidate in ("bwrap", "landlock"):
        reason = probe(candidate, network)
        if not reason:
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
        if kind == "landlock":
            for kept in readonly:
                if kept == path or path in kept.parents:
                    raise SandboxError(
                        f"engineer.sandbox_writable: {path} holds {kept}, which must stay "
                        "read-only (Landlock cannot exclude it; use bwrap or a narrower path)"
                    )
        writable.append(path)
    return Sandbox(kind, readonly, tuple(writable), settings.network, note)


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


# --------------------------------------------------------- the Landlock wrapper
def _landlock_exec(args: list[str]) -> int:
    """``sandbox.py --write DIR ... -- COMMAND...``: restrict this process, then exec.

    Runs between the engine and the evaluator (``python -I``: no PYTHONPATH tricks). The
    rules hold for everything the command starts; files opened before are not affected.
    """
    try:
        split = args.index("--")
    except ValueError:
        print("sandbox: usage: sandbox.py --write DIR ... -- COMMAND", file=sys.stderr)
        return 2
    flags, command = args[:split], args[split + 1 :]
    if not command or len(flags) % 2 or any(f != "--write" for f in flags[::2]):
        print("sandbox: usage: sandbox.py --write DIR ... -- COMMAND", file=sys.stderr)
        return 2
    try:
        from landlock import FSAccess, Ruleset

        rules = Ruleset()  # handles every access right this kernel knows
        rules.allow("/", rules=FSAccess.READ_FILE | FSAccess.READ_DIR | FSAccess.EXECUTE)
        rules.allow(*flags[1::2])
        rules.apply()
    except Exception as exc:  # noqa: BLE001 - any failure must stop the command
        print(f"sandbox: landlock failed: {_one_line(str(exc))}", file=sys.stderr)
        return 126
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        print(f"sandbox: cannot run {command[0]}: {exc.strerror}", file=sys.stderr)
        return 127


if __name__ == "__main__":
    sys.exit(_landlock_exec(sys.argv[1:]))
