"""``asi-evolve stop|pause|resume`` against a real engine, and how a run's exit status tells
how it ended: 0 finished or stopped by a person, 128 + the signal when a signal stopped it
(issue 21)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, cli, make_toy_task

from engine.store.lock import RunLock
from engine.store.reader import RunNotFound, RunReader
from engine.store.run_store import DB_NAME, RunStore


def _start(task: str | Path, run: Path, *extra: str, delay: str = "0.3") -> subprocess.Popen:
    """An engine in a subprocess (output captured), as a person would start it."""
    env = {**os.environ, "TOY_DELAY": delay}
    env.pop("OPENAI_BASE_URL", None)
    argv = [sys.executable, "-m", "engine.cli", "run", str(task), "--run-dir", str(run)]
    return subprocess.Popen(
        [*argv, *extra],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _state(run: Path) -> str | None:
    """The engine's state as the run database says (None before the database exists)."""
    try:
        reader = RunReader(run)
    except RunNotFound:
        return None
    try:
        return reader.meta().get("state")
    finally:
        reader.close()


def _wait_running(engine: subprocess.Popen, run: Path, timeout: float = 120) -> None:
    """Until the engine's loop runs (its signal handlers are installed by then)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if engine.poll() is not None:
            raise AssertionError(f"the engine exited early: {engine.communicate()}")
        if _state(run) == "running":
            return
        time.sleep(0.1)
    raise AssertionError(f"the engine did not start running within {timeout}s")


def _finish(engine: subprocess.Popen, timeout: float = 60) -> tuple[str, str]:
    try:
        return engine.communicate(timeout=timeout)
    finally:
        if engine.poll() is None:
            engine.kill()
            engine.communicate()


def _status(run: Path) -> dict:
    result = cli("status", str(run), "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _one_line(result: subprocess.CompletedProcess, code: int, fragment: str) -> None:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], result.stderr


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_pause_resume_and_stop_a_real_circle_packing_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    engine = _start("circle_packing", run, "--steps", "200", "--quiet")
    try:
        _wait_running(engine, run)
        paused = cli("pause", str(run))
        assert paused.returncode == 0, paused.stderr
        assert paused.stdout.startswith("engine: paused"), paused.stdout
        assert _status(run)["engine"] == "paused"

        resumed = cli("resume", str(run))
        assert resumed.returncode == 0, resumed.stderr
        assert resumed.stdout.strip() == "engine: resumed"
        assert _status(run)["engine"] == "running"

        stopped = cli("stop", str(run), "--wait", "30")
        assert stopped.returncode == 0, stopped.stderr
        assert stopped.stdout.strip() == "engine: stopping"
        out, err = _finish(engine)
    finally:
        if engine.poll() is None:
            engine.kill()
            engine.communicate()
    assert engine.returncode == 0, err  # a person asked for this stop: a success
    assert "run stopped:" in out, out
    info = _status(run)
    assert info["engine"] == "not running" and info["last_state"] == "stopped", info

    # No engine now: refused in one line, exit 1, and the run database is left as it was.
    before = _digest(run / DB_NAME)
    for kind in ("stop", "pause", "resume"):
        refused = cli(kind, str(run))
        _one_line(refused, 1, "no engine is running")
        assert "nothing sent" in refused.stderr and refused.stdout == ""
    assert _digest(run / DB_NAME) == before
    reader = RunReader(run)
    try:
        kinds = [r[0] for r in reader.query("SELECT kind FROM commands ORDER BY id")]
    finally:
        reader.close()
    assert kinds == ["pause", "resume", "stop"]


def test_bad_run_dirs_and_waits_are_one_line_and_exit_2(tmp_path: Path) -> None:
    _one_line(cli("stop", str(tmp_path / "nowhere")), 2, "is not a directory")
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_line(cli("pause", str(empty)), 2, "is not a run directory")
    assert list(empty.iterdir()) == []
    store = RunStore.create(tmp_path / "run")
    store.close()
    _one_line(cli("resume", str(tmp_path / "run"), "--wait", "-1"), 2, "--wait must be >= 0")
    _one_line(cli("stop"), 2, "required")


def _answer_next_command(run: Path, ok: bool, result: str, timeout: float = 30) -> str:
    """Play the engine: answer the first new command; returns its kind."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        store = RunStore.open(run)
        try:
            commands = store.new_commands()
            if commands:
                store.finish_command(commands[0].id, result, ok)
                return commands[0].kind
        finally:
            store.close()
        time.sleep(0.05)
    raise AssertionError("no command was written")


@pytest.mark.parametrize(
    ("ok", "code", "stream", "line"),
    [
        (True, 0, "stdout", "engine: resumed"),
        (False, 1, "stderr", "asi-evolve: the engine rejected resume: not now"),
    ],
)
def test_the_engine_answer_decides_the_exit_status(
    tmp_path: Path, ok: bool, code: int, stream: str, line: str
) -> None:
    """An engine's answer, as this test writes it while holding the run's lock."""
    run = tmp_path / "run"
    RunStore.create(run).close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI")}
    with RunLock(run):
        proc = subprocess.Popen(
            [sys.executable, "-m", "engine.cli", "resume", str(run), "--wait", "30"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert _answer_next_command(run, ok, "resumed" if ok else "not now") == "resume"
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == code, (out, err)
    assert (out if stream == "stdout" else err).strip() == line


def test_no_answer_in_time_leaves_the_command_queued(tmp_path: Path) -> None:
    run = tmp_path / "run"
    RunStore.create(run).close()
    with RunLock(run):  # "an engine" that never polls
        result = cli("pause", str(run), "--wait", "0.5")
    _one_line(result, 1, "no answer from the engine within 0.5s")
    assert "stays queued" in result.stderr
    store = RunStore.open(run, readonly=True)
    try:
        assert [c.kind for c in store.new_commands()] == ["pause"]
    finally:
        store.close()


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_run_stopped_by_a_signal_exits_128_plus_the_signal(
    tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    task = make_toy_task(tmp_path / "tasks")
    run = tmp_path / "run"
    engine = _start(task, run, "--steps", "200", "--no-cognition", "--quiet")
    _wait_running(engine, run)
    engine.send_signal(sig)
    out, err = _finish(engine)
    assert engine.returncode == code, (out, err)
    assert "Traceback" not in err, err
    assert "run stopped:" in out, out  # the summary line still prints
    info = _status(run)
    assert info["last_state"] == "stopped" and info["steps_done"] < 200


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_finished_run_exits_0(tmp_path: Path) -> None:
    task = make_toy_task(tmp_path / "tasks")
    result = cli(
        "run", str(task), "--steps", "2", "--run-dir", str(tmp_path / "run"), "--no-cognition"
    )
    assert result.returncode == 0, result.stderr
    assert "run finished: 2/2 steps" in result.stdout
