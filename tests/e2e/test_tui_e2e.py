"""End to end: a real offline run, the TUI attached in tmux, ``p`` pauses the engine."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest
from conftest import REPO, make_toy_task

from engine.store.lock import engine_alive

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux"),
]


def query(run_dir: Path, sql: str) -> list[tuple]:
    try:
        with closing(sqlite3.connect(f"file:{run_dir / 'evolve.db'}?mode=ro", uri=True)) as c:
            return c.execute(sql).fetchall()
    except sqlite3.Error:
        return []


def meta(run_dir: Path, key: str) -> object:
    rows = query(run_dir, f"SELECT value FROM meta WHERE key = '{key}'")
    return json.loads(rows[0][0]) if rows else None


def wait(what: str, predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


class Tmux:
    """A private tmux server (own socket), so the test never touches a user's sessions."""

    def __init__(self, name: str) -> None:
        self.base = ["tmux", "-u", "-L", name]

    def __call__(self, *args: str) -> str:
        out = subprocess.run([*self.base, *args], capture_output=True, text=True, timeout=10)
        return out.stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "tui")

    def close(self) -> None:
        subprocess.run([*self.base, "kill-server"], capture_output=True, timeout=10)


@pytest.mark.slow
def test_watch_in_tmux_pauses_a_real_run(tmp_path: Path) -> None:
    task = make_toy_task(tmp_path / "tasks")
    run_dir = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_BASE_URL"}
    env["TOY_DELAY"] = "0.3"  # slow evaluations: the run is still going when we press p
    log = open(tmp_path / "engine.log", "wb")  # noqa: SIM115 - closed in finally
    engine = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "run", str(task), "--steps", "200"]
        + ["--run-dir", str(run_dir), "--workers", "2", "--quiet"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    tmux = Tmux(f"asi-evolve-test-{os.getpid()}")
    try:
        wait(
            "the engine to run",
            lambda: engine.poll() is None and meta(run_dir, "state") == "running",
            60,
        )
        watch = f"cd {shlex.quote(str(REPO))} && {shlex.quote(sys.executable)} -m engine.cli"
        watch += f" watch {shlex.quote(str(run_dir))}"
        tmux("new-session", "-d", "-s", "tui", "-x", "120", "-y", "40", watch)
        wait("the TUI to show the live engine", lambda: "● running" in tmux.screen(), 30)
        tmux("send-keys", "-t", "tui", "p")
        wait("the engine to pause", lambda: meta(run_dir, "state") == "paused", 15)
        assert query(run_dir, "SELECT kind, status FROM commands") == [("pause", "handled")]
        wait("the TUI to show the pause", lambda: "● paused" in tmux.screen(), 15)
        wait("the footer to offer resume", lambda: "p resume" in tmux.screen(), 15)
        wait(
            "the speed and since-best",
            lambda: "/min" in (t := tmux.screen()) and "since best" in t,
            15,
        )
        tmux("send-keys", "-t", "tui", "p")
        wait("the engine to resume", lambda: meta(run_dir, "state") == "running", 15)
        wait("the footer to offer pause", lambda: "p pause" in tmux.screen(), 15)
        steps = meta(run_dir, "steps_total")
        assert steps == 200
        tmux("send-keys", "-t", "tui", "q")
        wait("the TUI to quit", lambda: "● running" not in tmux.screen(), 15)
        assert engine.poll() is None  # quitting the TUI never stops the engine
        with closing(sqlite3.connect(run_dir / "evolve.db")) as conn, conn:
            conn.execute(
                "INSERT INTO commands(ts, kind, arg, status) VALUES (?, 'stop', '', 'new')",
                (time.time(),),
            )
        engine.wait(timeout=60)
        assert meta(run_dir, "state") == "stopped"
    finally:
        tmux.close()
        if engine.poll() is None:
            engine.terminate()
            engine.wait(timeout=30)
        log.close()


@pytest.mark.slow
def test_run_with_tui_leaves_or_stops_the_engine(tmp_path: Path) -> None:
    task = make_toy_task(tmp_path / "tasks")
    run_dir = tmp_path / "runs" / "toy"  # its parent does not exist yet
    tmux = Tmux(f"asi-evolve-tui-{os.getpid()}")
    base = f"cd {shlex.quote(str(REPO))} && TOY_DELAY=0.3 {shlex.quote(sys.executable)}"
    base += f" -m engine.cli run {shlex.quote(str(task))} --steps 200 --run-dir"
    base += f" {shlex.quote(str(run_dir))} --tui; echo EXIT=$?; sleep 60"
    try:
        tmux("new-session", "-d", "-s", "tui", "-x", "120", "-y", "40", base)
        wait("the TUI to show the live engine", lambda: "● running" in tmux.screen(), 60)
        tmux("send-keys", "-t", "tui", "q")
        wait("the quit question", lambda: "Leave running" in tmux.screen(), 15)
        tmux("send-keys", "-t", "tui", "l")
        wait("the TUI to quit", lambda: "EXIT=0" in tmux.screen(), 15)
        assert "engine left running headless" in tmux.screen()
        assert (run_dir / "engine.log").is_file()
        assert not list(run_dir.parent.glob(".*.log"))  # the log moved into the run dir
        assert meta(run_dir, "state") == "running"
        tmux("kill-session", "-t", "tui")

        # A second --tui on the same run refuses to start another engine.
        out = subprocess.run(
            ["bash", "-c", base.replace("; echo EXIT=$?; sleep 60", "")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 2 and "already running" in out.stderr

        # Attach again with watch... and this time stop it from a --tui session's question:
        # first stop the headless engine, then resume the run with --tui and choose stop.
        with closing(sqlite3.connect(run_dir / "evolve.db")) as conn, conn:
            conn.execute(
                "INSERT INTO commands(ts, kind, arg, status) VALUES (?, 'stop', '', 'new')",
                (time.time(),),
            )
        wait("the headless engine to stop", lambda: meta(run_dir, "state") == "stopped", 60)
        wait("the engine to exit", lambda: not engine_alive(run_dir), 30)
        tmux("new-session", "-d", "-s", "tui", "-x", "120", "-y", "40", base)
        wait("the resumed engine", lambda: "● running" in tmux.screen(), 60)
        tmux("send-keys", "-t", "tui", "q")
        wait("the quit question", lambda: "Stop engine" in tmux.screen(), 15)
        tmux("send-keys", "-t", "tui", "s")
        wait("the TUI to quit", lambda: "EXIT=0" in tmux.screen(), 60)
        assert "engine stopped" in tmux.screen()
        assert meta(run_dir, "state") == "stopped"
    finally:
        tmux.close()
        if meta(run_dir, "state") in ("running", "paused"):
            with closing(sqlite3.connect(run_dir / "evolve.db")) as conn, conn:
                conn.execute(
                    "INSERT INTO commands(ts, kind, arg, status) VALUES (?, 'stop', '', 'new')",
                    (time.time(),),
                )
