"""The engine's own cost per candidate, side by side with OpenEvolve's (issue 22).

Both systems run the same no-op task (``loop_overhead.EVALUATOR``: read one constant, write
a score) against the same scripted OpenAI-compatible server, with the same budget and 2
workers, interleaved so that both see the same machine load. The scripted "model" answers
both with the same kind of edit: move ``X`` by 0.25 and tag the line with a counter, so no
two candidates are the same program.

* **ASI-Evolve**: the real CLI, default settings (cognition on, the default sandbox, an
  LLM researcher and an LLM analyzer: two LLM calls per candidate).
* **ASI-Evolve bare**: the same with what can be turned off turned off (no analysis call, no
  cognition, ``engineer.sandbox: none``). Not quite like for like: with ``none`` a small
  supervisor interpreter still starts per evaluation and the reaper sweeps ``/proc`` after
  it, to kill what an evaluator leaves behind; bubblewrap (the default here) needs neither.
* **OpenEvolve** (``pip install openevolve`` in its own venv, given by ``--openevolve``):
  its CLI, diff mode, ``parallel_evaluations`` = workers, cascade off; its ``evaluate()``
  runs the same evaluator script as a subprocess, as OpenEvolve's own examples do for
  programs that must not run in its worker. One LLM call per candidate, no cognition.

For each run: the loop wall is from the first researcher request the server saw to the
last candidate finished (ours: the node's ``finished_at``, after its analysis; OpenEvolve:
the end of its ``evaluate()``). Cost per candidate = loop wall x workers / candidates - the
evaluator's own time (the script run directly, median). Prints each run, and the medians
with their ratio to OpenEvolve's. (CPU time is not compared: an evaluator under bubblewrap
is reaped inside its PID namespace and its CPU never reaches our accounting.)

    python benchmarks/versus_openevolve.py --openevolve /tmp/oe/.venv/bin/python \
        [--steps 60] [--workers 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from loop_overhead import evaluator_time, make_task  # noqa: E402
from scripted_server import (  # noqa: E402
    Reply,
    ScriptedServer,
    analysis_reply,
    role_of,
    search_replace,
)

# OpenEvolve's evaluate(): the same evaluator script in a subprocess; its end time is logged.
OE_EVALUATE = textwrap.dedent(
    """
    import json, os, subprocess, sys, tempfile, time

    def evaluate(program_path):
        with tempfile.TemporaryDirectory() as work:
            results = os.path.join(work, "results.json")
            env = {**os.environ, "ASI_EVOLVE_RESULTS": results}
            subprocess.run([sys.executable, EVALUATOR, program_path], cwd=work, env=env,
                           check=True, timeout=30)
            with open(results) as f:
                score = json.load(f)["score"]
        with open(LOG, "a") as f:
            f.write(f"{time.time()}\\n")
        return {"combined_score": score}
    """
)

OE_CONFIG = """
max_iterations: {steps}
checkpoint_interval: 100000
log_level: WARNING
random_seed: 0
diff_based_evolution: true
llm:
  api_base: {base_url}
  api_key: sk-bench
  models: [{{name: scripted-model, weight: 1.0}}]
  retries: 0
  timeout: 30
evaluator:
  parallel_evaluations: {workers}
  cascade_evaluation: false
  timeout: 30
  enable_artifacts: false
database:
  population_size: 1000
  num_islands: 1
"""

OURS_PROGRAM = re.compile(r"^## Parent program\n```[\w+-]*\n(.*?)\n```$", re.S | re.M)
THEIRS_PROGRAM = re.compile(r"^# Current Program\n```[\w+-]*\n(.*?)\n```$", re.S | re.M)


class StepEditor:
    """Both systems' researcher: X moves by 0.25 from the parent, the line gets a counter."""

    def __init__(self) -> None:
        self.count = 0
        self.first: float | None = None
        self._lock = threading.Lock()

    def __call__(self, request: dict[str, Any]) -> Reply:
        with self._lock:
            self.count += 1
            count = self.count
            if self.first is None:
                self.first = time.time()
        prompt = "\n".join(str(m.get("content", "")) for m in request.get("messages", []))
        found = OURS_PROGRAM.search(prompt) or THEIRS_PROGRAM.search(prompt)
        program = found.group(1) if found else ""
        line = next((ln for ln in program.split("\n") if ln.startswith("X = ")), None)
        if line is None:
            return Reply("<name>nothing</name>\n<motivation>No X found.</motivation>\n")
        value = float(line.split("=")[1].split("#")[0]) + 0.25
        new = f"X = {value}  # edit {count}"
        return Reply(
            f"<name>x-{count}</name>\n<motivation>Move X to {value}: probe {count}."
            f"</motivation>\n" + search_replace(line, new)
        )


def handler_for(editor: StepEditor) -> Any:
    def handle(request: dict[str, Any]) -> Reply | str:
        role = role_of(request)
        if role == "analyzer":
            return analysis_reply(request)
        if role == "judge":
            return Reply("OK")
        return editor(request)  # our researcher, or OpenEvolve's only prompt

    return handle


# What can be turned off: the analysis call, cognition, the sandbox (not the supervisor).
BARE = {"use_analyzer": False, "use_cognition": False, "engineer": {"sandbox": "none"}}


def run_ours(
    root: Path, task: Path, steps: int, workers: int, bare: bool = False
) -> tuple[int, float]:
    editor = StepEditor()
    with ScriptedServer(handler_for(editor)) as server:
        config = root / "config.yaml"
        settings = {"api": {"base_url": server.base_url, "retries": 0}, **(BARE if bare else {})}
        config.write_text(json.dumps(settings))
        env = {**os.environ, "OPENAI_API_KEY": "sk-bench"}
        run_dir = root / "run"
        argv = [sys.executable, "-m", "engine.cli", "run", str(task), "--llm", "openai"]
        argv += ["--config", str(config), "--steps", str(steps), "--workers", str(workers)]
        argv += ["--run-dir", str(run_dir), "--quiet"]
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"asi-evolve failed: {done.stderr[-1500:]}")
    db = sqlite3.connect(run_dir / "evolve.db")
    rows = db.execute("SELECT finished_at FROM nodes WHERE step >= 1").fetchall()
    db.close()
    return len(rows), max(r[0] for r in rows) - (editor.first or 0.0)


def run_theirs(root: Path, task: Path, python: str, steps: int, workers: int) -> tuple[int, float]:
    editor = StepEditor()
    log = root / "oe_ends.log"
    evaluate = root / "oe_evaluate.py"
    evaluate.write_text(
        f"EVALUATOR = {str(task / 'evaluate.py')!r}\nLOG = {str(log)!r}\n" + OE_EVALUATE
    )
    with ScriptedServer(handler_for(editor)) as server:
        config = root / "oe_config.yaml"
        config.write_text(OE_CONFIG.format(steps=steps, workers=workers, base_url=server.base_url))
        argv = [python, "-m", "openevolve.cli", str(task / "initial.py"), str(evaluate)]
        argv += ["--config", str(config), "--iterations", str(steps)]
        argv += ["--output", str(root / "oe_out")]
        env = {**os.environ, "OPENAI_API_KEY": "sk-bench"}
        done = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"openevolve failed: {done.stderr[-1500:]}")
    ends = sorted(float(x) for x in log.read_text().split())
    ends = [e for e in ends if e >= (editor.first or 0.0)]  # the initial program's is before
    return len(ends), ends[-1] - (editor.first or 0.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--openevolve", required=True, help="a python with openevolve installed")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=20, help="direct evaluator runs")
    args = parser.parse_args()
    costs: dict[str, list[float]] = {"asi-evolve": [], "asi-bare": [], "openevolve": []}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        task = make_task(base / "task")
        (base / "work").mkdir()
        own = evaluator_time(task, base / "work", args.runs)
        print(f"evaluator's own time (direct, median of {args.runs}): {1000 * own:.1f} ms")
        header = f"{'round':>5} {'system':<11} {'cands':>5} {'loop wall':>9} {'per cand':>9}"
        print(f"{header} {'cost':>8}")
        for number in range(args.rounds):
            for name in costs:
                root = base / f"{name}-{number}"
                root.mkdir()
                if name.startswith("asi-"):
                    bare = name == "asi-bare"
                    n, wall = run_ours(root, task, args.steps, args.workers, bare)
                else:
                    n, wall = run_theirs(root, task, args.openevolve, args.steps, args.workers)
                per = wall * args.workers / n
                costs[name].append(per - own)
                print(
                    f"{number:>5} {name:<11} {n:>5} {wall:>8.2f}s {1000 * per:>7.1f}ms "
                    f"{1000 * (per - own):>6.1f}ms",
                    flush=True,
                )
    theirs = statistics.median(costs["openevolve"])
    print("median cost per candidate beyond the evaluator, and the ratio to OpenEvolve's:")
    for name, values in costs.items():
        cost = statistics.median(values)
        print(f"  {name:<11} {1000 * cost:6.1f} ms  x{cost / theirs:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
