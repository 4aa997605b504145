"""What every domain's evaluator does around the candidate: the shared evaluator harness.

An evaluator runs the untrusted candidate in a child process and turns what it left into the
engine's ``results.json``. Four pieces were the same in every domain and now live here:

* the child leads its own session, so a timeout kills it *and* everything it started
  (``run_child``, ``spawn``, ``kill_group``);
* only the tail of the child's log is read back, however much it printed (``tail``);
* the results go to ``$ASI_EVOLVE_RESULTS`` (``./results.json`` when run by hand), written
  whole (``write_results``);
* an error of the evaluator itself still leaves a results file that says so
  (``evaluator_error``), so the engine reports it instead of "no results.json".

Standard library only: it is imported by the evaluators, which run in their own interpreter.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import traceback
from pathlib import Path
from typing import Any

RESULTS_ENV = "ASI_EVOLVE_RESULTS"


def spawn(
    cmd: list[str],
    log_path: str | os.PathLike,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
) -> subprocess.Popen:
    """Start ``cmd`` in a new session, stdout and stderr into ``log_path``."""
    with open(log_path, "wb") as log:  # the child keeps its own descriptor
        return subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True
        )


def run_child(
    cmd: list[str],
    log_path: str | os.PathLike,
    timeout: float,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
) -> int | None:
    """Run ``cmd`` to the end (its exit code) or to ``timeout`` (None: its group was killed)."""
    proc = spawn(cmd, log_path, env=env, cwd=cwd)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        return None
    return proc.returncode


def kill_group(proc: subprocess.Popen) -> None:
    """Kill the child and anything it started (it leads its own session), then reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait()


def tail(path: str | os.PathLike, limit: int) -> str:
    """The last ``limit`` bytes of a possibly huge log file, decoded leniently."""
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        handle.seek(max(0, size - limit))
        return handle.read().decode("utf-8", errors="replace")


def results_path() -> Path:
    return Path(os.environ.get(RESULTS_ENV) or "results.json")


def write_results(result: dict[str, Any], indent: int = 2) -> Path:
    """Write the evaluation where the engine reads it; returns the path."""
    path = results_path()
    path.write_text(json.dumps(result, indent=indent), encoding="utf-8")
    return path


def evaluator_error(exc: BaseException, log_limit: int) -> dict[str, Any]:
    """The results of an evaluation whose evaluator itself failed (call in ``except``)."""
    return {
        "score": 0.0,
        "valid": False,
        "metrics": {},
        "logs": traceback.format_exc()[-log_limit:],
        "error": f"evaluator error: {type(exc).__name__}: {exc}"[:500],
    }
