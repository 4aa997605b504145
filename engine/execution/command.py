"""Running one shell command as an evaluation: own process group, limits, tails, no leftovers.

Why apart from the Engineer: this is the part that touches processes (a process group per
command, rlimits, SIGTERM then SIGKILL on a timeout, draining pipes into bounded tails,
sandbox wrapping and the reaper token), and it is the same for every stage and backend; the
Engineer (``engine/execution/engineer.py``) only decides what to run and how to read its results.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine.execution.launcher import Launched, Launcher, Unfit
from engine.execution.reaper import TOKEN_ENV, Reaper, sweep_token
from engine.execution.sandbox import Sandbox

_READ_CHUNK = 64 * 1024
_POLL = 0.1  # seconds between checks that the evaluator has exited
_REAP_TIMEOUT = 5.0  # how long to wait for a SIGKILLed process to be reaped
_DRAIN_TIMEOUT = 2.0  # how long to wait for pipes to close once the group is dead


@dataclass
class Limits:
    """Resource limits of an evaluation.

    ``cpu_seconds`` and ``memory_mb`` are per-process rlimits (RLIMIT_CPU, RLIMIT_AS),
    inherited by every process the evaluator starts. RLIMIT_AS bounds *virtual* memory:
    CUDA (and some JIT runtimes) reserve huge address ranges, so GPU jobs need
    ``memory_mb=None``.
    """

    cpu_seconds: int | None = None
    memory_mb: int | None = None
    output_tail_bytes: int = 64_000
    kill_grace: float = 2.0


@dataclass
class RunResult:
    """What came of one command. ``returncode`` is negative (-signal) when killed."""

    returncode: int | None
    timed_out: bool
    runtime: float
    stdout_tail: str
    stderr_tail: str
    stdout_bytes: int
    stderr_bytes: int


class _Tail:
    """The last ``limit`` bytes of a stream, and how many bytes it carried in all."""

    def __init__(self, limit: int) -> None:
        self.limit = max(0, limit)
        self.buffer = bytearray()
        self.total = 0

    async def drain(self, stream: asyncio.StreamReader | None) -> None:
        if stream is None:
            return
        while chunk := await stream.read(_READ_CHUNK):
            self.total += len(chunk)
            self.buffer += chunk
            excess = len(self.buffer) - self.limit
            if excess > 0:
                del self.buffer[:excess]

    def text(self) -> str:
        text = self.buffer.decode("utf-8", errors="replace")
        cut = self.total - len(self.buffer)
        return f"[... {cut} bytes cut ...]\n{text}" if cut else text


def _rlimits(limits: Limits) -> list[tuple[int, int, int]]:
    """(resource, soft, hard) for this process's children: the hard limits are kept where
    lower; for CPU a hard limit one second above the soft one lets SIGXCPU arrive first."""
    wanted: list[tuple[int, int]] = []
    if limits.cpu_seconds is not None:
        wanted.append((resource.RLIMIT_CPU, max(1, int(limits.cpu_seconds))))
    if limits.memory_mb is not None:
        wanted.append((resource.RLIMIT_AS, max(1, int(limits.memory_mb)) * 1024 * 1024))
    result = []
    for which, value in wanted:
        _, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        new_hard = hard
        if which == resource.RLIMIT_CPU and hard == resource.RLIM_INFINITY:
            new_hard = value + 1
        elif which == resource.RLIMIT_AS:
            new_hard = value
        result.append((which, value, new_hard))
    return result


def _rlimit_setter(limits: Limits) -> Callable[[], None] | None:
    """A function for ``preexec_fn`` that applies the limits, or None when there are none.

    Only for commands run without a Sandbox (tests, one-off callers): a ``preexec_fn``
    makes subprocess fork() this multi-threaded process instead of vfork(), and a library's
    fork handler (OpenBLAS joins its threads) can then block the engine."""
    wanted = _rlimits(limits)
    if not wanted:
        return None

    def apply() -> None:  # runs in the child between fork and exec: keep it minimal
        for which, soft, hard in wanted:
            resource.setrlimit(which, (soft, hard))

    return apply


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


Proc = asyncio.subprocess.Process | Launched


async def _wait_exit(proc: Proc, timeout: float) -> bool:
    """Wait until the shell itself has exited; True if it did within ``timeout``.

    ``Process.wait()`` also waits for the pipes to close, which a grandchild may keep
    open forever, so the return code is polled as well.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(0.0, timeout)
    waiter = asyncio.ensure_future(proc.wait())
    try:
        while proc.returncode is None:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            await asyncio.wait({waiter}, timeout=min(remaining, _POLL))
        return True
    finally:
        waiter.cancel()


async def _wait_quiet(proc: Proc, readers: list[asyncio.Task[None]], timeout: float) -> None:
    """Wait up to ``timeout`` for the shell to exit and for its output pipes to close."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(0.0, timeout)
    if not await _wait_exit(proc, timeout):
        return
    remaining = deadline - loop.time()
    if remaining > 0:
        await asyncio.wait(readers, timeout=remaining)


def _close_pipes(proc: Proc, readers: list[asyncio.Task[None]]) -> None:
    """Give up on output a process outside the group may still hold open."""
    for reader in readers:
        reader.cancel()
    if isinstance(proc, Launched):
        proc.close_pipes()
        return
    transport = getattr(proc, "_transport", None)
    if transport is not None:
        with contextlib.suppress(Exception):
            transport.close()


async def run_command(
    command: str,
    cwd: Path,
    timeout: float,
    limits: Limits,
    env: dict[str, str] | None = None,
    sandbox: Sandbox | None = None,
    reaper: Reaper | None = None,
    launcher: Launcher | None = None,
) -> RunResult:
    """Run ``command`` with ``/bin/sh -c`` in its own process group under ``timeout``.

    On a timeout the group gets SIGTERM, then SIGKILL after ``limits.kill_grace``; after
    a normal exit whatever is left in the group gets SIGKILL; on cancellation the group
    is killed and CancelledError propagates. ``env=None`` inherits the environment.
    ``sandbox`` confines the command (``engine/execution/sandbox.py``) and, but for bubblewrap,
    starts it under a supervisor (``engine/execution/supervisor.py``) that kills every process the
    command leaves, however it forks; ``reaper`` finds by its token a process that left the
    group (``setsid``), and leaves markers for an engine killed before its sweep.
    """
    loop = asyncio.get_running_loop()
    start = loop.time()
    argv = ["/bin/sh", "-c", command]
    preexec = _rlimit_setter(limits)
    supervised = sandbox is not None and sandbox.supervised
    if sandbox is not None and sandbox.contains_all:
        reaper = None  # bubblewrap's PID namespace ends everything (6 ms of /proc sweeps less)
    if sandbox is not None:
        argv = sandbox.wrap(argv, cwd, _rlimits(limits))
        env = {**(os.environ if env is None else env), **sandbox.env(cwd)}
        preexec = None  # a supervisor applies the rlimits: vfork, no fork of the engine
    token = reaper.begin(cwd) if reaper is not None else None
    if token is not None:
        env = {**(os.environ if env is None else env), TOKEN_ENV: token}
    try:
        proc: Proc | None = None
        if launcher is not None and preexec is None and Launcher.handles(argv):
            with contextlib.suppress(Unfit):  # too large for the server: the script
                proc = await launcher.spawn(argv, cwd, env)
        if proc is None:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=str(cwd),
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
                preexec_fn=preexec,
            )
    except BaseException:
        if reaper is not None and token is not None:
            reaper.finish(token)  # nothing ran: drops the marker
        raise
    if reaper is not None and token is not None:
        reaper.spawned(token, proc.pid)
    pgid = proc.pid  # the session leader's pid is the group id

    def sweep(clean: bool = False) -> None:
        """Freeze and kill what is left of the evaluation while its supervisor (the
        leader) still lives: the orphans it adopted are its children, found through it.
        ``clean``: the supervisor exited with a code, which it does only after killing and
        reaping everything below it, so there is nothing to look for in /proc."""
        if reaper is not None and token is not None:
            reaper.finish(token, clean)  # token carriers, session, group, descendants
        elif supervised and not clean:
            sweep_token(None, pgid)
        _signal_group(pgid, signal.SIGKILL)  # a last word for the group

    out = _Tail(limits.output_tail_bytes)
    err = _Tail(limits.output_tail_bytes)
    readers = [
        asyncio.create_task(out.drain(proc.stdout)),
        asyncio.create_task(err.drain(proc.stderr)),
    ]
    timed_out = False
    try:
        if not await _wait_exit(proc, timeout):
            timed_out = True
            _signal_group(pgid, signal.SIGTERM)  # the supervisor ignores it: the evaluator's
            await _wait_quiet(proc, readers, limits.kill_grace)
        # Leftovers: grandchildren, SIGTERM ignorers, setsid and double forks.
        clean = proc.returncode is not None and proc.returncode >= 0
        sweep(supervised and not timed_out and clean)
        await _wait_exit(proc, _REAP_TIMEOUT)
        _, pending = await asyncio.wait(readers, timeout=_DRAIN_TIMEOUT)
        if pending:
            _close_pipes(proc, readers)
    except BaseException:  # cancelled (the engine is stopping) or broken: kill, re-raise
        with contextlib.suppress(Exception):
            sweep()
        _signal_group(pgid, signal.SIGKILL)
        _close_pipes(proc, readers)
        with contextlib.suppress(BaseException):  # brief best-effort reaping
            await _wait_exit(proc, 1.0)
        raise
    return RunResult(
        returncode=proc.returncode,
        timed_out=timed_out,
        runtime=loop.time() - start,
        stdout_tail=out.text(),
        stderr_tail=err.text(),
        stdout_bytes=out.total,
        stderr_bytes=err.total,
    )
