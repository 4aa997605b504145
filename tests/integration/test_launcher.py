"""The fork server launches supervised evaluations like the supervisor script does.

``engine/execution/launcher.py`` (engine side) and ``engine/execution/fork_server.py``: the
same exit codes, signals, limits, output and timeouts as a script launch; concurrent
launches keep their own output; a dead server ends its evaluations as killed and the next
launch starts a new one; no secret is in the server's environment; closing stops it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from engine.execution import launcher as launcher_module
from engine.execution import reaper, sandbox
from engine.execution.command import Limits, run_command
from engine.execution.launcher import Launcher
from engine.execution.procs import read_proc

pytestmark = pytest.mark.skipif(
    not launcher_module.available(), reason="no pidfd_open: the fork server is not used here"
)
FALLBACK = sandbox.probe("landlock")
KINDS = ["none", "landlock"]


def _box(kind: str, run_dir: Path) -> sandbox.Sandbox:
    if kind == "landlock" and FALLBACK:
        pytest.skip(f"no fallback sandbox here: {FALLBACK}")
    return sandbox.make_sandbox(sandbox.SandboxSettings(kind, writable=()), run_dir)


def _work(tmp_path: Path, name: str = "w") -> Path:
    work = tmp_path / "run" / "nodes" / name
    work.mkdir(parents=True)
    return work


def _server_pid(launcher: Launcher) -> int:
    assert launcher._server is not None
    return launcher._server.pid


def _gone(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        proc = read_proc(pid)
        if proc is None or proc.state == "Z":
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("kind", KINDS)
def test_exit_codes_signals_limits_and_output_pass_through(kind: str, tmp_path: Path) -> None:
    box = _box(kind, tmp_path / "run")
    work = _work(tmp_path)

    async def main() -> list:
        launcher = Launcher()
        try:
            results = []
            for command, limits in (
                ("echo out; echo err >&2; exit 7", Limits()),
                ("kill -TERM $$", Limits()),
                (f"exec {sys.executable} -c 'while True: pass'", Limits(cpu_seconds=1)),
                (f"{sys.executable} -c 'bytearray(512 * 1024 * 1024)'", Limits(memory_mb=200)),
                ("pwd; echo $ASI_T", Limits()),
            ):
                env = {**os.environ, "ASI_T": "given"}
                results.append(
                    await run_command(command, work, 60, limits, env, box, None, launcher)
                )
            assert launcher.launches == len(results)
            return results
        finally:
            await launcher.aclose()

    done, term, busy, hog, where = asyncio.run(main())
    assert (done.returncode, done.stdout_tail, done.stderr_tail) == (7, "out\n", "err\n")
    assert term.returncode == -signal.SIGTERM
    assert busy.returncode in (-signal.SIGXCPU, -signal.SIGKILL)
    assert hog.returncode == 1  # MemoryError: RLIMIT_AS holds
    assert where.stdout_tail == f"{work.resolve()}\ngiven\n"


@pytest.mark.parametrize("kind", KINDS)
def test_a_timeout_kills_the_evaluation(kind: str, tmp_path: Path) -> None:
    box = _box(kind, tmp_path / "run")
    work = _work(tmp_path)

    async def main():
        launcher = Launcher()
        try:
            return await run_command(
                "trap '' TERM; sleep 30",
                work,
                0.5,
                Limits(kill_grace=0.3),
                None,
                box,
                None,
                launcher,
            )
        finally:
            await launcher.aclose()

    started = time.monotonic()
    result = asyncio.run(main())
    assert result.timed_out and result.returncode is not None and result.returncode < 0
    assert time.monotonic() - started < 10


def test_concurrent_launches_keep_their_own_output(tmp_path: Path) -> None:
    box = _box("none", tmp_path / "run")
    works = [_work(tmp_path, str(i)) for i in range(8)]

    async def main():
        launcher = Launcher()
        try:
            return await asyncio.gather(
                *(
                    run_command(
                        f"sleep 0.{i}; echo {i}; exit {i}",
                        w,
                        30,
                        Limits(),
                        None,
                        box,
                        None,
                        launcher,
                    )
                    for i, w in enumerate(works)
                )
            )
        finally:
            await launcher.aclose()

    results = asyncio.run(main())
    assert [(r.returncode, r.stdout_tail) for r in results] == [(i, f"{i}\n") for i in range(8)]


def test_a_killed_server_ends_its_evaluations_and_the_next_launch_starts_anew(
    tmp_path: Path,
) -> None:
    box = _box("none", tmp_path / "run")
    work = _work(tmp_path)
    marker = f"{time.time_ns() % 10**6 + 3000}.5"  # a sleep duration nobody else uses

    async def main():
        launcher = Launcher()
        try:
            first = asyncio.create_task(
                run_command(f"sleep {marker}", work, 60, Limits(), None, box, None, launcher)
            )
            while launcher.launches == 0:
                await asyncio.sleep(0.01)
            old = _server_pid(launcher)
            await asyncio.sleep(0.2)
            os.kill(old, signal.SIGKILL)
            killed = await asyncio.wait_for(first, 20)
            again = await run_command("echo again", work, 30, Limits(), None, box, None, launcher)
            return killed, again, old, _server_pid(launcher)
        finally:
            await launcher.aclose()

    def zombies() -> set[int]:  # our children, dead and not reaped
        return {
            p.pid for p in reaper.snapshot().values() if p.ppid == os.getpid() and p.state == "Z"
        }

    before = zombies()  # another test's, if any
    with reaper.subreaper():  # as in a run: the dead server's supervisors come to us
        killed, again, old, new = asyncio.run(main())
        left = zombies() - before
    assert not left, f"an evaluation of the dead server was orphaned: {[_comm(p) for p in left]}"
    assert killed.returncode == launcher_module.KILLED and not killed.timed_out
    assert (again.returncode, again.stdout_tail) == (0, "again\n") and new != old
    sleepers = [
        pid for pid in os.listdir("/proc") if pid.isdigit() and marker in _cmdline(int(pid))
    ]
    assert all(_gone(int(pid)) for pid in sleepers), "the evaluation outlived its server"


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def test_the_server_holds_no_secret_and_is_gone_once_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-of-the-engine")
    box = _box("none", tmp_path / "run")
    work = _work(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}  # as the Engineer

    async def main():
        launcher = Launcher()
        result = await run_command("env", work, 30, Limits(), env, box, None, launcher)
        pid = _server_pid(launcher)
        server_env = Path(f"/proc/{pid}/environ").read_bytes()  # root, or our own process
        await launcher.aclose()
        return result, pid, server_env

    result, pid, server_env = asyncio.run(main())
    assert "sk-secret" not in result.stdout_tail and "PATH=" in result.stdout_tail
    names = {item.split(b"=", 1)[0].decode() for item in server_env.split(b"\0") if item}
    assert names <= set(launcher_module.SERVER_ENV), names
    assert _gone(pid)


def test_a_launcher_follows_a_new_event_loop(tmp_path: Path) -> None:
    """Each ``asyncio.run`` is a new loop: the old server is let go, a new one serves."""
    box = _box("none", tmp_path / "run")
    work = _work(tmp_path)
    launcher = Launcher()
    pids = []
    for _ in range(2):

        async def once() -> None:
            result = await run_command("true", work, 30, Limits(), None, box, None, launcher)
            assert result.returncode == 0
            pids.append(_server_pid(launcher))

        asyncio.run(once())
    asyncio.run(launcher.aclose())
    assert pids[0] != pids[1] and _gone(pids[0]) and _gone(pids[1])


def test_a_server_that_dies_before_a_launch_starts_is_replaced(tmp_path: Path) -> None:
    """The server is frozen while a launch waits in its socket, then killed: the launch is
    made again by a new server, not failed (the candidate is not to blame)."""
    box = _box("none", tmp_path / "run")
    work = _work(tmp_path)

    async def main():
        launcher = Launcher()
        try:
            await run_command("true", work, 30, Limits(), None, box, None, launcher)
            old = _server_pid(launcher)
            os.kill(old, signal.SIGSTOP)
            waiting = asyncio.create_task(
                run_command("echo second", work, 30, Limits(), None, box, None, launcher)
            )
            await asyncio.sleep(0.3)
            assert not waiting.done()
            os.kill(old, signal.SIGKILL)
            result = await asyncio.wait_for(waiting, 20)
            return result, old, _server_pid(launcher), launcher.launches
        finally:
            await launcher.aclose()

    result, old, new, launches = asyncio.run(main())
    assert (result.returncode, result.stdout_tail) == (0, "second\n")
    assert new != old and launches == 2


def test_the_reaper_never_takes_the_server_for_an_escapee(tmp_path: Path) -> None:
    """The server is the engine's child outside its process group, like an escapee that
    came back to a subreaper; it stays in the engine's session, which ``adopted`` spares."""
    box = _box("none", tmp_path / "run")
    work = _work(tmp_path)

    async def main() -> list[int]:
        launcher = Launcher()
        try:
            await run_command("true", work, 30, Limits(), None, box, None, launcher)
            pid = _server_pid(launcher)
            assert os.getpgid(pid) == pid != os.getpgid(0)
            return [pid, *(p.pid for p in reaper.adopted(reaper.snapshot(), since=0))]
        finally:
            await launcher.aclose()

    server, *adopted = asyncio.run(main())
    assert server not in adopted


def test_a_launch_too_large_for_the_server_runs_through_the_script(tmp_path: Path) -> None:
    """An environment over one datagram: that evaluation starts the supervisor script, the
    server keeps serving the others."""
    box = _box("none", tmp_path / "run")
    work = _work(tmp_path)
    # (one variable can hold at most 128 KiB: exec's limit)
    env = {**os.environ, **{f"ASI_HUGE{i}": "x" * 50_000 for i in range(3)}}

    async def main():
        launcher = Launcher()
        try:
            first = await run_command("echo one", work, 30, Limits(), None, box, None, launcher)
            huge = await run_command(
                "echo ${#ASI_HUGE2}", work, 30, Limits(), env, box, None, launcher
            )
            last = await run_command("echo two", work, 30, Limits(), None, box, None, launcher)
            return first, huge, last, launcher.launches
        finally:
            await launcher.aclose()

    first, huge, last, launches = asyncio.run(main())
    assert (first.stdout_tail, huge.stdout_tail, last.stdout_tail) == ("one\n", "50000\n", "two\n")
    assert launches == 2  # the huge one was not the server's
