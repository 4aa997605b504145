"""No evaluator process outlives its evaluation, its engine, or a SIGHUP."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from engine.execution import reaper
from engine.execution.engineer import Limits, run_command

ESCAPE = textwrap.dedent(
    """
    import os, sys, time
    # A grandchild that leaves the evaluator's session and is re-parented away.
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            open("escaped.pid", "w").write(str(os.getpid()))
            time.sleep(120)
        os._exit(0)
    # A second one that clears its environment but stays in the evaluator's session.
    if os.fork() == 0:
        if os.fork() == 0:
            os.execve("/bin/sleep", ["sleep", os.environ.get("ASI_TEST_SLEEP", "121")], {})
        os._exit(0)
    while not os.path.exists("escaped.pid"):
        time.sleep(0.01)
    time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 0.2)
    """
)


def _state(pid: int) -> str | None:
    """'Z' for a zombie, None when the pid is gone, else the process state."""
    proc = reaper.read_proc(pid)
    return None if proc is None else proc.state


def _dead(pid: int, within: float = 3.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if _state(pid) in (None, "Z", "X"):
            return True
        time.sleep(0.02)
    return False


def _sleepers(marker: str) -> list[int]:
    """Live processes whose command line holds ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmd and _state(int(entry.name)) not in (None, "Z", "X"):
            found.append(int(entry.name))
    return found


def _write_script(tmp_path: Path) -> Path:
    script = tmp_path / "escape.py"
    script.write_text(ESCAPE)
    return script


def test_setsid_double_fork_is_dead_after_the_evaluation(tmp_path: Path) -> None:
    script = _write_script(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    # A sleep of its own: the test below leaves a "sleep 121" running for a moment.
    mark = f"121.{os.getpid()}"
    env = {**os.environ, "ASI_TEST_SLEEP": mark}
    with reaper.subreaper() as adopted:
        run = asyncio.run(
            run_command(
                f"{sys.executable} {script}", work, 30, Limits(), env, reaper=reaper.Reaper()
            )
        )
        assert run.returncode == 0, run.stderr_tail
        escaped = int((work / "escaped.pid").read_text())
        assert _dead(escaped), "the setsid + double-fork grandchild survived"
        assert _sleepers(f"sleep {mark}") == [], "the env-cleared grandchild survived"
        if adopted:  # it came back to us and was reaped: not even a zombie is left
            assert _state(escaped) is None


@pytest.mark.slow
def test_without_the_reaper_the_grandchild_would_survive(tmp_path: Path) -> None:
    """The test above can fail: the same evaluator without a reaper leaves it running."""
    script = _write_script(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    asyncio.run(run_command(f"{sys.executable} {script}", work, 30, Limits(), reaper=None))
    escaped = int((work / "escaped.pid").read_text())
    try:
        assert not _dead(escaped, within=0.3)
    finally:
        proc = reaper.read_proc(escaped)
        if proc is not None:
            reaper.kill_exact(escaped, proc.start)
        for pid in _sleepers("sleep 121"):
            proc = reaper.read_proc(pid)
            if proc is not None and proc.sid != os.getsid(0):
                reaper.kill_exact(pid, proc.start)


@pytest.mark.slow
def test_a_timeout_and_a_cancellation_are_swept_too(tmp_path: Path) -> None:
    script = _write_script(tmp_path)
    for case in ("timeout", "cancel"):
        work = tmp_path / case
        work.mkdir()

        async def go(work: Path = work, case: str = case) -> None:
            task = asyncio.create_task(
                run_command(
                    f"{sys.executable} {script} 60",
                    work,
                    1.5 if case == "timeout" else 60,
                    Limits(kill_grace=0.2),
                    reaper=reaper.Reaper(),
                )
            )
            while not (work / "escaped.pid").exists():
                await asyncio.sleep(0.02)
            if case == "cancel":
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            else:
                assert (await task).timed_out

        asyncio.run(go())
        assert _dead(int((work / "escaped.pid").read_text())), case


ENGINE = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from engine.execution import reaper
    from engine.execution.engineer import Limits, run_command
    run_dir, script = Path(sys.argv[1]), sys.argv[2]
    work = run_dir / "nodes" / "1"
    work.mkdir(parents=True)
    asyncio.run(run_command(
        f"{sys.executable} {script} 120", work, 300, Limits(), reaper=reaper.Reaper(run_dir)
    ))
    """
)


def test_orphans_of_a_killed_engine_are_killed_on_resume(tmp_path: Path) -> None:
    script = _write_script(tmp_path)
    engine_py = tmp_path / "engine_main.py"
    engine_py.write_text(ENGINE)
    run_dir = tmp_path / "run"
    engine = subprocess.Popen([sys.executable, str(engine_py), str(run_dir), str(script)])
    pid_file = run_dir / "nodes" / "1" / "escaped.pid"
    deadline = time.monotonic() + 20
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pid_file.exists()
    time.sleep(0.2)
    markers = list((run_dir / reaper.MARKERS_DIR).glob("*.json"))
    assert len(markers) == 1
    leader = json.loads(markers[0].read_text())["pid"]
    engine.kill()  # SIGKILL: no cleanup of any kind
    engine.wait()
    escaped = int(pid_file.read_text())
    assert not _dead(escaped, within=0.3) and not _dead(leader, within=0.1)  # orphans now
    assert reaper.kill_orphans(run_dir) >= 2
    assert _dead(escaped) and _dead(leader)
    assert not list((run_dir / reaper.MARKERS_DIR).glob("*.json"))
    assert reaper.kill_orphans(run_dir) == 0


def test_kill_orphans_never_hits_a_recycled_pid_or_a_live_engine(tmp_path: Path) -> None:
    bystander = subprocess.Popen(["sleep", "30"])
    try:
        start = reaper.read_proc(bystander.pid).start
        me = reaper.read_proc(os.getpid())
        markers = tmp_path / reaper.MARKERS_DIR
        markers.mkdir()
        boot = reaper._boot_id()
        dead_engine = {"pid": 1, "start": -5}
        # Same pid as the bystander but another start time: a recycled pid.
        (markers / "a.json").write_text(
            json.dumps(
                {
                    "token": "aaaa",
                    "boot_id": boot,
                    "engine": dead_engine,
                    "pid": bystander.pid,
                    "start": start - 1,
                }
            )
        )
        # The bystander itself, but the marker's engine (this process) is alive.
        (markers / "b.json").write_text(
            json.dumps(
                {
                    "token": "bbbb",
                    "boot_id": boot,
                    "engine": {"pid": me.pid, "start": me.start},
                    "pid": bystander.pid,
                    "start": start,
                }
            )
        )
        (markers / "c.json").write_text("{not json")
        (markers / "d.json").write_text(
            json.dumps({"token": "dddd", "boot_id": "another-boot", "pid": bystander.pid})
        )
        assert reaper.kill_orphans(tmp_path) == 0
        assert bystander.poll() is None
        assert sorted(p.name for p in markers.iterdir()) == ["b.json", "c.json"]
    finally:
        bystander.kill()
        bystander.wait()


def test_subreaper_context_restores_the_setting() -> None:
    before = reaper.is_subreaper()
    with reaper.subreaper() as ok:
        assert reaper.is_subreaper() == ok
    assert reaper.is_subreaper() == before


TASK_YAML = """\
name: hup_task
description: task.md
initial_program: initial.py
evaluator: evaluate.py
timeout: 300
"""

EVALUATOR = textwrap.dedent(
    """
    import os, time
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            time.sleep(300)
        os._exit(0)
    time.sleep(300)
    """
)


def _task(tmp_path: Path, sandbox: str) -> tuple[Path, Path]:
    task = tmp_path / "task"
    task.mkdir()
    (task / "task.yaml").write_text(TASK_YAML)
    (task / "task.md").write_text("# hup\n")
    (task / "initial.py").write_text("X = 1\n")
    (task / "evaluate.py").write_text(EVALUATOR)
    config = tmp_path / "config.yaml"
    config.write_text(f"engineer:\n  sandbox: {sandbox}\n  sandbox_writable: []\n")
    return task, config


def _start_engine(task: Path, run_dir: Path, config: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI")}
    argv = [sys.executable, "-m", "engine.cli", "run", str(task), "--run-dir", str(run_dir)]
    argv += ["--steps", "2", "--llm", "offline", "--no-cognition", "--quiet"]
    return subprocess.Popen(
        [*argv, "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        start_new_session=True,  # its own group: we signal only the engine itself
    )


def _wait_for_evaluators(engine: subprocess.Popen, run_dir: Path) -> list[int]:
    """The evaluation's processes once all three run: shell or sandbox, evaluator and
    the escaped grandchild."""
    deadline = time.monotonic() + 40
    evaluators: list[int] = []
    while time.monotonic() < deadline and engine.poll() is None:
        evaluators = _carriers(run_dir)
        if len(evaluators) >= 3:
            return evaluators
        time.sleep(0.1)
    return evaluators


def _stop(engine: subprocess.Popen, sig: int) -> str:
    try:
        engine.send_signal(sig)
        out, _ = engine.communicate(timeout=30)
    finally:
        if engine.poll() is None:
            engine.kill()
            engine.wait()
    return out.decode(errors="replace")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("sandbox", ["auto", "landlock", "none"])
def test_sighup_stops_a_real_run_and_leaves_no_evaluator(tmp_path: Path, sandbox: str) -> None:
    task, config = _task(tmp_path, sandbox)
    run_dir = tmp_path / "run"
    engine = _start_engine(task, run_dir, config)
    evaluators = _wait_for_evaluators(engine, run_dir)
    assert evaluators, "the evaluator never started"
    text = _stop(engine, signal.SIGHUP)
    assert "Traceback" not in text, text
    assert engine.returncode == 128 + signal.SIGHUP, text  # 129: interrupted, not finished
    assert "run stopped" in text, text
    assert all(_dead(pid) for pid in evaluators), [_state(p) for p in evaluators]
    assert _carriers(run_dir) == []


@pytest.mark.timeout(60)
@pytest.mark.parametrize("sandbox", ["auto", "landlock", "none"])
def test_evaluators_of_an_engine_killed_with_sigkill_are_gone_on_resume(
    tmp_path: Path, sandbox: str
) -> None:
    """auto (bubblewrap or the fallback's PID namespace) and none (the supervisor, told by
    its parent-death signal) alike: they die with the engine, before any resume."""
    task, config = _task(tmp_path, sandbox)
    run_dir = tmp_path / "run"
    first = _start_engine(task, run_dir, config)
    old = _wait_for_evaluators(first, run_dir)
    assert len(old) >= 3, "the evaluator never started"
    _stop(first, signal.SIGKILL)
    assert all(_dead(pid, within=10) for pid in old), [_state(p) for p in old]
    second = _start_engine(task, run_dir, config)
    try:
        new = _wait_for_evaluators(second, run_dir)
        assert new and not set(new) & set(old)  # the re-run started with a fresh evaluator
    finally:
        text = _stop(second, signal.SIGTERM)
    assert "resuming" in text and "Traceback" not in text, text
    assert second.returncode == 128 + signal.SIGTERM, text  # 143: interrupted by SIGTERM
    assert sorted(p.name for p in (run_dir / "nodes").iterdir()) == ["0", "0.attempt-1"]
    assert _carriers(run_dir) == []


def _carriers(run_dir: Path) -> list[int]:
    """Live processes of evaluations in ``run_dir`` (other tests may run beside us), by
    their work dir: under bubblewrap they carry no reaper token (its PID namespace ends
    them; ``Sandbox.contains_all``)."""
    found = []
    needle = f"ASI_EVOLVE_WORKDIR={run_dir.resolve()}".encode()
    for pid, proc in reaper.snapshot().items():
        if not reaper.alive(proc):
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if any(item.startswith(needle) for item in environ.split(b"\0")):
            found.append(pid)
    return found


# Kills its own supervisor first (possible without a sandbox: same user, no scoping), so
# that the escapee's orphan comes to the engine instead.
SUPERVISOR_KILLER = textwrap.dedent(
    """
    import os, signal, sys, time
    marker = sys.argv[1]
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.execve("/bin/sleep", ["sleep", marker], {})
        os._exit(0)
    time.sleep(0.3)
    pid = os.getppid()
    while pid > 1:
        with open(f"/proc/{pid}/comm") as f:
            if f.read().strip() == "asi-supervisor":
                os.kill(pid, signal.SIGKILL)
                break
        with open(f"/proc/{pid}/stat") as f:
            pid = int(f.read().rsplit(")", 1)[1].split()[1])
    time.sleep(0.3)
    """
)


def test_an_orphan_whose_supervisor_was_killed_is_killed_by_the_engine(tmp_path: Path) -> None:
    """The engine is a subreaper: the escapee comes to it once the supervisor is gone, and
    the engine kills it after the evaluation (it started a session of its own and is no
    evaluator the engine waits for)."""
    from engine.execution.sandbox import SandboxSettings, make_sandbox

    script = tmp_path / "killer.py"
    script.write_text(SUPERVISOR_KILLER)
    run_dir = tmp_path / "run"
    work = run_dir / "nodes" / "1"
    work.mkdir(parents=True)
    box = make_sandbox(SandboxSettings("none", writable=()), run_dir)
    marker = f"{3000 + os.getpid() % 1000}.{time.monotonic_ns() % 10**6}"
    me = reaper.read_proc(os.getpid())
    started = me.start if me is not None else 0
    with reaper.subreaper() as adopted:
        if not adopted:
            pytest.skip("cannot become a child subreaper here")
        try:
            run = asyncio.run(
                run_command(
                    f"{sys.executable} {script} {marker}",
                    work,
                    30,
                    Limits(),
                    sandbox=box,
                    reaper=reaper.Reaper(run_dir),
                )
            )
            assert run.returncode == -signal.SIGKILL  # the supervisor's death, as reported
            assert _sleepers(f"sleep {marker}") == [], "the orphan outlived its evaluation"
            # Its evaluator (the shell, killed by the supervisor's death) and the escapee's
            # exited parent came to us too: reaped by this evaluation's sweep or, when they
            # came after it (a loaded machine), by the next one's; never left for the run.
            asyncio.run(
                run_command("true", work, 30, Limits(), sandbox=box, reaper=reaper.Reaper(run_dir))
            )
            leftovers = [
                p
                for p in reaper.snapshot().values()
                if p.ppid == os.getpid() and p.state == "Z" and p.start >= started
            ]
            assert leftovers == [], leftovers
        finally:
            for pid in _sleepers(f"sleep {marker}"):
                proc = reaper.read_proc(pid)
                if proc is not None:
                    reaper.kill_exact(pid, proc.start)


def test_a_clean_supervisor_exit_spares_the_engine_its_proc_scan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under a supervisor (``sandbox: none``) an exit code means the supervisor killed and
    reaped the whole evaluation: the engine skips its /proc sweep, and the setsid +
    double-fork escapee is dead all the same. A supervisor that dies by a signal (killed
    here by its own evaluator) is not taken at its word: the engine sweeps, and keeps
    looking for adopted orphans on the next evaluation."""
    from engine.execution.sandbox import SandboxSettings, make_sandbox

    scans: list[str] = []
    real = reaper.stop_and_kill

    def counted(find, seconds):  # type: ignore[no-untyped-def]
        scans.append("scan")
        return real(find, seconds)

    monkeypatch.setattr(reaper, "stop_and_kill", counted)
    run_dir = tmp_path / "run"
    work = run_dir / "nodes" / "1"
    work.mkdir(parents=True)
    box = make_sandbox(SandboxSettings("none", writable=()), run_dir)
    escape, killer = _write_script(tmp_path), tmp_path / "killer.py"
    killer.write_text(SUPERVISOR_KILLER)
    mark = f"123.{os.getpid()}"
    marker = f"{4000 + os.getpid() % 1000}.{time.monotonic_ns() % 10**6}"
    env = {**os.environ, "ASI_TEST_SLEEP": mark}
    keeper = reaper.Reaper(run_dir)
    me = reaper.read_proc(os.getpid())
    started = me.start if me is not None else 0

    def run(command: str) -> int | None:
        done = asyncio.run(run_command(command, work, 30, Limits(), env, box, keeper))
        return done.returncode

    with reaper.subreaper() as adopted:
        if not adopted:
            pytest.skip("cannot become a child subreaper here")
        try:
            assert run("true") == 0
            assert scans == ["scan"]  # a new reaper looks once: it cannot know what came before
            assert run(f"{sys.executable} {escape}") == 0
            assert scans == ["scan"], "a clean exit still cost a /proc scan"
            escaped = int((work / "escaped.pid").read_text())
            assert _dead(escaped), "the setsid + double-fork grandchild survived"
            assert _sleepers(f"sleep {mark}") == []
            assert list((run_dir / reaper.MARKERS_DIR).iterdir()) == []
            assert run(f"{sys.executable} {killer} {marker}") == -signal.SIGKILL
            assert scans == ["scan"] * 2  # the supervisor died by a signal: swept
            assert _sleepers(f"sleep {marker}") == [], "the orphan outlived its evaluation"
            assert run("true") == 0
            assert len(scans) == 3  # after an unclean end the next one looks for orphans
            for _ in range(5):  # until a sweep finds no orphan and no zombie left
                count = len(scans)
                assert run("true") == 0
                if len(scans) == count:
                    break
            else:
                pytest.fail("clean exits never stopped scanning for orphans")
            zombies = [
                p
                for p in reaper.snapshot().values()
                if p.ppid == os.getpid() and p.state == "Z" and p.start >= started
            ]
            assert zombies == [], "an adopted zombie was left"
        finally:
            for pid in _sleepers(f"sleep {marker}") + _sleepers(f"sleep {mark}"):
                proc = reaper.read_proc(pid)
                if proc is not None:
                    reaper.kill_exact(pid, proc.start)
