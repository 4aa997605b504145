"""What a run has done, for a person: ``asi-evolve status`` and ``asi-evolve best``.

Both read the run database read-only (``RunStore.open(readonly=True)``), so they may run
at any time beside a live engine without ever writing to its database.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from engine.app.run import UsageError
from engine.store import progress
from engine.store.lock import engine_alive
from engine.store.run_store import RunStore


def open_run(run_dir: Path) -> RunStore:
    return RunStore.open(run_dir, readonly=True)


def run_status(run_dir: Path) -> dict[str, Any]:
    store = open_run(run_dir)
    try:
        meta = store.all_meta()
        maximize = meta.get("direction", "maximize") == "maximize"
        counts = store.status_counts()
        best = store.best_node(maximize)
        config = meta.get("config", {})
        alive = engine_alive(run_dir)
        state = meta.get("state", "unknown") if alive else "not running"
        info = {
            "run_dir": str(run_dir),
            "task": meta.get("task"),
            "nodes": sum(counts.values()),
            **counts,
            "steps_done": store.steps_done(),
            "steps_total": meta.get("steps_total"),
            "best_score": best.score if best else None,
            "best_node": best.id if best else None,
            "best_name": best.name if best else None,
            "sampler": config.get("sampler", {}).get("name"),
            "llm_mode": meta.get("llm_mode"),
            "engine": state,
            "last_state": meta.get("state"),
            "llm": store.llm_totals(),
        }
        rows = store.progress_rows()
        info["progress"] = progress.measure(rows, meta.get("steps_total"), maximize).to_dict()
        engine_meta = meta.get("engine") or {}
        if alive and isinstance(engine_meta, dict) and engine_meta.get("slots"):
            info["slots"] = engine_meta["slots"]
        return info
    finally:
        store.close()


def cmd_status(args: argparse.Namespace) -> int:
    info = run_status(args.run_dir)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    best = "-" if info["best_score"] is None else f"{info['best_score']:.6g} (#{info['best_node']})"
    llm = info["llm"]
    print(f"run:      {info['run_dir']}  (task {info['task']})")
    print(f"engine:   {info['engine']}  (last state: {info['last_state']})")
    print(f"steps:    {info['steps_done']}/{info['steps_total']}")
    print(
        f"nodes:    {info['nodes']}  done {info['done']}  failed {info['failed']}  "
        f"pruned {info['pruned']}  running {info['running']}  pending {info['pending']}"
    )
    print(f"best:     {best}")
    p = info["progress"]
    rate = "-" if p["per_minute"] is None else f"{p['per_minute']:.2f}/min"
    stall = "  STALLED: no improvement in a while" if p["stalled"] else ""
    print(
        f"progress: {rate}  eta {progress.format_eta(p['eta_seconds'])}  "
        f"{p['since_improvement']} since the last improvement (step {p['best_step']}){stall}"
    )
    if "slots" in info:
        gpus, cpus = info["slots"].get("gpus", {}), info["slots"].get("cpus", {})
        print(
            f"slots:    GPUs {gpus.get('busy', 0)}/{gpus.get('total', 0)}  "
            f"CPUs {cpus.get('busy', 0)}/{cpus.get('total', 0)}"
        )
    print(f"sampler:  {info['sampler']}   llm: {info['llm_mode']}")
    print(
        f"llm use:  {llm['calls']} calls, {llm['prompt_tokens']}+{llm['completion_tokens']} "
        f"tokens, ${llm['cost_usd']:.4f}"
    )
    return 0


def cmd_best(args: argparse.Namespace) -> int:
    store = open_run(args.run_dir)
    try:
        maximize = store.get_meta("direction", "maximize") == "maximize"
        best = store.best_node(maximize)
    finally:
        store.close()
    if best is None:
        raise UsageError(f"{args.run_dir} has no successful node yet")
    if args.output:
        if args.output.is_dir():
            raise UsageError(f"-o {args.output} is a directory; give a file name")
        if not args.output.parent.is_dir():
            raise UsageError(f"-o {args.output}: directory {args.output.parent} does not exist")
        try:
            args.output.write_text(best.code, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot write {args.output}: {exc.strerror or exc}") from None
        print(f"wrote node #{best.id} (score {best.score:.6g}) to {args.output}")
    else:
        sys.stdout.write(best.code if best.code.endswith("\n") else best.code + "\n")
    return 0
