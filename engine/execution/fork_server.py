"""The fork server: one small process per engine that forks each evaluation's supervisor.

Without bubblewrap every evaluation runs under a supervisor (``engine/execution/supervisor.py``)
that sets up its namespaces and Landlock and kills whatever it leaves behind. Started as a
fresh ``python -I -S`` per evaluation it costs about 20 ms of interpreter start-up on a
2-core machine (``benchmarks/sandbox_overhead.py``), more than the engine's own
bookkeeping of a candidate. Here the interpreter starts once: the engine
(``engine/execution/launcher.py``) sends each launch over a socket pair, this process forks,
and the child becomes that evaluation's supervisor S exactly as the script would have,
with the engine's stdout and stderr pipes passed along (``SCM_RIGHTS``).

Why a fork of this process and not of the engine: the engine has threads (the database
writer, OpenBLAS); a fork of it can deadlock in a library's fork handler, and the child
would hold the engine's memory and secrets. This process is single-threaded, imports only
the supervisor's few modules and holds nothing.

Lifetime: it dies with the engine (``PR_SET_PDEATHSIG``), and it exits when the engine
closes its end of the socket. Each supervisor it forks has it as parent, watches it the
way the script watches the engine (its own ``PR_SET_PDEATHSIG``), and ends its evaluation
when it is gone, so the chain engine -> server -> supervisor -> evaluation holds.

Protocol (``SOCK_SEQPACKET``, one message per launch, fields separated by NUL)::

    engine -> server   L <id> <cwd> <n> <supervisor args: n of them> <KEY=VALUE>...
                       with two descriptors: the evaluation's stdout and stderr
    server -> engine   S <id> <pid>        the supervisor runs as <pid> (its session leader)
                       F <id> <reason>     it could not be forked
                       X <pid> <status>    it has exited (a raw wait status)
"""

from __future__ import annotations

import os
import select
import socket
import sys

if __name__ == "__main__":  # run as a script with -I -S: find the engine package
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import _signal as signal  # noqa: E402 - the C module: ``signal`` imports enum

from engine.execution import supervisor  # noqa: E402

MAX_MESSAGE = 1 << 20  # a launch: the supervisor's arguments and the environment


def parse(message: bytes) -> tuple[str, str, list[str], dict[str, str]]:
    """(id, cwd, supervisor arguments, environment) of a launch message."""
    fields = message.decode("utf-8", errors="surrogateescape").split("\0")
    if len(fields) < 4 or fields[0] != "L":
        raise ValueError("not a launch")
    ident, cwd, count = fields[1], fields[2], int(fields[3])
    args = fields[4 : 4 + count]
    if len(args) != count:
        raise ValueError("truncated launch")
    env = dict(item.split("=", 1) for item in fields[4 + count :] if "=" in item)
    return ident, cwd, args, env


def launch_message(ident: str, cwd: str, args: list[str], env: dict[str, str]) -> bytes:
    """The message ``parse`` reads (built by the engine)."""
    fields = ["L", ident, cwd, str(len(args)), *args, *(f"{k}={v}" for k, v in env.items())]
    return "\0".join(fields).encode("utf-8", errors="surrogateescape")


def _become_supervisor(
    server: socket.socket,
    watched: list[int],
    args: list[str],
    cwd: str,
    env: dict[str, str],
    out: int,
    err: int,
) -> None:
    """In the forked child: drop the server's descriptors, take the evaluation's, run S."""
    try:
        server.close()
        for fd in watched:
            os.close(fd)
        os.setsid()  # its own session and process group, as start_new_session gives
        null = os.open(os.devnull, os.O_RDONLY)
        for source, target in ((null, 0), (out, 1), (err, 2)):
            os.dup2(source, target)
        for fd in {null, out, err} - {0, 1, 2}:
            os.close(fd)
        os.chdir(cwd)
        # S writes its own uid map, which a non-dumpable process cannot (its /proc files
        # belong to root); it turns non-dumpable itself once its namespaces are set up.
        supervisor._check(supervisor._prctl(supervisor.PR_SET_DUMPABLE, 1), "dumpable")
        split = args.index("--")
        spec = [str(os.getppid()), *args[1:split]]  # S watches its parent: this server
        s = supervisor.Supervisor(spec, args[split + 1 :], env=env)
        if not s.argv:
            raise ValueError("no command")
    except BaseException as exc:  # noqa: BLE001 - the command must not run
        supervisor._die(exc)
    s.run()  # never returns


def serve(sock: socket.socket, parent: int) -> None:
    """Fork one supervisor per launch and report its pid and its exit, until the engine goes."""
    children: dict[int, int] = {}  # pidfd -> pid
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    while True:
        for fd, _ in poller.poll():
            if fd != sock.fileno():
                pid = children.pop(fd)
                poller.unregister(fd)
                os.close(fd)
                _, status = os.waitpid(pid, 0)
                sock.send(f"X\0{pid}\0{status}".encode())
                continue
            try:
                message, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, 2)
            except OSError:
                message, fds = b"", []
            if not message:  # the engine closed its end: no more launches
                for fd in fds:
                    os.close(fd)
                return
            try:
                ident, cwd, args, env = parse(message)
                if len(fds) != 2:
                    raise ValueError("a launch carries stdout and stderr")
            except ValueError as exc:
                for fd in fds:
                    os.close(fd)
                sock.send(f"F\0?\0bad launch: {exc}".encode())
                continue
            try:
                pid = os.fork()
            except OSError as exc:
                sock.send(f"F\0{ident}\0{exc}".encode())
                pid = -1
            if pid == 0:
                _become_supervisor(sock, list(children), args, cwd, env, *fds)
            for fd in fds:
                os.close(fd)
            if pid > 0:
                try:
                    pidfd = os.pidfd_open(pid)
                except OSError as exc:  # out of descriptors: this launch cannot be watched
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    sock.send(f"F\0{ident}\0{exc}".encode())
                    continue
                children[pidfd] = pid
                poller.register(pidfd, select.POLLIN)
                sock.send(f"S\0{ident}\0{pid}".encode())
        if os.getppid() != parent:
            return


def main(args: list[str]) -> None:
    parent, fd = int(args[0]), int(args[1])
    supervisor._check(supervisor._prctl(supervisor.PR_SET_PDEATHSIG, signal.SIGKILL), "pdeathsig")
    if os.getppid() != parent:
        return
    supervisor._set_name(b"asi-forkserver")
    # Like S: no evaluator of the same user may read this process's memory or environment.
    supervisor._check(supervisor._prctl(supervisor.PR_SET_DUMPABLE, 0), "dumpable")
    os.set_inheritable(fd, False)  # no evaluation may ever hold it
    serve(socket.socket(fileno=fd), parent)


if __name__ == "__main__":
    main(sys.argv[1:])
