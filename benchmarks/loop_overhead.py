"""The engine's own cost per candidate, beyond what the evaluator itself takes.

A real run is `asi-evolve run` against an LLM endpoint with cognition and the sandbox on.
This runs exactly that - the real CLI in its own process, 2 workers, the scripted
OpenAI-compatible server of the test suite (researcher, analyzer), the default cognition
base (MiniLM) and the default sandbox - on a task whose evaluator does nothing but read
one constant and write ``results.json``. What is left is the engine: retrieval and
embedding, the LLM round trips, the novelty check, launching the sandboxed evaluator,
reading its results, the commits, the analysis.

    python benchmarks/loop_overhead.py [--steps 60] [--workers 2] [--runs 20]

Prints, per candidate (medians over the run's candidates):

* ``cost per candidate``: wall time x workers / candidates, minus the evaluator's own time
  (the same command run directly, without the engine: ``--runs`` times, median). The
  target (issue 22) is <= 30 ms. On a shared 2-core machine it moves by 10-20 ms between
  consecutive runs (so does the evaluator's own time it subtracts). It also charges the
  engine for what the run's evaluators cost each other on 2 cores, so the line below it
  subtracts the evaluator's time with as many copies at once as there are workers instead;
* ``engine CPU per candidate``: the engine process's CPU (user + system) for the run minus
  that of a 1-step run, per further candidate: start-up excluded, far steadier than wall;
* the breakdown, timed inside the engine process by wrapping the named methods: retrieval
  (of which embedding), novelty check, LLM calls (from the run's ``llm_calls``), the stage
  run (of which the launch: stage minus the evaluator's own time), database calls awaited
  by the loop, and the post phase (analysis, proposals).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from scripted_server import ConstantEditor, ScriptedServer, agents_script  # noqa: E402

EVALUATOR = textwrap.dedent(
    """
    import json, os, re, sys
    text = open(sys.argv[1]).read()
    found = re.search(r"^X = ([-0-9.e]+)", text, re.M)
    x = float(found.group(1)) if found else 0.0
    with open(os.environ.get("ASI_EVOLVE_RESULTS", "results.json"), "w") as f:
        json.dump({"score": -abs(x - 3.0), "metrics": {"x": x}}, f)
    """
)

# Runs the real CLI with timers around the methods the breakdown names; the timings are
# written to $TIMINGS when the process exits.
RUNNER = textwrap.dedent(
    """
    import atexit, functools, json, os, sys, time
    timings = {}

    def timed(owner, name, key):
        original = getattr(owner, name)
        if hasattr(original, "__code__") and original.__code__.co_flags & 0x80:  # async
            @functools.wraps(original)
            async def wrapper(*args, **kwargs):
                start = time.perf_counter()
                try:
                    return await original(*args, **kwargs)
                finally:
                    timings.setdefault(key, []).append(time.perf_counter() - start)
        else:
            @functools.wraps(original)
            def wrapper(*args, **kwargs):
                start = time.perf_counter()
                try:
                    return original(*args, **kwargs)
                finally:
                    timings.setdefault(key, []).append(time.perf_counter() - start)
        setattr(owner, name, wrapper)

    from cognition.embedder import VectorCache
    from cognition.retriever import CognitionRetriever
    from engine.execution.engineer import Engineer
    from engine.loop.pipeline import Pipeline
    from engine.store.writer import StoreThread

    timed(CognitionRetriever, "retrieve", "retrieval")
    timed(CognitionRetriever, "novelty", "novelty")
    timed(VectorCache, "encode", "embedding")
    timed(Engineer, "run_stage", "stage")
    timed(StoreThread, "call", "db")
    timed(Pipeline, "post", "post")
    def write_timings():
        import resource
        own = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        timings["cpu"] = [own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime]
        open(os.environ["TIMINGS"], "w").write(json.dumps(timings))

    atexit.register(write_timings)
    from engine.cli import main
    code = main(sys.argv[1:])
    sys.exit(code)
    """
)


def make_task(root: Path) -> Path:
    task = root / "noop"
    task.mkdir(parents=True)
    (task / "task.yaml").write_text(
        "name: noop\ndescription: task.md\ninitial_program: initial.py\n"
        "evaluator: evaluate.py\ntimeout: 30\ndirection: maximize\n"
    )
    (task / "task.md").write_text("# No-op\nSet X near 3. The evaluator only reads X.\n")
    (task / "initial.py").write_text("X = 1.0\nY = 0.5\n")
    (task / "evaluate.py").write_text(EVALUATOR)
    return task


def evaluator_time(task: Path, work: Path, runs: int, at_once: int = 1) -> float:
    """Median wall time of the evaluator run directly (its own interpreter included), with
    ``at_once`` copies started together (as many as the run has workers: on a 2-core machine
    two evaluators slow each other down without any engine)."""
    times = []
    argv = [sys.executable, str(task / "evaluate.py"), str(task / "initial.py")]
    for _ in range(runs):
        procs = []
        for k in range(at_once):
            (work / str(k)).mkdir(exist_ok=True)
            env = {**os.environ, "ASI_EVOLVE_RESULTS": str(work / str(k) / "results.json")}
            procs.append((time.perf_counter(), subprocess.Popen(argv, cwd=work / str(k), env=env)))
        for start, proc in procs:
            if proc.wait() != 0:
                raise SystemExit("the no-op evaluator failed")
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def ms(values: list[float]) -> str:
    return f"{1000 * statistics.median(values):7.1f} ms" if values else "      - "


def run_cli(root: Path, task: Path, steps: int, workers: int) -> tuple[dict, list, list]:
    """One run of the real CLI (timed by RUNNER): its timings, node times and LLM latencies."""
    rules = [(f"X = {a}", f"X = {b}") for a, b in [("1.0", "1.5"), ("1.5", "2.0")]]
    handler = agents_script(ConstantEditor(rules))
    root.mkdir()
    with ScriptedServer(handler) as server:
        config = root / "config.yaml"
        config.write_text(json.dumps({"api": {"base_url": server.base_url, "retries": 0}}))
        env = {**os.environ, "OPENAI_API_KEY": "sk-bench", "TIMINGS": str(root / "t.json")}
        argv = [sys.executable, "-c", RUNNER, "run", str(task), "--llm", "openai"]
        argv += ["--config", str(config), "--steps", str(steps)]
        argv += ["--workers", str(workers), "--run-dir", str(root / "run"), "--quiet"]
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stdout[-2000:] + "\n" + done.stderr[-2000:])
    timings = json.loads((root / "t.json").read_text())
    db = sqlite3.connect(root / "run" / "evolve.db")
    nodes = db.execute(
        "SELECT created_at, started_at, finished_at FROM nodes WHERE step >= 1 "
        "AND finished_at IS NOT NULL ORDER BY finished_at"
    ).fetchall()
    llm = [r[0] for r in db.execute("SELECT latency FROM llm_calls WHERE ok = 1")]
    db.close()
    return timings, nodes, llm


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs", type=int, default=20, help="direct evaluator runs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        task = make_task(root)
        (root / "work").mkdir()
        own = evaluator_time(task, root / "work", args.runs)
        own_together = evaluator_time(task, root / "work", args.runs, args.workers)
        start = time.perf_counter()
        timings, nodes, llm = run_cli(root / "long", task, args.steps, args.workers)
        total = time.perf_counter() - start
        one, one_nodes, _ = run_cli(root / "short", task, 1, args.workers)
    n = len(nodes)
    loop_wall = nodes[-1][2] - nodes[0][0]  # first candidate created -> last finished
    per_candidate = loop_wall * args.workers / n
    stage = timings.get("stage", [])
    launch = [s - own for s in stage]
    cost = per_candidate - own
    print(f"{n} candidates, {args.workers} workers, cognition on, sandbox default")
    print(f"process wall {total:.1f} s (start-up and the initial program included)")
    print(f"evaluator's own time (direct, median of {args.runs}): {1000 * own:7.1f} ms")
    print(f"per candidate per worker (loop wall x workers / n):  {1000 * per_candidate:7.1f} ms")
    print(f"COST PER CANDIDATE beyond the evaluator:           {1000 * cost:7.1f} ms")
    print(
        f"  (the evaluator {args.workers} at once without the engine: "
        f"{1000 * own_together:.1f} ms; beyond that {1000 * (per_candidate - own_together):.1f} ms)"
    )
    cpu_self, cpu_children = timings["cpu"]
    print(
        f"CPU, whole process: engine {1000 * cpu_self / n:.1f} ms per candidate, "
        f"its children (sandbox and evaluators) {1000 * cpu_children / n:.1f} ms"
    )
    # Start-up (imports, MiniLM, the initial program) and one candidate cost the same in a
    # 1-step run: the difference is what each further candidate costs the engine process.
    extra = n - len(one_nodes)
    marginal = (cpu_self - one["cpu"][0]) / extra if extra > 0 else float("nan")
    print(
        f"ENGINE CPU PER CANDIDATE, start-up excluded (a 1-step run subtracted): "
        f"{1000 * marginal:.1f} ms"
    )
    print("breakdown (median per call, calls):")
    rows = [
        ("retrieval", timings.get("retrieval", [])),
        ("  embedding", timings.get("embedding", [])),
        ("novelty check", timings.get("novelty", [])),
        ("LLM call", llm),
        ("stage run", stage),
        ("  launch (- own)", launch),
        ("database call", timings.get("db", [])),
        ("post (analysis)", timings.get("post", [])),
    ]
    for name, values in rows:
        print(f"  {name:<20} {ms(values)}  x{len(values)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
