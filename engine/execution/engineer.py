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

Extra keys are kept, bounded (``MAX_EXTRA_*`` below). The evaluator also sees
``$ASI_EVOLVE_PROGRAM`` (the program file), ``$ASI_EVOLVE_WORKDIR`` and
``PYTHONUNBUFFERED=1``. A non-zero exit, a timeout, a missing or malformed file, a
missing, non-numeric or non-finite score, or ``"valid": false`` make the evaluation fail
with a one-line reason.

The work dir is the evaluator's: whatever it plants there (a symlink or hard link to a host
file, a FIFO, a device) is never followed, opened or written through by the engine. Every
file access goes through ``engine/execution/workfiles.py``; a refused results file fails the stage
with e.g. "results.json is a symlink: refused".
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.execution.command import Limits, RunResult, run_command
from engine.execution.launcher import Launcher
from engine.execution.reaper import Reaper
from engine.execution.sandbox import Sandbox
from engine.execution.workfiles import Refused, TooLarge, WorkDir, last_unresolved
from engine.task import DEFAULT_STAGE, PRECHECK_STAGE, Stage, TaskSpec
from engine.text import one_line

RESULTS_NAME = "results.json"
# What is kept in ``Evaluation.results`` (it is stored in the database for every node).
STORED_TAIL_CHARS = 4000
STORED_LOGS_CHARS = 20_000
REASON_CHARS = 200
MAX_METRICS = 200  # metric entries kept per stage
MAX_METRIC_CHARS = 500  # a metric string longer than this is cut
# Top-level keys of results.json other than "metrics" and a string "logs" (bounded above):
# a value whose JSON is longer than MAX_EXTRA_CHARS characters is stored as the start of
# that JSON (of a string value: of the string) followed by "... [cut: N chars]"; at most
# MAX_EXTRA_KEYS extra keys and MAX_EXTRA_TOTAL_CHARS characters of them in all are kept,
# the rest is dropped and counted in "extra_keys_cut". "score", "valid" and "error" are
# always kept, cut the same way at MAX_REPORTED_CHARS. Sized for real use: data_curation's
# "samples" (25 text pairs shown to the analyzer) is ~25,000 chars, so a value gets 64,000;
# with the bounds above a node stores at most ~270 KB of results JSON whatever the
# evaluator writes (a 15 MB key costs 64 KB).
MAX_EXTRA_KEYS = 100
MAX_EXTRA_CHARS = 64_000
MAX_EXTRA_TOTAL_CHARS = 128_000
MAX_REPORTED_CHARS = 4000
_REPORTED_KEYS = ("score", "valid", "error")
MAX_KEY_CHARS = 100  # a longer key is cut
# A larger results.json is refused rather than read into memory (at most this many bytes
# are ever read, see engine/execution/workfiles.py).
MAX_RESULTS_BYTES = 16 * 1024 * 1024


class EvaluationLost(Exception):
    """The evaluation could not finish for reasons that are not the candidate's (a remote
    worker died): the loop re-queues the node for the same step instead of failing it."""


@dataclass
class Evaluation:
    """The outcome of evaluating one candidate, ready to be stored on its node."""

    ok: bool
    score: float | None
    results: dict[str, Any]
    error: str
    runtime: float


# ---------------------------------------------------------------------------- Engineer
class Engineer:
    """Evaluates candidates of one task, one stage at a time (see ``engine/task.py``).

    ``run_stage`` is the unit the loop schedules (it holds the stage's slots around the
    call); ``evaluate`` runs every stage in order with no slots, for simple callers.
    """

    def __init__(
        self,
        task: TaskSpec,
        limits: Limits | None = None,
        secret_env: tuple[str, ...] = (),
        sandbox: Sandbox | None = None,
        reaper: Reaper | None = None,
        launcher: Launcher | None = None,
    ) -> None:
        self.task = task
        self.limits = limits or Limits()
        # LLM-written programs must not see the API keys the engine holds.
        self.secret_env = {"OPENAI_API_KEY", *secret_env}
        self.sandbox = sandbox  # None: no confinement (engine/execution/sandbox.py)
        self.reaper = reaper or Reaper()  # kills what an evaluation leaves behind
        # Forks each evaluation's supervisor from one small server instead of starting an
        # interpreter per evaluation (engine/execution/launcher.py); None: the script.
        self.launcher = launcher

    async def aclose(self) -> None:
        """Stop what the Engineer keeps running between evaluations (the fork server)."""
        if self.launcher is not None:
            await self.launcher.aclose()

    async def evaluate(self, code: str, workdir: Path, timeout: float | None = None) -> Evaluation:
        """Every stage of the task in order; the first failing one decides the outcome.

        ``timeout`` overrides the limit of the score stage (the others keep theirs).
        """
        started = time.monotonic()

        async def run(stage: Stage) -> Evaluation:
            limit = timeout if timeout is not None and stage.name == self.task.score_stage else None
            return await self.run_stage(code, stage, workdir, timeout=limit)

        combined, _ = await run_stages(self.task.stages, self.task.score_stage, run)
        combined.runtime = time.monotonic() - started
        return combined

    async def run_stage(
        self,
        code: str,
        stage: Stage,
        workdir: Path,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Evaluation:
        """Run one stage of ``code`` in ``workdir``; never raises for a failing candidate.

        ``env`` is added to the evaluator's environment (slot grants: CUDA_VISIBLE_DEVICES,
        thread counts). Only the score stage must write a score; another stage that exits
        0 without a results file passes.
        """
        started = time.monotonic()
        # Every file access in the work dir goes through ``workfiles`` (never follows what
        # the evaluator planted); a symlink in place of the work dir itself is refused.
        workdir = last_unresolved(Path(workdir))
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            files = WorkDir(workdir)
        except Refused as exc:
            return Evaluation(False, None, {}, _reason(str(exc)), time.monotonic() - started)
        with files:
            return await self._run_stage(files, code, stage, env, timeout, started)

    async def _run_stage(
        self,
        files: WorkDir,
        code: str,
        stage: Stage,
        env: dict[str, str] | None,
        timeout: float | None,
        started: float,
    ) -> Evaluation:
        workdir = files.path
        program = workdir / self.task.program_name
        prefix = stage_prefix(stage.name)
        results_name = f"{prefix}{RESULTS_NAME}"
        results_file = workdir / results_name
        full_env = {
            **{k: v for k, v in os.environ.items() if k not in self.secret_env},
            "ASI_EVOLVE_PROGRAM": str(program),
            "ASI_EVOLVE_WORKDIR": str(workdir),
            "ASI_EVOLVE_RESULTS": str(results_file),
            "ASI_EVOLVE_STAGE": stage.name,
            "ASI_EVOLVE_TASK_DIR": str(self.task.directory),
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        scored = stage.name == self.task.score_stage
        is_precheck = stage.name == PRECHECK_STAGE

        def finish(
            ok: bool, results: dict[str, Any], error: str, score: float | None = None
        ) -> Evaluation:
            if error and not is_precheck and stage.name != self.task.score_stage:
                error = f"{stage.name}: {error}"
            return Evaluation(ok, score if ok else None, results, error, time.monotonic() - started)

        try:
            files.write(self.task.program_name, code)  # replaces a planted link, never follows
        except OSError as exc:
            return finish(False, {}, f"cannot write the program: {_reason(str(exc))}")
        try:
            files.remove(results_name)  # a re-run after a crash must not read it
        except OSError as exc:
            return finish(False, {}, f"cannot remove {results_name}: {_reason(str(exc))}")

        limit = stage.timeout if timeout is None else timeout
        command = self.task.command_for(program, workdir, template=stage.command)
        what = "precheck" if is_precheck else "evaluator"
        run, failure = await self._run(command, files, limit, full_env, what, prefix)
        if run is None:
            return finish(False, {}, failure)
        if is_precheck:
            if failure:
                results = {**_run_results(run), "precheck_rejected": True}
                return finish(False, results, f"rejected by precheck: {failure}")
            return finish(True, _run_results(run), "")

        data, problem = _read_results(files, results_name)
        results = bound_results(data) if data is not None else {}
        results.update(_run_results(run))
        if failure:
            return finish(False, results, failure)
        if data is None:
            if not scored and not files.exists(results_name):
                return finish(True, results, "")
            return finish(False, results, problem)
        valid = data.get("valid", True)
        if not isinstance(valid, bool):
            return finish(False, results, f"'valid' must be true or false, got {valid!r:.40}")
        if not valid:
            reason = _reason(str(data.get("error") or "")) or "the evaluator marked it invalid"
            # An evaluator that names its stage itself ("check: not causal") gets the name once.
            reason = reason.removeprefix(f"{stage.name}: ") or reason
            return finish(False, results, f"invalid: {reason}")
        score, problem = _score(data)
        if score is None:
            if not scored:
                return finish(True, results, "")
            return finish(False, results, problem)
        return finish(True, results, "", score)

    async def _run(
        self,
        command: str,
        files: WorkDir,
        timeout: float,
        env: dict[str, str],
        what: str,
        prefix: str,
    ) -> tuple[RunResult | None, str]:
        """Run one command, keep its output tails in ``<prefix>stdout.txt``/``stderr.txt``."""
        try:
            run = await run_command(
                command,
                files.path,
                timeout,
                self.limits,
                env=env,
                sandbox=self.sandbox,
                reaper=self.reaper,
                launcher=self.launcher,
            )
        except OSError as exc:
            starting = "could not start" if what == "precheck" else "could not start the evaluator"
            return None, f"{starting}: {_reason(str(exc))}"
        for name, text in (("stdout", run.stdout_tail), ("stderr", run.stderr_tail)):
            with contextlib.suppress(OSError):  # a planted link is replaced, never followed
                files.write(f"{prefix}{name}.txt", text)
        return run, _run_failure(run, timeout, what)


async def run_stages(
    stages: tuple[Stage, ...],
    score_stage: str,
    run: Callable[[Stage], Awaitable[Evaluation]],
    decide: Callable[[Stage, dict[str, Evaluation]], Awaitable[Evaluation | str | None]]
    | None = None,
    ran: Callable[[Stage, Evaluation], Awaitable[None]] | None = None,
) -> tuple[Evaluation, dict[str, Evaluation]]:
    """The one stage runner: ``stages`` in order until one fails, combined.

    ``decide(stage, staged)`` may reuse an evaluation (returned), skip the stage (a reason)
    or let it run (None); ``run(stage)`` runs it; ``ran(stage, evaluation)`` follows every
    run. Returns the node's evaluation and each stage's.
    """
    staged: dict[str, Evaluation] = {}
    for stage in stages:
        verdict = await decide(stage, staged) if decide is not None else None
        if isinstance(verdict, Evaluation):
            staged[stage.name] = verdict
            continue
        if verdict:  # skipped, with the reason
            continue
        evaluation = await run(stage)
        staged[stage.name] = evaluation
        if ran is not None:
            await ran(stage, evaluation)
        if not evaluation.ok:
            break
    return combine_stages(staged, score_stage), staged


def bound_metrics(metrics: Any) -> dict[str, Any]:
    """At most MAX_METRICS entries of numbers or short strings: metrics are stored for every
    node and shown in prompts and the TUI, so an evaluator cannot bloat them."""
    if not isinstance(metrics, dict):
        return {"metrics_error": f"metrics must be a mapping, got {type(metrics).__name__}"}
    bounded: dict[str, Any] = {}
    for key, value in list(metrics.items())[:MAX_METRICS]:
        if not isinstance(value, bool | int | float | str) and value is not None:
            value = json.dumps(value, default=str)
        if isinstance(value, str) and len(value) > MAX_METRIC_CHARS:
            value = value[: MAX_METRIC_CHARS - 3] + "..."
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**63:
            value = float(value) if abs(value) < 1e308 else str(value)[:MAX_METRIC_CHARS]
        bounded[str(key)[:100]] = value
    if len(metrics) > MAX_METRICS:
        bounded["metrics_cut"] = len(metrics) - MAX_METRICS
    return bounded


def bound_results(data: dict[str, Any]) -> dict[str, Any]:
    """What is stored of a results file: "metrics" and "logs" bounded as always, every
    other key bounded by the MAX_EXTRA_* limits above; NaN/inf as strings."""
    results: dict[str, Any] = {}
    total = kept = cut = 0
    for key, value in data.items():
        key = str(key)[:MAX_KEY_CHARS]
        value = _finite(value)
        if key == "metrics":
            results[key] = bound_metrics(value)
            continue
        if key == "logs" and isinstance(value, str):
            results[key] = _tail_chars(value, STORED_LOGS_CHARS)
            continue
        reported = key in _REPORTED_KEYS
        value, size = _bound_value(value, MAX_REPORTED_CHARS if reported else MAX_EXTRA_CHARS)
        if not reported:
            if kept >= MAX_EXTRA_KEYS or total + size + len(key) > MAX_EXTRA_TOTAL_CHARS:
                cut += 1
                continue
            kept += 1
            total += size + len(key)
        results[key] = value
    if cut:
        results["extra_keys_cut"] = cut
    return results


def _bound_value(value: Any, limit: int) -> tuple[Any, int]:
    """``value`` or, when its JSON is longer than ``limit``, a string with the start of it
    and a visible "[cut: N chars]" marker; with the length of its JSON."""
    if isinstance(value, str):
        if len(value) <= limit:
            return value, len(value) + 2
        value = f"{value[:limit]}... [cut: {len(value)} chars]"
        return value, len(value) + 2
    try:
        text = json.dumps(value, default=str, ensure_ascii=False)
    except (ValueError, RecursionError):  # circular or too deep: keep a description only
        text = f"<{type(value).__name__} that cannot be stored as JSON>"
        return text, len(text) + 2
    if len(text) <= limit:
        return value, len(text)
    value = f"{text[:limit]}... [cut: {len(text)} chars of JSON]"
    return value, len(value) + 2


def stage_prefix(name: str) -> str:
    """File-name prefix of a stage's outputs: none for the single default stage."""
    return "" if name == DEFAULT_STAGE else f"{name}_"


def stage_record(evaluation: Evaluation) -> dict[str, Any]:
    """What the node keeps of one stage under ``results["stages"][name]``."""
    return {
        "ok": evaluation.ok,
        "score": evaluation.score,
        "error": evaluation.error,
        "runtime": round(evaluation.runtime, 3),
        "results": evaluation.results,
    }


def combine_stages(staged: dict[str, Evaluation], score_stage: str) -> Evaluation:
    """The node's evaluation from its stages, in the order they ran.

    A failed stage decides the outcome; otherwise the score stage gives the score and the
    top-level results (so agents and the TUI read metrics where they always did). Every
    stage stays under ``results["stages"]``; a single default stage adds nothing.
    """
    if not staged:
        return Evaluation(False, None, {}, "no stage ran", 0.0)
    failed = next((e for e in staged.values() if not e.ok), None)
    main = failed or staged.get(score_stage) or list(staged.values())[-1]
    results = dict(main.results)
    if list(staged) != [DEFAULT_STAGE]:
        results["stages"] = {name: stage_record(e) for name, e in staged.items()}
    runtime = sum(e.runtime for e in staged.values())
    if failed is not None:
        return Evaluation(False, None, results, failed.error, runtime)
    scored = staged.get(score_stage)
    if scored is None or scored.score is None:
        return Evaluation(False, None, results, f"score stage {score_stage!r} did not run", runtime)
    return Evaluation(True, scored.score, results, "", runtime)


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


def _read_results(files: WorkDir, name: str) -> tuple[dict[str, Any] | None, str]:
    """The parsed results file ``name`` of the work dir, or None and the reason it cannot be
    used (a planted symlink, FIFO, device or hard link is refused, never opened)."""
    try:
        raw = files.read(name, MAX_RESULTS_BYTES)
    except FileNotFoundError:
        return None, f"evaluator exited without writing {RESULTS_NAME}"
    except TooLarge as exc:
        return None, f"{RESULTS_NAME} too large ({exc.size_text})"
    except Refused as exc:
        return None, _reason(str(exc))
    except OSError as exc:
        return None, f"cannot read {RESULTS_NAME}: {_reason(str(exc))}"
    try:
        data = json.loads(raw.decode("utf-8", errors="replace"))
    except ValueError as exc:
        return None, f"malformed {RESULTS_NAME}: {_reason(str(exc))}"
    except RecursionError:
        return None, f"malformed {RESULTS_NAME}: nested too deeply"
    if not isinstance(data, dict):
        return None, f"{RESULTS_NAME} is not a JSON object (got {type(data).__name__})"
    return data, ""


def _score(data: dict[str, Any]) -> tuple[float | None, str]:
    if "score" not in data or data["score"] is None:
        return None, f"{RESULTS_NAME} has no score"
    value = data["score"]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None, f"score is not a number: {_reason(repr(value))}"
    try:
        score = float(value)
    except OverflowError:
        return None, "score is too large to be a number"
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
            return _reason(line)
    return ""


def _reason(text: str) -> str:
    return one_line(text, REASON_CHARS)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)
