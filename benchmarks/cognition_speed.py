"""How long ``asi-evolve cognition search`` and ``asi-evolve report`` take (issue 13: < 3 s).

A person runs these from a shell, each in a new process, so the cold-process time is what
counts: interpreter start, imports, loading the embedding model, embedding the query (and,
for the report, the motivations without a cached vector). Each command is run ``--repeat``
times in fresh processes (the median is reported, plus the first run, whose page cache may be
cold); "warm" repeats the command inside one process after a first call, i.e. with the model
already in memory: what a long-lived caller (the TUI, a notebook) pays.

The run is made by ``asi-evolve run circle_packing`` (offline agents, the default MiniLM
embedder) unless ``--run-dir`` names one. ``--repo`` runs the commands from another checkout
(e.g. a ``git worktree`` of an older commit) to compare before and after; timings taken while
other work loads the machine are noisy, so the load average is printed with them.

    python benchmarks/cognition_speed.py [--run-dir DIR] [--steps 6] [--repeat 3]
                                         [--repo PATH] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
QUERY = "hexagonal packing with large circles in the corners"
WARM = """
import sys, time
from engine.cli import main
argv = sys.argv[1:]
main(argv)  # loads the model
start = time.perf_counter()
main(argv)
print(f"WARM {time.perf_counter() - start:.4f}", file=sys.stderr)
"""


@dataclass
class Timing:
    command: str
    cold_s: list[float]  # fresh processes, in order
    warm_s: float  # a second call inside one process

    @property
    def median_s(self) -> float:
        return statistics.median(self.cold_s)


def make_run(run_dir: Path, steps: int, repo: Path) -> None:
    cmd = [sys.executable, "-m", "engine.cli", "run", "circle_packing", "--steps", str(steps)]
    result = subprocess.run(
        [*cmd, "--run-dir", str(run_dir), "--quiet"], cwd=repo, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"could not make the run: {result.stderr.strip()[-500:]}")


def time_command(argv: list[str], repeat: int, repo: Path) -> Timing:
    env = {**os.environ, "PYTHONPATH": str(repo)}
    cold = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "engine.cli", *argv],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
        )
        cold.append(time.perf_counter() - start)
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed: {result.stderr.strip()[-500:]}")
    result = subprocess.run(
        [sys.executable, "-c", WARM, *argv], cwd=repo, env=env, capture_output=True, text=True
    )
    warm_lines = [line for line in result.stderr.splitlines() if line.startswith("WARM ")]
    if result.returncode != 0 or not warm_lines:
        raise SystemExit(f"warm {' '.join(argv)} failed: {result.stderr.strip()[-500:]}")
    return Timing(
        argv[0] if argv[0] == "report" else f"cognition {argv[1]}",
        cold,
        float(warm_lines[-1].split()[1]),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run-dir", type=Path, help="default: a new circle_packing run")
    parser.add_argument("--steps", type=int, default=6, help="steps of the run made here")
    parser.add_argument("--repeat", type=int, default=3, help="fresh processes per command")
    parser.add_argument("--repo", type=Path, default=REPO, help="checkout to run from")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args.run_dir
        if run_dir is None:
            run_dir = Path(tmp) / "run"
            make_run(run_dir, args.steps, REPO)
        timings = [
            time_command(["cognition", "search", str(run_dir), QUERY], args.repeat, args.repo),
            time_command(["report", str(run_dir)], args.repeat, args.repo),
        ]
    load = os.getloadavg()
    if args.json:
        rows = [{**asdict(t), "median_s": t.median_s} for t in timings]
        print(json.dumps({"load_average": load, "repo": str(args.repo), "timings": rows}))
        return 0
    print(f"repo {args.repo}   load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    for t in timings:
        runs = " ".join(f"{s:.2f}" for s in t.cold_s)
        print(
            f"{t.command:<18} cold median {t.median_s:5.2f} s (runs {runs})   "
            f"warm {t.warm_s * 1000:7.1f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
