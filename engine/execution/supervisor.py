"""The supervisor of one evaluation: confines it, and kills everything it leaves behind.

Run by ``run_command`` (through ``Sandbox.wrap``) as ``python -I -S supervisor.py SPEC --
COMMAND...``, a fresh interpreter that imports nothing but a few C modules, ctypes,
``engine/execution/landlock.py`` and ``engine/execution/procs.py`` (about 15 ms to start),
or, in a run, forked with the same arguments by the fork server
(``engine/execution/fork_server.py``: one interpreter per run, about 1 ms per launch), whose
child then watches the server as it would watch the engine. It turns into a small tree::

    engine ── S  this script, outside every namespace it makes
              └─ I  init: pid 1 of a new PID namespace (only with the ``pid`` layer)
                   └─ C  the evaluator: COMMAND (/bin/sh -c ...), exec'd

* **S** blocks signals (the evaluator's process group gets the engine's SIGTERM; S does
  not), sets ``PR_SET_PDEATHSIG`` (the engine or the Ray worker dies: S is told and ends
  the evaluation), unshares the namespaces (a user namespace when not root; mount; PID),
  makes the mounts, builds the Landlock ruleset, then forks. It waits for its child and
  exits the way the evaluator did. Without a PID namespace S is a child subreaper: every
  orphan of the evaluation, however it ``setsid``\\s, double-forks or clears its
  environment, becomes S's child, and once the evaluator has exited (or the engine died)
  S freezes (SIGSTOP) and then kills all of them. S exits with a code (the evaluator's)
  only once every process below it is dead and reaped; otherwise (the evaluator died by a
  signal, the engine left, S failed, a fork bomb outran the cleanup) it dies by a signal.
  So an exit code tells the engine that nothing of the evaluation is left, and it skips
  its own /proc sweep (``Reaper.finish(clean=True)``); a signal makes it sweep.
* **I** mounts a fresh ``/proc`` (the engine is not in it) and reaps orphans. When the
  evaluator exits, I exits and the kernel kills whatever is left in the namespace; I dies
  with S (``PR_SET_PDEATHSIG``), and with it the namespace.
* **C** restores the signal mask, applies the rlimits, enforces Landlock (no_new_privs
  and one system call), drops every capability (root evaluators: no mount, no ptrace, no
  raw devices), and execs the command.

Mounts (``mount`` layer): everything read-only at once (``mount_setattr``, Linux >= 5.12;
before, only the run and task directories), the evaluator's writable paths bound
read-write again, a private tmpfs on ``/dev/shm`` when asked. Read-only mounts stop
``chmod``, rename and delete, which Landlock does not govern. Landlock forbids mount
operations, so the order is: namespaces, mounts, ruleset, fork, restrict, exec.

Why a fresh interpreter and not a ``preexec_fn``: a preexec_fn makes subprocess fork()
the engine, which has threads (the database writer, the cognition retriever using
OpenBLAS); OpenBLAS's pre-fork handler then deadlocked the engine (seen in
tests/test_gpu_slots.py). Without a preexec_fn subprocess uses vfork and exec, and this
small process forks instead. It also holds none of the engine's memory or secrets.

SPEC is plain arguments (json would import re and enum: 12 ms per evaluation)::

    PARENT LAYERS ABI SHM [-r READONLY]... [-w WRITABLE]... [-d DEVICE]... [-l RES:SOFT:HARD]...

PARENT: the engine's pid; LAYERS: letters of u(ser), m(ount), p(id) namespaces, or "-";
ABI: the Landlock ABI to use (0: none); SHM: private, host or closed; writable paths
begin with the work dir. Built by ``engine.execution.namespaces.command``.
"""

from __future__ import annotations

import _signal as signal  # the C module: ``signal`` imports enum
import ctypes
import os
import resource
import struct
import sys
import time

if __name__ == "__main__":  # run as a script with -I -S: find the engine package
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from engine.execution import landlock  # noqa: E402
from engine.execution.procs import descendants, stop_and_kill  # noqa: E402

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID = 0x00020000, 0x10000000, 0x20000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_SLAVE = 32, 4096, 16384, 1 << 19
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1024, 2048, 1 << 21
ST_RELATIME = 4096
SYS_MOUNT_SETATTR, AT_FDCWD, AT_RECURSIVE, MOUNT_ATTR_RDONLY = 442, -100, 0x8000, 1
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NAME, PR_CAPBSET_DROP = 1, 4, 15, 24
PR_SET_CHILD_SUBREAPER, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 36, 47, 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
SANDBOX_EXIT = 126  # the sandbox could not be set up: the command never ran
SHM = "/dev/shm"
CLEANUP_SECONDS = 5.0
TICK = 1.0  # how often the supervisor looks at its parent even without a signal

_libc = ctypes.CDLL(None, use_errno=True)
for _name in ("unshare", "mount", "prctl", "capset"):
    getattr(_libc, _name).restype = ctypes.c_int
_libc.syscall.restype = ctypes.c_long
_WATCHED = {signal.SIGCHLD, signal.SIGUSR1}
_SYNCHRONOUS = {signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGTRAP}


# ------------------------------------------------------------------------ helpers
def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _prctl(option: int, arg: int) -> int:
    return int(_libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0))


def _set_name(name: bytes) -> None:
    _libc.prctl(PR_SET_NAME, ctypes.c_char_p(name), 0, 0, 0)


def _bytes(text: str | None) -> bytes | None:
    return None if text is None else text.encode()


def _mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None
) -> None:
    result = _libc.mount(
        _bytes(source), target.encode(), _bytes(fstype), ctypes.c_ulong(flags), _bytes(data)
    )
    _check(result, f"mount {target}")


def _kept_flags(path: str) -> int:
    """The flags a bind remount of ``path`` must keep (a user namespace cannot clear them)."""
    f = os.statvfs(path).f_flag
    flags = f & (MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME)
    if f & ST_RELATIME:
        flags |= MS_RELATIME
    return flags


def _bind(path: str, readonly: bool) -> None:
    _mount(path, path, None, MS_BIND | MS_REC)
    flags = MS_REMOUNT | MS_BIND | (MS_RDONLY if readonly else 0) | _kept_flags(path)
    _mount(None, path, None, flags)


def _all_read_only() -> bool:
    """Make every mount read-only at once (Linux >= 5.12); False where it cannot."""
    attr = ctypes.create_string_buffer(struct.pack("=QQQQ", MOUNT_ATTR_RDONLY, 0, 0, 0), 32)
    return _libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, b"/", AT_RECURSIVE, attr, 32) == 0


def _under_any(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def _drop_capabilities() -> None:
    """No capability survives exec: bounding set, ambient, inheritable, permitted."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            last = int(f.read())
    except (OSError, ValueError):
        last = 63
    for cap in range(last + 1):
        _prctl(PR_CAPBSET_DROP, cap)  # EINVAL for caps this kernel lacks: fine
    _libc.prctl(PR_CAP_AMBIENT, ctypes.c_ulong(PR_CAP_AMBIENT_CLEAR_ALL), 0, 0, 0)
    header = ctypes.create_string_buffer(struct.pack("=Ii", _LINUX_CAPABILITY_VERSION_3, 0), 8)
    data = ctypes.create_string_buffer(bytes(24), 24)
    _check(_libc.capset(header, data), "capset")


def _has_children() -> bool:
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


def _die(what: object) -> None:
    try:  # noqa: SIM105 - no contextlib: cheap imports
        os.write(2, f"sandbox: {what}\n".encode(errors="replace"))
    except OSError:
        pass
    os._exit(SANDBOX_EXIT)


def _exit_like(status: int | None) -> None:
    """Leave the way the evaluator did: its exit code, or death by its signal."""
    if status is None:
        os.kill(os.getpid(), signal.SIGKILL)
    elif os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            if sig not in (signal.SIGKILL, signal.SIGSTOP):
                signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})
            os.kill(os.getpid(), sig)
        except (OSError, ValueError, RuntimeError):
            pass
        os._exit(128 + sig)
    elif os.WIFEXITED(status):
        os._exit(os.WEXITSTATUS(status))
    os._exit(SANDBOX_EXIT)


# --------------------------------------------------------------------------- S
class Supervisor:
    def __init__(self, spec: list[str], argv: list[str], env: dict[str, str] | None = None) -> None:
        parent, layers, abi, shm, *options = spec
        self.parent = int(parent)
        self.user, self.mount, self.pid = ("u" in layers), ("m" in layers), ("p" in layers)
        self.abi = int(abi)
        self.shm = shm
        self.readonly: list[str] = []
        self.writable: list[str] = []
        self.devices: list[str] = []
        self.rlimits: list[tuple[int, int, int]] = []
        if len(options) % 2:
            raise ValueError("an option without its value")
        for flag, value in zip(options[::2], options[1::2], strict=True):
            if flag == "-r":
                self.readonly.append(value)
            elif flag == "-w":
                self.writable.append(value)
            elif flag == "-d":
                self.devices.append(value)
            elif flag == "-l":
                which, soft, hard = (int(x) for x in value.split(":"))
                self.rlimits.append((which, soft, hard))
            else:
                raise ValueError(f"unknown option {flag!r}")
        self.argv = argv
        self.env = env  # None: this process's own (the script's); set by the fork server
        confined = self.abi or self.user or self.mount or self.pid
        self.drop_caps = bool(confined) and (os.geteuid() == 0 or self.user)
        self.ruleset: int | None = None
        self.mask: set[int] = set()

    def run(self) -> None:
        try:
            self._enter()
            status_r = status_w = -1
            if self.pid:
                status_r, status_w = os.pipe()
            child = os.fork()
        except BaseException as exc:  # noqa: BLE001 - the command must not run
            _die(exc)
        if child == 0:
            if self.pid:
                os.close(status_r)
                self._init(status_w)  # returns only in the evaluator
            self._evaluator()  # never returns
        try:
            landlock.close(self.ruleset)
            if self.pid:
                os.close(status_w)
                self._supervise_namespace(child, status_r)
            self._supervise_tree(child)
        except BaseException:  # noqa: BLE001 - never exit with a code before the cleanup
            try:  # noqa: SIM105 - no contextlib: cheap imports
                stop_and_kill(lambda procs: descendants(os.getpid(), procs), CLEANUP_SECONDS)
            except BaseException:  # noqa: BLE001, S110 - dying anyway, by a signal
                pass
            _exit_like(None)

    def _enter(self) -> None:
        """Signals, parent-death signal, namespaces, mounts and the Landlock ruleset."""
        blockable = set(signal.valid_signals()) - {signal.SIGKILL, signal.SIGSTOP} - _SYNCHRONOUS
        self.mask = signal.pthread_sigmask(signal.SIG_BLOCK, blockable)
        _check(_prctl(PR_SET_PDEATHSIG, signal.SIGUSR1), "PR_SET_PDEATHSIG")
        if os.getppid() != self.parent:
            raise OSError("the engine is gone")
        _set_name(b"asi-supervisor")
        flags = (
            (CLONE_NEWUSER if self.user else 0)
            | (CLONE_NEWNS if self.mount else 0)
            | (CLONE_NEWPID if self.pid else 0)
        )
        if flags:
            _check(_libc.unshare(flags), "unshare")
        if self.user:
            uid, gid = os.getuid(), os.getgid()
            for name, text in (
                ("setgroups", "deny"),
                ("uid_map", f"{uid} {uid} 1"),
                ("gid_map", f"{gid} {gid} 1"),
            ):
                with open(f"/proc/self/{name}", "w") as f:
                    f.write(text)
        _check(_prctl(PR_SET_DUMPABLE, 0), "PR_SET_DUMPABLE")
        if self.mount:
            self._mounts()
        if not self.pid:
            _check(_prctl(PR_SET_CHILD_SUBREAPER, 1), "PR_SET_CHILD_SUBREAPER")
        if self.abi:
            shared = [SHM] if self.shm in ("host", "private") else []
            self.ruleset = landlock.ruleset(self.writable + shared, self.devices, self.abi)

    def _mounts(self) -> None:
        _mount(None, "/", None, MS_REC | MS_SLAVE)  # nothing of ours reaches the host
        if _all_read_only():
            rebind = self.writable
        else:  # an old kernel: only the protected paths become read-only
            for path in self.readonly:
                _bind(path, readonly=True)
            rebind = [w for w in self.writable if _under_any(w, self.readonly)]
        for path in rebind:
            if os.path.isdir(path):
                _bind(path, readonly=False)
        os.chdir(os.getcwd())  # the work dir we stand in is now the read-write mount on top
        if self.shm == "private" and os.path.isdir(SHM):
            _mount("tmpfs", SHM, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")

    def _supervise_namespace(self, init: int, status_r: int) -> None:
        """Wait for the namespace's init; kill it (and so the namespace) if the engine dies."""
        while True:
            got = signal.sigtimedwait(_WATCHED, TICK)
            done, init_status = os.waitpid(init, os.WNOHANG)
            if done == init:
                break
            if (got is not None and got.si_signo == signal.SIGUSR1) or (
                os.getppid() != self.parent
            ):
                os.kill(init, signal.SIGKILL)
                os.waitpid(init, 0)
                _exit_like(None)
        raw = b""
        try:
            while chunk := os.read(status_r, 64):
                raw += chunk
        except OSError:
            pass
        # The evaluator's status, or init's own when it failed before starting one.
        _exit_like(int(raw) if raw.strip().isdigit() else init_status)

    def _supervise_tree(self, child: int) -> None:
        """Subreaper: wait for the evaluator, then freeze and kill every process left."""
        me, status = os.getpid(), None
        while status is None:
            got = signal.sigtimedwait(_WATCHED, TICK)
            while True:
                try:
                    pid, raw = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    pid = 0
                if pid == 0:
                    break
                if pid == child:
                    status = raw
            if status is None and (
                (got is not None and got.si_signo == signal.SIGUSR1) or os.getppid() != self.parent
            ):
                break  # the engine is gone: end the evaluation
        if _has_children():  # else nothing can be left below us: skip the /proc scan
            stop_and_kill(lambda procs: descendants(me, procs), CLEANUP_SECONDS)
        deadline = time.monotonic() + CLEANUP_SECONDS
        while True:  # reap them all: none is left to the engine
            try:
                pid, raw = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            if pid == child and status is None:
                status = raw
            if time.monotonic() >= deadline:  # still forking: not clean, the engine sweeps
                _exit_like(None)
        _exit_like(status)

    # I ------------------------------------------------------------------------------
    def _init(self, status_w: int) -> None:
        """PID 1 of the namespace: mount /proc, start the evaluator, reap until it exits."""
        try:
            _check(_prctl(PR_SET_PDEATHSIG, signal.SIGKILL), "PR_SET_PDEATHSIG")
            _set_name(b"asi-init")
            if self.mount:
                _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
            evaluator = os.fork()
        except BaseException as exc:  # noqa: BLE001
            _die(exc)
        if evaluator == 0:
            os.close(status_w)
            return
        landlock.close(self.ruleset)
        status = None
        while True:
            try:
                pid, raw = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            if pid == evaluator:
                status = raw
                break
        if status is not None:
            try:  # noqa: SIM105
                os.write(status_w, str(status).encode())
            except OSError:
                pass
        os._exit(0)  # the kernel now kills what is left in the namespace

    # C ------------------------------------------------------------------------------
    def _evaluator(self) -> None:
        try:
            _check(_prctl(PR_SET_PDEATHSIG, signal.SIGKILL), "PR_SET_PDEATHSIG")
            signal.pthread_sigmask(signal.SIG_SETMASK, self.mask)
            for which, soft, hard in self.rlimits:
                resource.setrlimit(which, (soft, hard))
            if self.ruleset is not None:
                landlock.restrict_self(self.ruleset)
                landlock.close(self.ruleset)
            if self.drop_caps:
                _drop_capabilities()
            if self.env is None:
                os.execv(self.argv[0], self.argv)
            os.execve(self.argv[0], self.argv, self.env)
        except BaseException as exc:  # noqa: BLE001 - never run the command unconfined
            _die(exc)


def main(args: list[str]) -> None:
    try:
        split = args.index("--")
        supervisor = Supervisor(args[:split], args[split + 1 :])
        if not supervisor.argv:
            raise ValueError("no command")
    except ValueError as exc:
        _die(f"usage: supervisor.py PARENT LAYERS ABI SHM [OPTION VALUE]... -- COMMAND: {exc}")
    supervisor.run()


if __name__ == "__main__":
    main(sys.argv[1:])
