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
evaluator's own time (the script run directly, median). On a shared 2-core machine the
wall figure swings by 10 ms between runs (the evaluator's own time with it), so each
system is also charged its **CPU**: user + system time of its whole process tree (``wait4``
of the CLI: every process in it is waited for, the evaluators included), for a run of
``--steps`` minus a run of 1 step (start-up and the initial program cancel out), per
candidate, minus the evaluator's own CPU. The scripted server runs in this process and is
charged to neither. Under bubblewrap (the default here) the evaluators' CPU does not reach
the tree's account (bwrap's init in the PID namespace is not waited for), so "asi-evolve"
reads low by up to one evaluator; "asi-bare" and OpenEvolve are like for like.
Prints each run, and the medians with their ratio to OpenEvolve's.

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

from loop_overhead import make_task  # noqa: E402
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


def run_tree(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str, float]:
    """Run ``argv``; its exit code, the end of its stderr, and the CPU seconds (user +
    system) of it and of every descendant it waited for."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        err.seek(0)
        tail = err.read()[-1500:].decode(errors="replace")
    return proc.returncode, tail, usage.ru_utime + usage.ru_stime


def evaluator_cost(task: Path, work: Path, runs: int) -> tuple[float, float]:
    """Median wall and CPU seconds of the evaluator run directly (its interpreter included)."""
    env = {**os.environ, "ASI_EVOLVE_RESULTS": str(work / "results.json")}
    argv = [sys.executable, str(task / "evaluate.py"), str(task / "initial.py")]
    walls, cpus = [], []
    for _ in range(runs):
        start = time.perf_counter()
        cpus.append(run_tree(argv, work, env)[2])
        walls.append(time.perf_counter() - start)
    return statistics.median(walls), statistics.median(cpus)


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
) -> tuple[int, float, float]:
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
        code, err, cpu = run_tree(argv, ROOT, env)
    if code != 0:
        raise SystemExit(f"asi-evolve failed: {err}")
    db = sqlite3.connect(run_dir / "evolve.db")
    rows = db.execute("SELECT finished_at FROM nodes WHERE step >= 1").fetchall()
    db.close()
    return len(rows), max(r[0] for r in rows) - (editor.first or 0.0), cpu


def run_theirs(
    root: Path, task: Path, python: str, steps: int, workers: int
) -> tuple[int, float, float]:
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
        code, err, cpu = run_tree(argv, root, env)
    if code != 0:
        raise SystemExit(f"openevolve failed: {err}")
    ends = sorted(float(x) for x in log.read_text().split())
    ends = [e for e in ends if e >= (editor.first or 0.0)]  # the initial program's is before
    return len(ends), ends[-1] - (editor.first or 0.0), cpu


SYSTEMS = ("asi-evolve", "asi-bare", "openevolve")


def run_system(name: str, root: Path, task: Path, steps: int, args: argparse.Namespace):
    root.mkdir()
    if name.startswith("asi-"):
        return run_ours(root, task, steps, args.workers, name == "asi-bare")
    return run_theirs(root, task, args.openevolve, steps, args.workers)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--openevolve", help="a python with openevolve installed")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=20, help="direct evaluator runs")
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    args = parser.parse_args()
    names = tuple(args.systems)
    costs: dict[str, list[float]] = {name: [] for name in names}
    cpus: dict[str, list[float]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        task = make_task(base / "task")
        (base / "work").mkdir()
        own, own_cpu = evaluator_cost(task, base / "work", args.runs)
        print(
            f"evaluator's own time (direct, median of {args.runs}): {1000 * own:.1f} ms wall, "
            f"{1000 * own_cpu:.1f} ms CPU"
        )
        header = f"{'round':>5} {'system':<11} {'cands':>5} {'loop wall':>9} {'per cand':>9}"
        print(f"{header} {'cost':>8} {'CPU cost':>9}")
        for number in range(args.rounds):
            for name in names:
                n, wall, cpu = run_system(name, base / f"{name}-{number}", task, args.steps, args)
                _, _, cpu_one = run_system(name, base / f"{name}-{number}-1", task, 1, args)
                per = wall * args.workers / n
                cpu_per = (cpu - cpu_one) / (n - 1) - own_cpu
                costs[name].append(per - own)
                cpus[name].append(cpu_per)
                print(
                    f"{number:>5} {name:<11} {n:>5} {wall:>8.2f}s {1000 * per:>7.1f}ms "
                    f"{1000 * (per - own):>6.1f}ms {1000 * cpu_per:>7.1f}ms",
                    flush=True,
                )
    print("medians per candidate beyond the evaluator, and their ratio to OpenEvolve's:")
    theirs = "openevolve" in names
    wall_theirs = statistics.median(costs["openevolve"]) if theirs else float("nan")
    cpu_theirs = statistics.median(cpus["openevolve"]) if theirs else float("nan")
    for name in names:
        cost, cpu = statistics.median(costs[name]), statistics.median(cpus[name])
        print(
            f"  {name:<11} wall {1000 * cost:6.1f} ms  x{cost / wall_theirs:.2f}   "
            f"CPU {1000 * cpu:6.1f} ms  x{cpu / cpu_theirs:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
