"""Evaluator of a linear-attention TokenMixer: ``python evaluate.py [--stage S] PROGRAM``.

Stages (task.yaml runs them as separate commands; with no ``--stage`` this runs
``check`` then ``explore`` in one process, so the task also works without stages):

- check: contract, causality, batch independence, statelessness, sub-quadratic cost and
  parameter budget (see checks.py); seconds; a failure names the exact reason.
- explore: the byte LM and MQAR (see training.py), in parallel child processes, one
  fixed seed; score = 100 * (0.7 * (bpb_none - bpb) / (bpb_none - bpb_ref) + 0.3 * mqar),
  so the no-mixing floor scores about 0 on the LM part and DeltaNet about 70 + 30 * mqar.
- verify: longer training and context, several seeds, for the candidate *and* the initial
  DeltaNet (the latter cached); ``beats_baseline`` when the candidate's mean bpb is lower
  and its mean MQAR accuracy is not lower.

The candidate always runs in a child process with its own time limit, so a crash, hang
or ``sys.exit`` in it cannot take the evaluator down. ``results.json`` goes to
``$ASI_EVOLVE_RESULTS`` (default ./results.json); the exit code is 0 whenever it was
written, since an invalid candidate is a result, not a crash. Settings come from the
``settings:`` of task.yaml in ``$ASI_EVOLVE_TASK_DIR`` (default: this file's directory);
on a CUDA device its ``cuda:`` mapping overrides them.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from domains import harness

HERE = Path(__file__).resolve().parent
LOG_LIMIT = 2000
DEFAULTS: dict[str, Any] = {
    "d_model": 128,
    "n_heads": 4,
    "n_layers": 2,
    "seq_len": 256,
    "batch": 8,
    "steps": 300,
    "lr": 3e-3,
    "eval_batches": 8,
    "seed": 0,
    "mqar_pairs": 16,
    "mqar_keys": 32,
    "mqar_values": 32,
    "mqar_d_model": 64,
    "mqar_n_heads": 4,
    "mqar_layers": 2,
    "mqar_batch": 32,
    "mqar_steps": 600,
    "mqar_lr": 3e-3,
    "mqar_eval_batches": 16,
    "check_lengths": [64, 100],
    "cost_lengths": [128, 256, 1024, 4096],
    "max_growth": 1.5,
    "param_budget": 1.5,
    "check_timeout": 120.0,
    "train_timeout": 1800.0,
    "threads": 1,
    "bpb_none": 3.851,
    "bpb_ref": 2.823,
    "mqar_ref": 0.973,
    "verify_seeds": [0, 1, 2],
    "verify_steps": 1000,
    "verify_seq_len": 512,
    "verify_mqar_steps": 1200,
    "cuda": {},
}


class EvalError(Exception):
    """The candidate is invalid; the message is the reason."""


def task_dir() -> Path:
    env = os.environ.get("ASI_EVOLVE_TASK_DIR")
    return Path(env) if env and (Path(env) / "task.yaml").is_file() else HERE


def load_settings(use_cuda: bool) -> dict[str, Any]:
    import yaml

    raw = yaml.safe_load((task_dir() / "task.yaml").read_text(encoding="utf-8")) or {}
    given = dict(raw.get("settings") or {})
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown settings in task.yaml: {', '.join(unknown)}")
    settings = {**DEFAULTS, **given}
    if use_cuda:
        settings.update(settings.get("cuda") or {})
    return settings


# ------------------------------------------------------------------- child side
def load_program(path: str, name: str = "candidate_program") -> Any:
    sys.path.insert(0, str(task_dir()))
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def child_check(program: str, settings: dict[str, Any]) -> dict[str, Any]:
    import checks
    import torch
    from torch import nn

    torch.manual_seed(0)
    started = time.monotonic()
    module = load_program(program)
    factory = getattr(module, "TokenMixer", None)
    if not (isinstance(factory, type) and issubclass(factory, nn.Module)):
        raise EvalError("the program defines no class TokenMixer(torch.nn.Module)")
    width, heads = settings["d_model"], settings["n_heads"]
    error = checks.check_contract(factory, width, heads, settings["check_lengths"])
    if error:
        raise EvalError(error)
    model = factory(width, heads)
    for check in (  # stateless first: a stateful mixer would look acausal too
        lambda: checks.check_stateless(model, width, settings["check_lengths"][0]),
        lambda: checks.check_causal(model, width, settings["check_lengths"]),
        lambda: checks.check_batch_independent(model, width, settings["check_lengths"][0]),
    ):
        error = check()
        if error:
            raise EvalError(error)
    params = checks.count_parameters(model)
    reference = checks.count_parameters(
        load_program(str(task_dir() / "initial.py"), "deltanet_reference").TokenMixer(width, heads)
    )
    error = checks.check_budget(params, reference, settings["param_budget"])
    if error:
        raise EvalError(error)
    error, growth = checks.check_subquadratic(
        model, width, settings["cost_lengths"], settings["max_growth"]
    )
    if error:
        raise EvalError(error)
    return {
        "mixer_params": params,
        "param_ratio": round(params / reference, 4),
        **{k: round(v, 3) for k, v in growth.items()},
        "check_time": round(time.monotonic() - started, 2),
    }


def child_train(kind: str, program: str, settings: dict[str, Any], seed: int) -> dict:
    import corpus
    import torch
    import training

    torch.set_num_threads(int(settings["threads"]))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    factory = load_program(program).TokenMixer
    s = settings
    if kind == "lm":
        data = corpus.load()
        cfg = training.TrainConfig(
            s["d_model"],
            s["n_heads"],
            s["n_layers"],
            s["seq_len"],
            s["batch"],
            s["steps"],
            s["lr"],
            seed,
            s["eval_batches"],
        )
        return training.train_lm(factory, cfg, data["train"], data["valid"], device)
    pairs = s["mqar_pairs"]
    cfg = training.TrainConfig(
        s["mqar_d_model"],
        s["mqar_n_heads"],
        s["mqar_layers"],
        4 * pairs - 1,
        s["mqar_batch"],
        s["mqar_steps"],
        s["mqar_lr"],
        seed,
        s["mqar_eval_batches"],
    )
    return training.train_mqar(factory, cfg, pairs, s["mqar_keys"], s["mqar_values"], device)


def run_child(args: argparse.Namespace) -> int:
    try:
        settings = json.loads(args.settings)
        if args.child == "check":
            out = child_check(args.program, settings)
        else:
            out = child_train(args.child, args.program, settings, args.seed)
    except BaseException as exc:  # noqa: BLE001 - report anything, SystemExit included
        reason = str(exc) if isinstance(exc, EvalError) else f"{type(exc).__name__}: {exc}"
        out = {"error": reason[:500], "trace": traceback.format_exc()[-LOG_LIMIT:]}
    tmp = args.out + ".tmp"
    Path(tmp).write_text(json.dumps(out), encoding="utf-8")
    os.replace(tmp, args.out)
    return 0


# ------------------------------------------------------------------ parent side
def spawn(kind: str, program: str, settings: dict, seed: int, out: Path) -> subprocess.Popen:
    threads = str(settings["threads"])
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        kind,
        program,
        str(out),
        "--seed",
        str(seed),
        "--settings",
        json.dumps(settings),
    ]
    return harness.spawn(cmd, str(out) + ".log", env=env)


def collect(procs: dict[str, tuple[subprocess.Popen, Path]], timeout: float) -> dict[str, dict]:
    """Wait for every child (one shared deadline); EvalError on the first failure."""
    deadline = time.monotonic() + timeout
    results: dict[str, dict] = {}
    try:
        for name, (proc, out) in procs.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise EvalError(f"{name}: timed out after {timeout:g}s") from None
            if not out.is_file():
                log = Path(str(out) + ".log")
                tail = log.read_text(errors="replace")[-300:] if log.is_file() else ""
                raise EvalError(f"{name}: child exited with code {proc.returncode}: {tail}")
            results[name] = json.loads(out.read_text(encoding="utf-8"))
            if "error" in results[name]:
                raise EvalError(f"{name}: {results[name]['error']}")
    finally:
        for proc, _ in procs.values():
            if proc.poll() is None:
                harness.kill_group(proc)
    return results


def run_pairs(program: str, settings: dict, seeds: list[int], scratch: Path, tag: str) -> list:
    """LM and MQAR for each seed, the two of a seed in parallel; [(lm, mqar)] per seed."""
    pairs = []
    for seed in seeds:
        procs = {
            f"{kind} (seed {seed})": (
                spawn(kind, program, settings, seed, scratch / f"{tag}_{kind}_{seed}.json"),
                scratch / f"{tag}_{kind}_{seed}.json",
            )
            for kind in ("lm", "mqar")
        }
        got = list(collect(procs, settings["train_timeout"]).values())
        pairs.append((got[0], got[1]))
    return pairs


def score_of(bpb: float, mqar: float, s: dict[str, Any]) -> float:
    lm_part = (s["bpb_none"] - bpb) / (s["bpb_none"] - s["bpb_ref"])
    return 100.0 * (0.7 * lm_part + 0.3 * mqar)


def stage_check(program: str, settings: dict, scratch: Path) -> dict[str, Any]:
    out = scratch / "check.json"
    proc = spawn("check", program, settings, 0, out)
    return collect({"check": (proc, out)}, settings["check_timeout"])["check"]


def stage_explore(program: str, settings: dict, scratch: Path) -> dict[str, Any]:
    ((lm, mqar),) = run_pairs(program, settings, [settings["seed"]], scratch, "explore")
    return {
        "bpb": round(lm["bpb"], 4),
        "mqar": round(mqar["mqar"], 4),
        "delta_bpb": round(lm["bpb"] - settings["bpb_ref"], 4),
        "delta_mqar": round(mqar["mqar"] - settings["mqar_ref"], 4),
        "lm_step_ms": round(1000 * lm["step_time"], 1),
        "mqar_step_ms": round(1000 * mqar["mqar_step_time"], 1),
        "params": lm["params"],  # the whole LM; mixer_params (one mixer) is the check's
        "score": score_of(lm["bpb"], mqar["mqar"], settings),
    }


def stage_verify(program: str, settings: dict, scratch: Path) -> dict[str, Any]:
    import corpus

    s = {
        **settings,
        "steps": settings["verify_steps"],
        "seq_len": settings["verify_seq_len"],
        "mqar_steps": settings["verify_mqar_steps"],
    }
    seeds = list(s["verify_seeds"])
    initial = task_dir() / "initial.py"
    if (
        Path(program).read_text(encoding="utf-8").strip()
        == initial.read_text(encoding="utf-8").strip()
    ):  # the baseline cannot beat itself: spend no hour on proving it
        return {"beats_baseline": False, "verify_skipped": "the program is the initial DeltaNet"}
    mine = run_pairs(program, s, seeds, scratch, "verify")
    key = hashlib.sha256(
        (json.dumps(s, sort_keys=True) + initial.read_text(encoding="utf-8")).encode()
    ).hexdigest()[:16]
    cache = corpus.cache_root() / f"verify-baseline-{key}.json"
    if cache.is_file():
        base = json.loads(cache.read_text(encoding="utf-8"))
    else:
        base = run_pairs(str(initial), s, seeds, scratch, "baseline")
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(base), encoding="utf-8")
        os.replace(tmp, cache)

    def mean(rows: list, i: int, key: str) -> float:
        return sum(r[i][key] for r in rows) / len(rows)

    bpb, mqar = mean(mine, 0, "bpb"), mean(mine, 1, "mqar")
    base_bpb, base_mqar = mean(base, 0, "bpb"), mean(base, 1, "mqar")
    return {
        "bpb": round(bpb, 4),
        "mqar": round(mqar, 4),
        "baseline_bpb": round(base_bpb, 4),
        "baseline_mqar": round(base_mqar, 4),
        "bpb_per_seed": [round(r[0]["bpb"], 4) for r in mine],
        "mqar_per_seed": [round(r[1]["mqar"], 4) for r in mine],
        "beats_baseline": bool(bpb < base_bpb and mqar >= base_mqar),
        "score": score_of(bpb, mqar, settings),
    }


def evaluate(program: str, stage: str | None) -> dict[str, Any]:
    import tempfile

    started = time.monotonic()
    use_cuda = os.environ.get("CUDA_VISIBLE_DEVICES", "x") != "" and _cuda_available()
    settings = load_settings(use_cuda)
    problem = settings_problem(settings, use_cuda)
    if problem:
        raise ValueError(problem)
    metrics: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="linear_attention_") as tmp:
        scratch = Path(tmp)
        try:
            if stage in (None, "check"):
                metrics.update(stage_check(program, settings, scratch))
            if stage in (None, "explore"):
                metrics.update(stage_explore(program, settings, scratch))
            if stage == "verify":
                metrics.update(stage_verify(program, settings, scratch))
        except EvalError as exc:
            metrics["eval_time"] = round(time.monotonic() - started, 2)
            return {"score": 0.0, "valid": False, "metrics": metrics, "logs": "", "error": str(exc)}
    score = metrics.pop("score", None)
    metrics["eval_time"] = round(time.monotonic() - started, 2)
    logs = " ".join(f"{k}={v}" for k, v in metrics.items())
    result: dict[str, Any] = {"valid": True, "metrics": metrics, "logs": logs}
    if score is not None:
        result["score"] = round(score, 4)
    return result


def settings_problem(settings: dict[str, Any], use_cuda: bool) -> str | None:
    """Inconsistent shapes, or (on CUDA) an estimated peak beyond 90% of the card: one line."""
    import memory

    capacity = None
    if use_cuda:
        import torch

        capacity = torch.cuda.get_device_properties(0).total_memory
    return memory.refusal(settings, capacity)


def _cuda_available() -> bool:
    """Whether a CUDA device is usable; torch (seconds to import) only where one may exist."""
    if not any(os.path.exists(p) for p in ("/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg")):
        return False
    import torch

    return torch.cuda.is_available()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("program")
    parser.add_argument("out", nargs="?", help=argparse.SUPPRESS)
    parser.add_argument("--stage", choices=["check", "explore", "verify"])
    parser.add_argument("--child", choices=["check", "lm", "mqar"], help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return run_child(args)
    if not os.path.isfile(args.program):
        print(f"error: no such program file: {args.program}", file=sys.stderr)
        return 2
    try:
        result = evaluate(os.path.abspath(args.program), args.stage)
    except Exception as exc:  # noqa: BLE001 - still leave a results.json behind
        result = harness.evaluator_error(exc, LOG_LIMIT)
    harness.write_results(result)
    status = "valid" if result["valid"] else f"invalid ({result['error']})"
    print(f"score={result.get('score')} {status}"[:600])
    return 0


if __name__ == "__main__":
    sys.exit(main())
