"""Driver of ``benchmarks/gpu_smoke.sh``: check + explore of each AI domain's initial program
from a scratch copy of the domain, then one table row per domain.

``DRY=1`` (the shell script's ``--cpu-dry-run``) shrinks every domain's settings to tiny
budgets so the same flow runs on CPU in about a minute; otherwise the domains' own settings
run (linear_attention's ``cuda:`` overrides apply by themselves on a CUDA device).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from domains.tiny_settings import LINEAR_ATTENTION

TINY: dict[str, dict[str, Any]] = {
    # the domain tests' sizes, halved in steps: one explore in seconds on a CPU
    "linear_attention": {**LINEAR_ATTENTION, "steps": 6, "mqar_steps": 6, "mqar_eval_batches": 1},
    "rl_algorithm": {
        "warm_start": {"n_test": 20, "n_val": 10, "sft_max_steps": 5, "sft_eval_every": 5},
        "rl": {"steps": 2, "prompts_per_step": 2, "group_size": 2},
    },
    "data_curation": {
        "n_docs": 60,
        "check_docs": 20,
        "lm_train_chars": 20000,
        "lm_eval_chars": 10000,
    },
}


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(base.get(key) or {}, value) if isinstance(value, dict) else value
    return out


def prepare(root: Path, scratch: Path, domain: str, dry: bool) -> Path:
    """A copy of the domain; its settings shrunk to TINY in a dry run."""
    task = scratch / domain
    shutil.copytree(root / "domains" / domain, task, ignore=shutil.ignore_patterns("__pycache__"))
    if dry:
        spec = yaml.safe_load((task / "task.yaml").read_text(encoding="utf-8"))
        spec["settings"] = _merge(spec.get("settings") or {}, TINY[domain])
        (task / "task.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return task


def device_of(domain: str, cuda: bool) -> str:
    """The kernel / device the domain's explore runs on."""
    if domain == "linear_attention":
        return "fla chunk_delta_rule, cuda bf16" if cuda else "PyTorch WY delta rule, cpu"
    if domain == "rl_algorithm":
        return "trl GRPO, cuda bf16" if cuda else "trl GRPO, cpu fp32"
    return "n-gram scorer, cpu (no GPU stage)"


def run_domain(task: Path, python: str, timeout: float) -> dict[str, Any]:
    """check then explore of initial.py; {"time", "score", "error"}."""
    started = time.monotonic()
    env = {**os.environ, "ASI_EVOLVE_TASK_DIR": str(task)}
    for stage in ("check", "explore"):
        results = task / f"results_{stage}.json"
        env["ASI_EVOLVE_RESULTS"] = str(results)
        cmd = [python, str(task / "evaluate.py"), "--stage", stage, str(task / "initial.py")]
        try:
            proc = subprocess.run(
                cmd, cwd=task, env=env, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            return {"time": time.monotonic() - started, "score": None, "error": f"{stage}: timeout"}
        if not results.is_file():
            tail = (proc.stderr or proc.stdout)[-200:].replace("\n", " ")
            return {"time": time.monotonic() - started, "score": None, "error": f"{stage}: {tail}"}
        out = json.loads(results.read_text(encoding="utf-8"))
        if not out.get("valid"):
            error = f"{stage}: {out.get('error')}"
            return {"time": time.monotonic() - started, "score": None, "error": error}
    return {"time": time.monotonic() - started, "score": out.get("score"), "error": None}


def format_table(rows: list[dict[str, Any]]) -> str:
    """Markdown rows: domain, time, score, kernel / device (the error in place of a score)."""
    lines = ["| domain | time (s) | score | kernel / device |", "|---|---|---|---|"]
    for row in rows:
        score = "FAILED: " + row["error"] if row["error"] else f"{row['score']}"
        lines.append(f"| {row['domain']} | {row['time']:.1f} | {score} | {row['device']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--scratch", type=Path, required=True)
    parser.add_argument("--domains", default="linear_attention,rl_algorithm,data_curation")
    parser.add_argument("--stage-timeout", type=float, default=300.0)
    args = parser.parse_args(argv)
    dry = os.environ.get("DRY", "0") == "1"
    cuda = False
    if not dry:
        import torch

        cuda = torch.cuda.is_available()
        if not cuda:
            print("gpu_smoke: CUDA is not available; use --cpu-dry-run on CPU", file=sys.stderr)
            return 3
        print(f"gpu_smoke: {torch.cuda.get_device_name(0)}", flush=True)
    rows = []
    for domain in [d for d in args.domains.split(",") if d]:
        task = prepare(args.root, args.scratch, domain, dry)
        print(f"gpu_smoke: {domain} ...", flush=True)
        row = run_domain(task, sys.executable, args.stage_timeout)
        rows.append({"domain": domain, "device": device_of(domain, cuda), **row})
    mode = "CPU dry run (tiny budgets)" if dry else "CUDA settings"
    print(f"\n{mode}\n{format_table(rows)}")
    return 1 if any(row["error"] for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
