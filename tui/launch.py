"""``asi-evolve run TASK --tui``: start the engine headless in the background, then attach.

The engine runs as its own detached process (new session, output to ``RUN_DIR/engine.log``),
so closing the terminal or quitting the TUI never kills a days-long run by accident. On quit
the TUI asks whether to stop the engine or leave it running; ``watch`` re-attaches later.

A new run directory must be empty when the engine creates it, so the log starts next to it
(``.NAME.engine.log``) and moves inside once the run database exists.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

from engine.store.lock import engine_alive, lock_holder
from engine.store.reader import DB_NAME, RunNotFound, RunReader
from tui.app import watch

LOG_NAME = "engine.log"
START_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 60.0


class LaunchError(Exception):
    """The engine could not be started (the message is one line)."""


def engine_argv(argv: list[str]) -> list[str]:
    """The same ``run`` command line without ``--tui``, and quiet (nobody reads its stdout)."""
    args = [a for a in argv if a != "--tui"]
    return args if "--quiet" in args else [*args, "--quiet"]


def _last_line(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""


def _is_run(run_dir: Path) -> bool:
    """The run database exists and its schema is committed (the TUI can open it)."""
    try:
        RunReader(run_dir).close()
    except RunNotFound:
        return False
    return True


def start_engine(argv: list[str], run_dir: Path) -> tuple[subprocess.Popen, Path]:
    """Start the engine detached; return once it holds the run (or raise LaunchError)."""
    run_dir = run_dir.absolute()
    if engine_alive(run_dir):
        raise LaunchError(
            f"an engine is already running on {run_dir}; attach with 'asi-evolve watch {run_dir}'"
        )
    existed = (run_dir / DB_NAME).exists()
    made = [d for d in (run_dir.parent, *run_dir.parent.parents) if not d.exists()]
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / LOG_NAME if existed else run_dir.parent / f".{run_dir.name}.{LOG_NAME}"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "engine.cli", *engine_argv(argv)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # no SIGINT/SIGHUP from this terminal
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while proc.poll() is None and time.monotonic() < deadline:
        if lock_holder(run_dir) == proc.pid and _is_run(run_dir):
            break
        time.sleep(0.1)
    created = (run_dir / DB_NAME).exists()
    if created and not existed:
        final = run_dir / LOG_NAME
        os.replace(log_path, final)  # same filesystem; the engine keeps writing to it
        log_path = final
    if proc.poll() not in (None, 0) or not created:
        reason = _last_line(log_path) or f"the engine exited with status {proc.returncode}"
        if proc.poll() is None:
            reason = f"the engine did not start within {START_TIMEOUT_S:.0f}s (see {log_path})"
        if not created:
            log_path.unlink(missing_ok=True)
            for directory in made:  # innermost first: leave nothing behind
                with contextlib.suppress(OSError):
                    directory.rmdir()
        raise LaunchError(reason.removeprefix("asi-evolve: error: ").removeprefix("asi-evolve: "))
    return proc, log_path


def run_with_tui(argv: list[str], run_dir: Path) -> int:
    """Start the engine, attach the TUI, and on quit stop the engine or leave it running."""
    try:
        proc, log_path = start_engine(argv, run_dir)
    except LaunchError as exc:
        print(f"asi-evolve: error: {exc}", file=sys.stderr)
        return 2
    choice = watch(run_dir, ask_stop_on_quit=True)
    if choice == "stop":
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
            print(f"engine stopped; resume with the same command. Log: {log_path}")
        except subprocess.TimeoutExpired:
            print(f"the engine (pid {proc.pid}) is still stopping; log: {log_path}")
        return 0
    if proc.poll() is None:
        print(
            f"engine left running headless (pid {proc.pid}); "
            f"re-attach with: asi-evolve watch {run_dir}   log: {log_path}"
        )
    else:
        print(f"the engine has exited (status {proc.returncode}); log: {log_path}")
    return 0
