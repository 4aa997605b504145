"""What a run has done, for a person: ``asi-evolve status`` and ``asi-evolve best``.

Both read the run database read-only (``RunStore.open(readonly=True)``), so they may run
at any time beside a live engine without ever writing to its database.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from engine.app.usage import UsageError
from engine.store import progress
from engine.store.lock import engine_alive
from engine.store.run_store import RunStore
from engine.store.running import clock


def open_run(run_dir: Path) -> RunStore:
    return RunStore.open(run_dir, readonly=True)


def run_status(run_dir: Path) -> dict[str, Any]:
    store = open_run(run_dir)
    try:
        meta = store.all_meta()
        maximize = meta.get("direction", "maximize") == "maximize"
        counts = store.status_counts()
        standings = store.standings(maximize)
        best = standings.best()
        best_node = store.get_node(best.node_id) if best else None
        config = meta.get("config", {})
        alive = engine_alive(run_dir)
        state = meta.get("state", "unknown") if alive else "not running"
        now = time.time()
        info = {
            "run_dir": str(run_dir),
            "task": meta.get("task"),
            "nodes": sum(counts.values()),
            **counts,
            "steps_done": store.steps_done(),
            "steps_total": meta.get("steps_total"),
            # The reported best: the best verified node where the task has a verify stage.
            "best_score": best.score if best else None,
            "best_node": best.node_id if best else None,
            "best_name": best_node.name if best_node else None,
            "best_stage": best.stage if best else None,
            "best_verified": best.verified if best else False,
            "best_explore": best.standing.explore if best else None,
            "best_verify": best.standing.verify if best else None,
            "score_stage": standings.names.score,
            "verify_stage": standings.names.verify,
            "baseline_verify": standings.baseline,
            "below_baseline": [
                {"node": i, "verify": standing.verify}
                for i in standings.flagged()
                if (standing := standings.of(i)) is not None
            ],
            # What runs now (a list; the count of running nodes is ``running_count``).
            "running": [r.to_dict() for r in store.running(now)] if alive else [],
            "running_count": counts["running"],
            "sampler": config.get("sampler", {}).get("name"),
            "llm_mode": meta.get("llm_mode"),
            "engine": state,
            "last_state": meta.get("state"),
            "llm": store.llm_totals(),
        }
        rows = store.progress_rows()
        working = alive and meta.get("state") == "running"
        measured = progress.measure(
            rows, meta.get("steps_total"), maximize, meta.get(progress.IDLE_KEY), working
        )
        info["progress"] = measured.to_dict()
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
    llm = info["llm"]
    print(f"run:      {info['run_dir']}  (task {_text(info['task'])})")
    print(f"engine:   {info['engine']}  (last state: {_text(info['last_state'])})")
    print(f"steps:    {info['steps_done']}/{_text(info['steps_total'])}")
    print(
        f"nodes:    {info['nodes']}  done {info['done']}  failed {info['failed']}  "
        f"pruned {info['pruned']}  running {info['running_count']}  pending {info['pending']}"
    )
    print(f"best:     {_best_line(info)}")
    if info["below_baseline"]:
        flagged = ", ".join(f"#{f['node']} {f['verify']:.6g}" for f in info["below_baseline"][:8])
        more = len(info["below_baseline"]) - 8
        print(
            f"flagged:  verified below the baseline's {info['verify_stage']} "
            f"{info['baseline_verify']:.6g}: {flagged}" + (f" (+{more} more)" if more > 0 else "")
        )
    for line in _running_lines(info["running"]):
        print(line)
    p = info["progress"]
    rate = "-" if p["per_minute"] is None else f"{p['per_minute']:.2f}/min"
    eta = progress.format_eta(p["eta_seconds"])
    if p["eta_seconds"] is None and info["engine"] != "running":
        eta = f"- ({info['engine']})"
    stall = "  STALLED: no improvement in a while" if p["stalled"] else ""
    since = f"{p['since_improvement']} since the last improvement"
    if p["best_step"] is not None:
        since += f" (step {p['best_step']})"
    print(f"progress: {rate}  eta {eta}  {since}{stall}")
    if "slots" in info:
        gpus, cpus = info["slots"].get("gpus", {}), info["slots"].get("cpus", {})
        print(
            f"slots:    GPUs {gpus.get('busy', 0)}/{gpus.get('total', 0)}  "
            f"CPUs {cpus.get('busy', 0)}/{cpus.get('total', 0)}"
        )
    print(f"sampler:  {_text(info['sampler'])}   llm: {_text(info['llm_mode'])}")
    print(
        f"llm use:  {llm['calls']} calls, {llm['prompt_tokens']}+{llm['completion_tokens']} "
        f"tokens, ${llm['cost_usd']:.4f}"
    )
    return 0


def _best_line(info: dict[str, Any]) -> str:
    """E.g. ``0.6117 (#1, verify; explore 0.615)`` or ``1.84 (#12, explore; none verified
    yet)``; ``-`` before any node has a score."""
    if info["best_score"] is None:
        return "- (no scored node yet)"
    if not info["verify_stage"]:
        return f"{info['best_score']:.6g} (#{info['best_node']})"
    note = info["best_stage"]
    if info["verify_stage"] and not info["best_verified"]:
        note += "; none verified yet"
    elif info["best_verified"] and info["best_explore"] is not None:
        note += f"; {info['score_stage']} {info['best_explore']:.6g}"
    return f"{info['best_score']:.6g} (#{info['best_node']}, {note})"


def _running_lines(running: list[dict[str, Any]]) -> list[str]:
    """One line per running candidate: ``#12 explore 3:05 / 10:00``."""
    lines = []
    for i, item in enumerate(running[:10]):
        limit = f" / {clock(item['timeout'])}" if item["timeout"] else ""
        head = "running:  " if i == 0 else "          "
        lines.append(
            f"{head}#{item['node_id']} (step {item['step']}) {item['stage']} "
            f"{clock(item['elapsed'])}{limit}"
        )
    if len(running) > 10:
        lines.append(f"          ... and {len(running) - 10} more")
    return lines


def _text(value: Any) -> str:
    """A value for a person: ``-`` rather than a raw None."""
    return "-" if value is None else str(value)


def cmd_best(args: argparse.Namespace) -> int:
    """The reported best (the best verified node where the task verifies) to stdout or -o."""
    store = open_run(args.run_dir)
    try:
        maximize = store.get_meta("direction", "maximize") == "maximize"
        best = store.standings(maximize).best()
        node = store.get_node(best.node_id) if best else None
    finally:
        store.close()
    if best is None or node is None:
        raise UsageError(f"{args.run_dir} has no successful node yet")
    if args.output:
        if args.output.is_dir():
            raise UsageError(f"-o {args.output} is a directory; give a file name")
        if not args.output.parent.is_dir():
            raise UsageError(f"-o {args.output}: directory {args.output.parent} does not exist")
        try:
            args.output.write_text(node.code, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot write {args.output}: {exc.strerror or exc}") from None
        print(f"wrote node #{node.id} ({best.stage} score {best.score:.6g}) to {args.output}")
    else:
        sys.stdout.write(node.code if node.code.endswith("\n") else node.code + "\n")
    return 0
