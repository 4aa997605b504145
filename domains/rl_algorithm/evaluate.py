"""Evaluator of the rl_algorithm task: ``python evaluate.py [--stage STAGE] PROGRAM``.

Stages (see task.yaml):
  check    static and synthetic contract tests (seconds, no training);
  explore  GRPO from the cached warm start with the explore seed; score = held-out accuracy;
  verify   the same on each of the verify seeds; score = mean held-out accuracy.
Without ``--stage`` it runs check then explore, so the task also works single-stage.

Candidate code only ever runs in a child process (``--child JOB``) with a time limit, so a
crash, a hang or ``sys.exit`` in it cannot take the evaluator down. The child saves the
trained weights; this process loads them into a model of the known shape and measures
accuracy on the held-out split itself. Sizes come from ``settings:`` in the task.yaml next to
this file (or in ``$ASI_EVOLVE_TASK_DIR``). ``results.json`` goes to ``$ASI_EVOLVE_RESULTS``
(default ./results.json); the exit code is 0 whenever it was written.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rl_settings import TaskSettings, load_settings, task_dir  # noqa: E402

from domains import harness  # noqa: E402

LOG_LIMIT = 3000


def run_child(job: dict[str, Any], timeout: float) -> tuple[str, str]:
    """Run one child job; (error reason or "", output tail). Results land in job["out_dir"]."""
    job_path = Path(job["out_dir"]) / "job.json"
    Path(job["out_dir"]).mkdir(parents=True, exist_ok=True)
    job_path.write_text(json.dumps(job), encoding="utf-8")
    log_path = Path(job["out_dir"]) / "child.log"
    cmd = [sys.executable, os.path.abspath(__file__), "--child", str(job_path), job["program"]]
    returncode = harness.run_child(cmd, log_path, timeout)
    if returncode is None:
        return f"timeout: {job['kind']} ran longer than {timeout:g}s", _tail(log_path)
    logs = _tail(log_path)
    error_file = Path(job["out_dir"]) / "error.txt"
    if error_file.is_file():
        return error_file.read_text(encoding="utf-8").strip() or "candidate failed", logs
    if returncode != 0:
        return f"{job['kind']} child exited with code {returncode}", logs
    return "", logs


def child(job_file: str) -> int:
    """Child side: a contract check or a training run, as the job file says."""
    job = json.loads(Path(job_file).read_text(encoding="utf-8"))
    if job["kind"] == "train":
        from rl_run import child_main

        return child_main(job["program"], job_file)
    from rl_checks import advantage_problems, load_candidate, loss_problems

    error_path = Path(job["out_dir"]) / "error.txt"
    try:
        compute_advantages, policy_loss = load_candidate(job["program"])
        problems = advantage_problems(compute_advantages) + loss_problems(policy_loss)
    except BaseException as exc:  # noqa: BLE001 - report anything, SystemExit included
        error_path.write_text(f"program raised {type(exc).__name__}: {exc}"[:500], "utf-8")
        traceback.print_exc()
        return 1
    if problems:
        error_path.write_text("; ".join(problems)[:800], encoding="utf-8")
        return 1
    return 0


def _train_job(
    program: str, settings: TaskSettings, start: Path, seed: int, out: Path
) -> dict[str, Any]:
    return {
        "kind": "train",
        "program": program,
        "start_dir": str(start),
        "task_dir": settings.source_dir,
        "seed": seed,
        "out_dir": str(out),
        "rl": settings.rl_dict(),
    }


def stage_check(program: str, settings: TaskSettings, scratch: Path) -> dict[str, Any]:
    """Static checks here, synthetic contract checks in a child (torch only: seconds)."""
    from rl_static import static_problems

    source = Path(program).read_text(encoding="utf-8")
    problems = static_problems(source)
    if problems:
        return _invalid("; ".join(problems)[:800], "")
    job = {"kind": "check", "program": program, "out_dir": str(scratch / "check")}
    error, logs = run_child(job, settings.check_timeout)
    if error:
        return _invalid(error, logs)
    logs = "static and synthetic contract checks passed"
    return {"score": 0.0, "valid": True, "metrics": {"checks_passed": 1}, "logs": logs}


def train_and_score(
    program: str, settings: TaskSettings, seed: int, scratch: Path
) -> tuple[str, dict[str, Any], str]:
    """One GRPO run; (error or "", metrics, logs)."""
    from rl_real import starting_accuracy, starting_model_dir
    from rl_score import score_weights

    start_dir = starting_model_dir(settings)
    out = scratch / f"seed{seed}"
    job = _train_job(program, settings, start_dir, seed, out)
    start = time.monotonic()
    error, logs = run_child(job, settings.train_timeout)
    if error:
        return error, {}, logs
    accuracy, problem = score_weights(settings, start_dir, out)
    if problem:
        return problem, {}, logs
    base = starting_accuracy(settings, start_dir)
    curve = json.loads((out / "curve.json").read_text(encoding="utf-8"))
    metrics = {
        "accuracy": accuracy,
        "warm_start_accuracy": base,
        "accuracy_gain": round(accuracy - base, 4),
        "reward_start": _mean_part(curve["reward"], first=True),
        "reward_end": _mean_part(curve["reward"], first=False),
        "kl_end": _mean_part(curve["kl"], first=False),
        "train_seconds": curve["train_seconds"],
        "wall_seconds": round(time.monotonic() - start, 2),
    }
    logs = (
        f"seed {seed}: held-out accuracy {accuracy:.4f} (warm start {base:.4f})\n"
        f"reward curve: {_sparse(curve['reward'])}\nKL curve: {_sparse(curve['kl'])}\n"
        f"loss curve: {_sparse(curve['loss'])}\n"
    )
    return "", metrics, logs


def _static_error(program: str) -> str:
    """The static checks again: a gated stage must not train a program check would refuse."""
    from rl_static import static_problems

    return "; ".join(static_problems(Path(program).read_text(encoding="utf-8")))[:800]


def stage_explore(program: str, settings: TaskSettings, scratch: Path) -> dict[str, Any]:
    if error := _static_error(program):
        return _invalid(error, "")
    error, metrics, logs = train_and_score(program, settings, settings.seed, scratch)
    if error:
        return _invalid(error, logs)
    return {"score": metrics["accuracy"], "valid": True, "metrics": metrics, "logs": logs}


def stage_verify(program: str, settings: TaskSettings, scratch: Path) -> dict[str, Any]:
    if error := _static_error(program):
        return _invalid(error, "")
    accuracies, all_logs = [], []
    metrics: dict[str, Any] = {}
    for seed in settings.verify_seeds:
        error, seed_metrics, logs = train_and_score(program, settings, seed, scratch)
        if error:
            return _invalid(f"seed {seed}: {error}", logs)
        accuracies.append(seed_metrics["accuracy"])
        metrics[f"accuracy_seed{seed}"] = seed_metrics["accuracy"]
        metrics["warm_start_accuracy"] = seed_metrics["warm_start_accuracy"]
        all_logs.append(logs)
    mean = sum(accuracies) / len(accuracies)
    spread = max(accuracies) - min(accuracies)
    metrics.update({"accuracy_mean": round(mean, 4), "accuracy_range": round(spread, 4)})
    return {"score": round(mean, 4), "valid": True, "metrics": metrics, "logs": "".join(all_logs)}


def missing_packages() -> list[str]:
    """The packages this task needs that are not installed (an install without the extra)."""
    import importlib.util

    needed = ("transformers", "trl", "datasets", "tokenizers", "safetensors")
    return [name for name in needed if importlib.util.find_spec(name) is None]


def evaluate(program: str, stage: str | None) -> dict[str, Any]:
    if missing := missing_packages():
        return _invalid(
            f"rl_algorithm needs {', '.join(missing)}: pip install 'asi-evolve[domains]'", ""
        )
    settings = load_settings(task_dir())
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="rl_eval_") as tmp:
        scratch = Path(tmp)
        if stage == "check":
            result = stage_check(program, settings, scratch)
        elif stage == "verify":
            result = stage_verify(program, settings, scratch)
        else:
            result = {"valid": True}
            if stage is None:
                result = stage_check(program, settings, scratch)
            if result["valid"]:
                result = stage_explore(program, settings, scratch)
    result.setdefault("metrics", {})["eval_time"] = round(time.monotonic() - start, 2)
    return result


def _invalid(error: str, logs: str) -> dict[str, Any]:
    return {"score": 0.0, "valid": False, "metrics": {}, "logs": logs, "error": error[:800]}


def _mean_part(values: list[float], first: bool) -> float:
    """Mean of the first or last fifth of a curve (at least one point)."""
    if not values:
        return float("nan")
    n = max(1, len(values) // 5)
    part = values[:n] if first else values[-n:]
    return round(sum(part) / len(part), 4)


def _sparse(values: list[float], points: int = 10) -> str:
    """About ``points`` evenly spaced values of a curve, for the logs."""
    if not values:
        return "(empty)"
    step = max(1, len(values) // points)
    return " ".join(f"{v:.3g}" for v in values[::step])


def _tail(path: Path) -> str:
    return harness.tail(path, LOG_LIMIT)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("program")
    parser.add_argument("extra", nargs="?", help=argparse.SUPPRESS)
    parser.add_argument("--stage", choices=["check", "explore", "verify"], default=None)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.program)
    if not Path(args.program).is_file():
        print(f"error: program {args.program!r} not found", file=sys.stderr)
        return 2
    try:
        result = evaluate(str(Path(args.program).resolve()), args.stage)
    except Exception as exc:  # noqa: BLE001 - still leave a results.json behind
        result = _invalid(
            f"evaluator error: {type(exc).__name__}: {exc}", traceback.format_exc()[-LOG_LIMIT:]
        )
    harness.write_results(result)
    status = "valid" if result["valid"] else f"invalid ({result['error']})"
    print(f"score={result['score']:.4f} {status}"[:600])
    return 0


if __name__ == "__main__":
    sys.exit(main())
