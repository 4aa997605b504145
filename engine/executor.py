"""The Engineer: runs a candidate's experiment and turns it into a structured result.

A candidate is evaluated by writing its code to ``WORKDIR/<program_name>`` and running
the task's evaluate command (a shell command) in ``WORKDIR`` under a wall-clock limit.
The command runs in its own process group, so that on a timeout, on cancellation and
after a normal exit everything it started (grandchildren included) is killed: a run
never leaves processes behind. Only the tail of stdout/stderr is kept, so a program that
prints gigabytes costs no memory.

The evaluator reports through a JSON file whose path is in ``$ASI_EVOLVE_RESULTS``
(always ``WORKDIR/results.json``)::

    {
      "score":   float,            # required when valid; higher is better for "maximize"
      "valid":   bool,             # optional, default true; false = a failed candidate
      "metrics": {str: number|str},# optional, shown to the agents and in the TUI
      "logs":    str,              # optional, free form (truncated to 20,000 chars)
      "error":   str               # optional, the reason when "valid" is false
    }

Extra keys are kept. The evaluator also sees ``$ASI_EVOLVE_PROGRAM`` (the program
file), ``$ASI_EVOLVE_WORKDIR`` and ``PYTHONUNBUFFERED=1``. A non-zero exit, a timeout,
a missing or malformed file, a missing, non-numeric or non-finite score, or
``"valid": false`` make the evaluation fail with a one-line reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import resource
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.task import TaskSpec

RESULTS_NAME = "results.json"
# What is kept in ``Evaluation.results`` (it is stored in the database for every node).
STORED_TAIL_CHARS = 4000
STORED_LOGS_CHARS = 20_000
REASON_CHARS = 200
# A larger results.json is refused rather than read into memory.
MAX_RESULTS_BYTES = 16 * 1024 * 1024

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


@dataclass
class Evaluation:
    """The outcome of evaluating one candidate, ready to be stored on its node."""

    ok: bool
    score: float | None
    results: dict[str, Any]
    error: str
    runtime: float


# ---------------------------------------------------------------------------- commands
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


def _rlimit_setter(limits: Limits) -> Callable[[], None] | None:
    """A function for ``preexec_fn`` that applies the limits, or None when there are none."""
    wanted: list[tuple[int, int]] = []
    if limits.cpu_seconds is not None:
        wanted.append((resource.RLIMIT_CPU, max(1, int(limits.cpu_seconds))))
    if limits.memory_mb is not None:
        wanted.append((resource.RLIMIT_AS, max(1, int(limits.memory_mb)) * 1024 * 1024))
    if not wanted:
        return None

    def apply() -> None:  # runs in the child between fork and exec: keep it minimal
        for which, value in wanted:
            _, hard = resource.getrlimit(which)
            if hard != resource.RLIM_INFINITY:
                value = min(value, hard)
            # For CPU a hard limit one second above the soft one lets SIGXCPU arrive first.
            new_hard = hard
            if which == resource.RLIMIT_CPU and hard == resource.RLIM_INFINITY:
                new_hard = value + 1
            elif which == resource.RLIMIT_AS:
                new_hard = value
            resource.setrlimit(which, (value, new_hard))

    return apply


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def _wait_exit(proc: asyncio.subprocess.Process, timeout: float) -> bool:
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


async def _wait_quiet(
    proc: asyncio.subprocess.Process, readers: list[asyncio.Task[None]], timeout: float
) -> None:
    """Wait up to ``timeout`` for the shell to exit and for its output pipes to close."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(0.0, timeout)
    if not await _wait_exit(proc, timeout):
        return
    remaining = deadline - loop.time()
    if remaining > 0:
        await asyncio.wait(readers, timeout=remaining)


def _close_pipes(proc: asyncio.subprocess.Process, readers: list[asyncio.Task[None]]) -> None:
    """Give up on output a process outside the group may still hold open."""
    for reader in readers:
        reader.cancel()
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
) -> RunResult:
    """Run ``command`` with ``/bin/sh -c`` in its own process group under ``timeout``.

    On a timeout the group gets SIGTERM, then SIGKILL after ``limits.kill_grace``; after
    a normal exit whatever is left in the group gets SIGKILL; on cancellation the group
    is killed and CancelledError propagates. ``env=None`` inherits the environment.
    A process that leaves the group (``setsid``) cannot be tracked this way.
    """
    loop = asyncio.get_running_loop()
    start = loop.time()
    proc = await asyncio.create_subprocess_exec(
        "/bin/sh",
        "-c",
        command,
        cwd=str(cwd),
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
        preexec_fn=_rlimit_setter(limits),
    )
    pgid = proc.pid  # the session leader's pid is the group id
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
            _signal_group(pgid, signal.SIGTERM)
            await _wait_quiet(proc, readers, limits.kill_grace)
        _signal_group(pgid, signal.SIGKILL)  # leftovers: grandchildren, SIGTERM ignorers
        await _wait_exit(proc, _REAP_TIMEOUT)
        _, pending = await asyncio.wait(readers, timeout=_DRAIN_TIMEOUT)
        if pending:
            _close_pipes(proc, readers)
    except BaseException:  # cancelled (the engine is stopping) or broken: kill, re-raise
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


# ---------------------------------------------------------------------------- Engineer
class Engineer:
    """Evaluates candidates of one task: precheck, run, parse ``results.json``."""

    def __init__(
        self, task: TaskSpec, limits: Limits | None = None, secret_env: tuple[str, ...] = ()
    ) -> None:
        self.task = task
        self.limits = limits or Limits()
        # LLM-written programs must not see the API keys the engine holds.
        self.secret_env = {"OPENAI_API_KEY", *secret_env}

    async def evaluate(self, code: str, workdir: Path, timeout: float | None = None) -> Evaluation:
        """Evaluate ``code`` in ``workdir``; never raises for a failing candidate.

        ``runtime`` covers precheck and evaluation; ``results["eval_runtime"]`` only the
        command that ran last.
        """
        started = time.monotonic()
        workdir = Path(workdir).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        program = workdir / self.task.program_name
        program.parent.mkdir(parents=True, exist_ok=True)
        program.write_text(code, encoding="utf-8")
        results_file = workdir / RESULTS_NAME
        results_file.unlink(missing_ok=True)  # a re-run after a crash must not read it
        env = {
            **{k: v for k, v in os.environ.items() if k not in self.secret_env},
            "ASI_EVOLVE_PROGRAM": str(program),
            "ASI_EVOLVE_WORKDIR": str(workdir),
            "ASI_EVOLVE_RESULTS": str(results_file),
            "PYTHONUNBUFFERED": "1",
        }

        def finish(
            ok: bool, results: dict[str, Any], error: str, score: float | None = None
        ) -> Evaluation:
            runtime = time.monotonic() - started
            return Evaluation(ok, score if ok else None, results, error, runtime)

        if self.task.precheck_command:
            command = self.task.command_for(program, workdir, template=self.task.precheck_command)
            timeout_s = self.task.precheck_timeout
            run, failure = await self._run(command, workdir, timeout_s, env, "precheck")
            if run is None or failure:
                results = _run_results(run) if run else {}
                results["precheck_rejected"] = True
                return finish(False, results, f"rejected by precheck: {failure}")
            results_file.unlink(missing_ok=True)

        timeout_s = self.task.timeout if timeout is None else timeout
        command = self.task.command_for(program, workdir)
        run, failure = await self._run(command, workdir, timeout_s, env, "evaluator")
        if run is None:
            return finish(False, {}, failure)

        data, problem = _read_results(results_file)
        results = dict(data) if data is not None else {}
        if isinstance(results.get("logs"), str):
            results["logs"] = _tail_chars(results["logs"], STORED_LOGS_CHARS)
        results = _finite(results)
        results.update(_run_results(run))
        if failure:
            return finish(False, results, failure)
        if data is None:
            return finish(False, results, problem)
        if not data.get("valid", True):
            reason = _one_line(str(data.get("error") or "")) or "the evaluator marked it invalid"
            return finish(False, results, f"invalid: {reason}")
        score, problem = _score(data)
        if score is None:
            return finish(False, results, problem)
        return finish(True, results, "", score)

    async def _run(
        self, command: str, workdir: Path, timeout: float, env: dict[str, str], stage: str
    ) -> tuple[RunResult | None, str]:
        """Run one stage, keep its output tails in files; (result, failure reason or "").

        The evaluator's output goes to ``stdout.txt``/``stderr.txt``, the precheck's to
        ``precheck_stdout.txt``/``precheck_stderr.txt``.
        """
        precheck = stage == "precheck"
        try:
            run = await run_command(command, workdir, timeout, self.limits, env=env)
        except OSError as exc:
            what = "could not start" if precheck else "could not start the evaluator"
            return None, f"{what}: {_one_line(str(exc))}"
        prefix = "precheck_" if precheck else ""
        for name, text in (("stdout", run.stdout_tail), ("stderr", run.stderr_tail)):
            with contextlib.suppress(OSError):
                (workdir / f"{prefix}{name}.txt").write_text(text, encoding="utf-8")
        return run, _run_failure(run, timeout, stage)


def _run_results(run: RunResult) -> dict[str, Any]:
    return {
        "returncode": run.returncode,
        "timed_out": run.timed_out,
        "stdout_tail": _tail_chars(run.stdout_tail, STORED_TAIL_CHARS),
        "stderr_tail": _tail_chars(run.stderr_tail, STORED_TAIL_CHARS),
        "eval_runtime": round(run.runtime, 3),
    }


def _run_failure(run: RunResult, timeout: float, stage: str = "evaluator") -> str:
    """Why the command failed, in one line, or "" when it exited with 0.

    A failed precheck is told by its last output line when it has one.
    """
    if run.timed_out:
        return f"timed out after {timeout:.1f}s"
    code = run.returncode
    if code == 0:
        return ""
    last = _last_line(run.stderr_tail) or _last_line(run.stdout_tail)
    if stage == "precheck" and last:
        return last
    detail = f": {last}" if last else ""
    if code is None:
        return f"{stage} did not finish{detail}"
    if code < 0:
        return f"{stage} killed by signal {_signal_name(-code)}{detail}"
    if 128 < code <= 128 + 64:  # a shell reports a signal-killed child as 128 + signal
        signame = _signal_name(code - 128)
        return f"{stage} exited with code {code} (signal {signame}?){detail}"
    return f"{stage} exited with code {code}{detail}"


def _read_results(path: Path) -> tuple[dict[str, Any] | None, str]:
    """The parsed results file, or None and the reason it cannot be used."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None, f"evaluator exited without writing {RESULTS_NAME}"
    except OSError as exc:
        return None, f"cannot read {RESULTS_NAME}: {_one_line(str(exc))}"
    if size > MAX_RESULTS_BYTES:
        return None, f"{RESULTS_NAME} too large ({size} bytes)"
    try:
        data = json.loads(path.read_text(encoding="utf-8", errors="replace"))
    except ValueError as exc:
        return None, f"malformed {RESULTS_NAME}: {_one_line(str(exc))}"
    except OSError as exc:
        return None, f"cannot read {RESULTS_NAME}: {_one_line(str(exc))}"
    if not isinstance(data, dict):
        return None, f"{RESULTS_NAME} is not a JSON object (got {type(data).__name__})"
    return data, ""


def _score(data: dict[str, Any]) -> tuple[float | None, str]:
    if "score" not in data or data["score"] is None:
        return None, f"{RESULTS_NAME} has no score"
    value = data["score"]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None, f"score is not a number: {_one_line(repr(value))}"
    score = float(value)
    if math.isnan(score):
        return None, "score is NaN"
    if math.isinf(score):
        return None, f"score is {'-' if score < 0 else ''}inf"
    return score, ""


def _finite(value: Any) -> Any:
    """``value`` with NaN/inf floats as strings, so the stored JSON stays standard."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _tail_chars(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"[... {len(text) - limit} chars cut ...]\n{text[-limit:]}"


def _last_line(text: str) -> str:
    for line in reversed(text.splitlines()):
        if line.strip():
            return _one_line(line)
    return ""


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= REASON_CHARS else line[: REASON_CHARS - 3] + "..."


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)
