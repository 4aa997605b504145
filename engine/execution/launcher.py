"""The engine's side of the fork server: launch supervised evaluations without an interpreter each.

``Launcher.spawn`` takes the command ``Sandbox.wrap`` built (``python -I -S supervisor.py
SPEC -- COMMAND``) and, instead of starting that interpreter, asks the fork server
(``engine/execution/fork_server.py``, started on first use) to fork a supervisor with the
same arguments. What it returns behaves like the ``asyncio.subprocess.Process`` that
``run_command`` would otherwise get: ``pid`` (a session leader, so its pid is the process
group to signal), ``returncode``, ``wait()``, and ``stdout``/``stderr`` readers.

Why: on a 2-core machine the supervisor's interpreter start costs about 20 ms per
evaluation; a fork of the small server costs about 1 ms (``benchmarks/sandbox_overhead.py``).

One launcher serves one event loop (a new loop gets a new server). If the server dies,
each supervisor it started ends its evaluation (parent-death signal) and is followed to its
end, which reads as "killed"; a launch the server never reported is made once more by a
new server; and a launch too large for one message starts the supervisor script. Where the
fork server cannot work (no ``pidfd_open``: Linux < 5.3), ``available()`` is False and the
caller starts the supervisor script as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from engine.execution.fork_server import launch_message
from engine.execution.namespaces import SUPERVISOR

log = logging.getLogger(__name__)

FORK_SERVER = Path(__file__).resolve().parent / "fork_server.py"
PREFIX = [sys.executable, "-I", "-S", str(SUPERVISOR)]  # what Sandbox.wrap puts in front
SERVER_ENV = ("PATH", "LD_LIBRARY_PATH", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR")
KILLED = -signal.SIGKILL  # the returncode of an evaluation whose server died
# One datagram must fit the socket's send buffer (about 200 KB by default on Linux).
MAX_LAUNCH = 100_000
CLOSE_SECONDS = 5.0  # how long aclose waits for a server to exit before killing it


def _server_env() -> dict[str, str]:
    """The server's own environment: what an interpreter needs, no secret (each launch
    brings its evaluator's environment, from which the Engineer removed the keys)."""
    return {k: v for k, v in os.environ.items() if k in SERVER_ENV}


def available() -> bool:
    """Whether this machine can run the fork server (it waits on its children's pidfds)."""
    if not hasattr(os, "pidfd_open"):
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return False
    return True


class Unfit(OSError):
    """A launch the fork server cannot take (its environment is too large for one message):
    the caller starts the supervisor script instead."""


class ServerGone(OSError):
    """The fork server died before it reported the supervisor of a launch (which, if it was
    forked at all, ended with the server before it could report either)."""


class Launched:
    """One supervised evaluation started by the fork server, seen like an asyncio Process."""

    def __init__(
        self,
        pid: int,
        stdout: asyncio.StreamReader,
        stderr: asyncio.StreamReader,
        transports: list[asyncio.BaseTransport],
        exited: asyncio.Future[int],
    ) -> None:
        self.pid = pid
        self.stdout = stdout
        self.stderr = stderr
        self.returncode: int | None = None
        self._transports = transports
        self._exited = exited

    async def wait(self) -> int:
        # shielded: run_command cancels its waiter on every poll, never the exit itself
        return await asyncio.shield(self._exited)

    def close_pipes(self) -> None:
        for transport in self._transports:
            with contextlib.suppress(Exception):
                transport.close()


class Launcher:
    """Owns the fork server of one engine and the bookkeeping of what it launched."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: subprocess.Popen[bytes] | None = None
        self._retired: list[subprocess.Popen[bytes]] = []  # servers let go, not yet reaped
        self._sock: socket.socket | None = None
        self._ids = itertools.count(1)
        self._starting: dict[str, asyncio.Future[int]] = {}  # launch id -> pid
        self._running: dict[int, tuple[Launched | None, asyncio.Future[int]]] = {}
        self._lock: asyncio.Lock | None = None
        self.launches = 0  # how many supervisors the server forked for us

    @staticmethod
    def handles(argv: list[str]) -> bool:
        """Whether ``argv`` is a supervisor command the fork server can launch instead."""
        return argv[: len(PREFIX)] == PREFIX and "--" in argv

    async def spawn(self, argv: list[str], cwd: Path, env: Mapping[str, str] | None) -> Launched:
        """Launch ``argv`` (a supervisor command, see ``handles``) in ``cwd`` with ``env``.

        A server that dies before the supervisor started is replaced once: the candidate
        is not failed for the engine's trouble."""
        try:
            return await self._spawn(argv, cwd, env)
        except ServerGone:
            log.warning("the fork server died before a launch: starting a new one")
            return await self._spawn(argv, cwd, env)

    async def _spawn(self, argv: list[str], cwd: Path, env: Mapping[str, str] | None) -> Launched:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._restart(loop)
        if self._sock is None:
            assert self._lock is not None
            async with self._lock:
                if self._sock is None:
                    await self._start()
        assert self._sock is not None
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        ident = str(next(self._ids))
        started: asyncio.Future[int] = loop.create_future()
        self._starting[ident] = started
        message = launch_message(
            ident, str(cwd), argv[len(PREFIX) :], dict(os.environ if env is None else env)
        )
        if len(message) > MAX_LAUNCH:
            self._starting.pop(ident, None)
            for fd in (out_r, out_w, err_r, err_w):
                os.close(fd)
            raise Unfit(f"a launch of {len(message)} bytes (at most {MAX_LAUNCH})")
        try:
            try:
                await self._send(message, [out_w, err_w])
            finally:
                os.close(out_w)
                os.close(err_w)
            pid = await started
            self.launches += 1
        except BaseException:
            self._starting.pop(ident, None)
            os.close(out_r)
            os.close(err_r)
            raise
        readers, transports = [], []
        for fd in (out_r, err_r):
            reader = asyncio.StreamReader(loop=loop)
            transport, _ = await loop.connect_read_pipe(
                lambda r=reader: asyncio.StreamReaderProtocol(r, loop=loop),
                os.fdopen(fd, "rb", buffering=0),
            )
            readers.append(reader)
            transports.append(transport)
        _, exited = self._running.get(pid, (None, None))
        if exited is None:  # the server died meanwhile, and the supervisor with it
            exited = loop.create_future()
            exited.set_result(KILLED)
        launched = Launched(pid, readers[0], readers[1], transports, exited)
        if exited.done():
            launched.returncode = exited.result()
            self._running.pop(pid, None)
        else:
            self._running[pid] = (launched, exited)
        return launched

    async def aclose(self) -> None:
        """Stop the server (it sees its socket close and exits) and wait for it."""
        self._shutdown("the launcher is closed")
        deadline = time.monotonic() + CLOSE_SECONDS
        while any(server.poll() is None for server in self._retired):
            if time.monotonic() > deadline:
                for server in self._retired:
                    with contextlib.suppress(ProcessLookupError):
                        server.kill()
                    server.wait()
                break
            await asyncio.sleep(0.01)
        self._retired.clear()

    # ----------------------------------------------------------------- internals
    def _restart(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop is not None:
            self._shutdown("a new event loop")
        self._loop = loop
        self._lock = asyncio.Lock()

    async def _start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            # Not an asyncio subprocess: the server may outlive the loop that started it
            # (a new loop starts a new server), and a closed loop cannot wait for it.
            self._server = subprocess.Popen(
                [
                    sys.executable,
                    "-I",
                    "-S",
                    str(FORK_SERVER),
                    str(os.getpid()),
                    str(theirs.fileno()),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                env=_server_env(),
                # Its own process group (no ^C from the terminal: the engine decides) in the
                # engine's session, which marks it as the engine's helper, never an adopted
                # escapee for the reaper (``reaper.adopted``) to kill.
                process_group=0,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        self._sock = ours
        assert self._loop is not None
        self._loop.add_reader(ours.fileno(), self._readable)

    async def _send(self, message: bytes, fds: list[int]) -> None:
        for _ in range(1000):
            if self._sock is None:
                raise ServerGone("the fork server is gone")
            try:
                socket.send_fds(self._sock, [message], fds)
                return
            except BlockingIOError:
                await asyncio.sleep(0.005)
            except OSError as exc:  # EPIPE, ECONNRESET: it died
                self._shutdown(f"sending failed: {exc}")
                raise ServerGone(f"the fork server is gone ({exc})") from None
        raise OSError("the fork server does not take launches")

    def _readable(self) -> None:
        assert self._sock is not None
        while True:
            try:
                data = self._sock.recv(4096)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._shutdown("the fork server is gone")
                return
            self._dispatch(data.decode(errors="replace").split("\0"))

    def _dispatch(self, fields: list[str]) -> None:
        kind = fields[0]
        if kind == "S" and len(fields) == 3:
            pid = int(fields[2])
            assert self._loop is not None
            self._running[pid] = (None, self._loop.create_future())
            started = self._starting.pop(fields[1], None)
            if started is not None and not started.done():
                started.set_result(pid)
        elif kind == "F" and len(fields) == 3:
            started = self._starting.pop(fields[1], None)
            if started is not None and not started.done():
                started.set_exception(OSError(f"the fork server could not launch: {fields[2]}"))
            elif fields[1] == "?":
                log.error("fork server: %s", fields[2])
        elif kind == "X" and len(fields) == 3:
            pid, status = int(fields[1]), int(fields[2])
            launched, exited = self._running.get(pid, (None, None))
            if exited is None:
                return
            code = os.waitstatus_to_exitcode(status)
            if launched is not None:
                launched.returncode = code
                self._running.pop(pid, None)
            if not exited.done():
                exited.set_result(code)

    def _shutdown(self, why: str) -> None:
        """Forget the server: pending launches fail, running evaluations read as killed."""
        if self._sock is not None:
            if self._loop is not None and not self._loop.is_closed():
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        if self._server is not None:
            self._retired.append(self._server)  # it exits on its own: reaped by aclose
            self._server = None
        self._retired = [server for server in self._retired if server.poll() is None]
        for started in self._starting.values():
            if not started.done():
                with contextlib.suppress(RuntimeError):  # its loop may be closed
                    started.set_exception(ServerGone(f"the fork server is gone ({why})"))
        self._starting.clear()
        followed = {}
        for pid, (launched, exited) in self._running.items():
            if exited.done():
                continue
            if self._follow(pid, exited):
                followed[pid] = (launched, exited)
                continue
            if launched is not None:
                launched.returncode = KILLED
            with contextlib.suppress(RuntimeError):
                exited.set_result(KILLED)
        self._running = followed

    def _follow(self, pid: int, exited: asyncio.Future[int]) -> bool:
        """Wait for the supervisor of a dead server to end (its parent-death signal makes
        it kill and reap its evaluation first: ending it sooner would orphan that), and
        collect its status where it came to us (the engine is a subreaper). False where it
        cannot be followed (its loop is closed, or it is gone already)."""
        loop = self._loop
        if loop is None or loop.is_closed() or not loop.is_running():
            return False
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            return False

        def ended() -> None:
            loop.remove_reader(pidfd)
            os.close(pidfd)
            code = KILLED
            with contextlib.suppress(ChildProcessError):
                done, status = os.waitpid(pid, os.WNOHANG)
                if done == pid:
                    code = os.waitstatus_to_exitcode(status)
            launched, _ = self._running.pop(pid, (None, None))
            if launched is not None:
                launched.returncode = code
            if not exited.done():
                exited.set_result(code)

        loop.add_reader(pidfd, ended)
        return True
