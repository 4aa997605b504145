"""The offline researcher as a general optimiser, against Optuna TPE, CMA-ES and random search.

Each task of ``benchmarks/search_tasks.py`` is run, with the same budget of evaluations and
the same seeds, by

* ``ours``: the built-in offline researcher in an in-process run (``search_harness.py``):
  the default rank sampler and 2 workers, as ``asi-evolve run`` gives them; it sees only the
  program, whose settings state the libraries' box as a user who knows it writes it
  (``x0 = 0.4  # in [0.0, 1.0]``), and its budget counts the initial program;
* ``ours_nobox``: the same without the ranges in the program: the researcher knows no box;
* ``tpe``: Optuna's TPE sampler (defaults), ask/tell on the task's box;
* ``cmaes``: CMA-ES (the ``cmaes`` package behind Optuna's CMA-ES sampler, ask/tell) with
  its mean at the task's start, on the box;
* ``random``: uniform in the box.

Every library starts with the task's start point as its first trial, so all four begin where
the program does. The printed number is the true score of the candidate each run judged best
(on the noisy task the search sees a noisy score); per task and method, the median over the
seeds and its 95 % percentile bootstrap interval in brackets (``benchmarks/bootstrap.py``,
seeded: the same runs print the same interval; with 5 seeds it is nearly the min-max).
Optuna is the ``bench`` extra (``pip install -e .[bench]``); ``cmaes`` is a core dependency.

    python benchmarks/search_quality.py [--tasks quadratic ...] [--methods ours tpe ...]
        [--seeds 0 1 2 3 4] [--budget 200] [--checkpoints 50 100] [--workers 2]
        [--jobs 1] [--json]

Measured 2026-12-07 (later) with the start-up move (``engine/agents/offline/startup.py``: while
every float states a range, the run's first 10 steps move all floats at once by 1/6 of their
range's width), seeds 0-79: ours at 200 evaluations, median [95 % interval]; the libraries
at 200 / 100:

    task          ours [95 % interval]      tpe                 cmaes                  random
    quadratic     -0 [-0 - -0]              -0.072 / -0.28      -0.071 / -0.61         -3.75
    user_bowl     10 [10 - 10]              9.999 / 9.989       10 / 9.999             9.50
    rosenbrock4   -2.80 [-2.96 - -2.59]     -3.74 / -8.2        -2.97 / -8.95          -234
    ellipsoid6    -0 [-2e-6 - -0]           -209 / -449         -89 / -356             -1683
    series_fit    -0.097 [-0.14 - -0.077]   -0.199 / -0.244     -0.095 / -0.203        -0.285
    spread12      0.212 [0.205 - 0.218]     0.199 / 0.163       0.137 / 0.121          0.161
    noisy_sphere  -0.0044 [-0.006 - -0.002] -0.077 / -0.25      -0.043 / -0.31         -4.69

(ours at 100: quadratic -0, user_bowl 10, rosenbrock4 -7.6, ellipsoid6 -3e-5, series_fit
-0.236, spread12 0.183, noisy_sphere -0.0023; CMA-ES's series_fit interval -0.114 - -0.085,
TPE's spread12 0.195 - 0.204.)

Ours is at least both libraries on 6 of 7 at 200 and ties CMA-ES on series_fit (0.0014 behind,
well inside either interval); at 100 it leads on 6 of 7 and trails CMA-ES on series_fit.
Without the move (the same seeds' halves, 0-39 and 40-79): spread12 0.193 and 0.180 (TPE 0.203
and 0.197), rosenbrock4 -2.66 and -2.58, ellipsoid6 -1.6e-4 and -6.4e-5, series_fit -0.084 and
-0.161, noisy_sphere -0.016 and -0.012; at 100 spread12 0.131, ellipsoid6 -0.48. Held out
(seeds 80-159, chosen after the move was fixed): series_fit -0.096 [-0.126 - -0.074] against
CMA-ES's -0.100 and TPE's -0.212; spread12 0.216 [0.207 - 0.220] against TPE's 0.198 and
CMA-ES's 0.139; rosenbrock4 -2.56 against CMA-ES's -2.65 and TPE's -4.23 (at 100: -0.240 against
CMA-ES's -0.212, 0.183 against TPE's 0.168, -7.2 against -9.0 and -9.2). On all 160 seeds
series_fit at 200: ours -0.0965 [-0.112 - -0.085], CMA-ES -0.0983 [-0.108 - -0.087]. The
move's alternatives (a uniform draw in the box, other step sizes and numbers of steps) are in
``startup.py``. On seeds 0-4 (the issue's protocol) ours is at least both on all 7 (series_fit
-0.029 against CMA-ES's -0.069, spread12 0.227 against TPE's 0.190, rosenbrock4 -2.46 against
-2.96 and -3.06). Circle packing (held-out seeds 400-479): 1.891 -> 1.898 at 100, 2.108 -> 2.103
at 300 (the same runs with only the random stream shifted gave 1.850 and 2.101: noise).

Measured 2026-12-07, the programs stating the libraries' box as ranges (``# in [low, high]``,
which the researcher keeps every candidate inside: ``literal_moves.clamp``), ``ours_nobox``
the same researcher on the programs without them (seeds 0-19, 200 evaluations, ``--jobs 2``):

    task          ours [95 % interval]       ours_nobox  tpe      cmaes    random
    quadratic     -0 [-0 - -0]               -0          -0.066   -0.082   -3.72
    user_bowl     10 [10 - 10]               10          9.999    10       9.64
    rosenbrock4   -2.82 [-3.30 - -2.41]      -2.80       -3.83    -3.03    -286
    ellipsoid6    -8e-5 [-2e-4 - -3e-5]      -1.4e-4     -216     -114     -1841
    series_fit    -0.084 [-0.17 - -0.069]    -0.092      -0.195   -0.098   -0.258
    spread12      0.193 [0.180 - 0.203]      0.127       0.204    0.139    0.162
    noisy_sphere  -0.018 [-0.027 - -0.007]   -0.010      -0.081   -0.058   -5.81

At least both libraries on 6 of 7; spread12 trails TPE (held-out seeds 40-79: 0.180 [0.171 -
0.192] against TPE's 0.197 [0.191 - 0.203] and CMA-ES's 0.135). Without ranges 37 % of the
spread12 draws put a point outside the square (a failed candidate); with them none do. At 100
evaluations (seeds 0-19) the ranges also help the quadratic (-1.95 -> -0 [-0.032 - -0]: a
heavy-tailed jump lands on the box's edge instead of far past the optimum) and spread12
(0.088 -> 0.131; TPE 0.170). On seeds 0-4 ours is at least both on 6 of 7 (spread12 0.218
against TPE's 0.190) and loses series_fit to CMA-ES (-0.118 against -0.069). Tried and not
kept the same day: bounds learnt from the run's failed candidates instead of stated (the
failed nodes handed to the researcher, a constant blamed when it alone lay outside the
values that ran): spread12 0.127 -> 0.118-0.144 with 13-35 % still invalid, series_fit
-0.086 -> -0.092 to -0.145 (seeds 0-39); and with ranges a uniform draw in the range as a
mutation (rates 0.05-0.3): spread12 0.177-0.190, no better.

Measured 2026-12-06 with the CMA-ES move (``engine/agents/offline/cma_move.py``; seeds 0-4,
200 evaluations, 2 workers for ours, ``--jobs 2``; median [95 % bootstrap interval]; every
score is maximised, the optimum is 0 except user_bowl 10 and spread12 about 0.389):

    task          ours                    tpe                     cmaes                   random
    quadratic     -0 [-1.0 - -0]          -0.053 [-0.10 - -0.035] -0.11 [-0.15 - -0.016]  -4.66
    user_bowl     10 [10 - 10]            9.999 [9.998 - 9.999]   10 [10 - 10]            9.77
    rosenbrock4   -2.68 [-5.96 - -1.08]   -2.96 [-4.07 - -2.21]   -3.06 [-3.61 - -1.99]   -289
    ellipsoid6    -1.7e-4 [-0.26 - -2e-5] -244 [-448 - -66]       -94 [-271 - -56]        -1520
    series_fit    -0.159 [-0.55 - -0.090] -0.230 [-0.29 - -0.10]  -0.069 [-0.10 - -0.053] -0.264
    spread12      0.107 [0.080 - 0.170]   0.190 [0.162 - 0.231]   0.150 [0.113 - 0.158]   0.164
    noisy_sphere  -0.0061 [-0.046 - -1e-3] -0.071 [-0.13 - -0.016] -0.046 [-0.22 - -0.015] -5.90

Later the same day named int settings became parameters of their own (``terms = 1`` and
``stride = 1`` had moved together, so only along the diagonal; ``_int_groups`` in the
researcher): series_fit -0.159 -> -0.121 [-0.25 - -0.067] on these seeds, -0.145 -> -0.120
[-0.22 - -0.081] on seeds 0-19 (CMA-ES -0.098, TPE -0.195 there); at 100 -0.42 -> -0.27 and
-0.258 -> -0.267; no other task has a named int and none changed, nor did circle packing's
node sequences. Then the model move was limited to 8 constants at a time
(``elite_model.MAX_COLUMNS``; only spread12 has more): spread12 0.107 -> 0.134 [0.086 -
0.141] here; seeds 0-19 at 200: ours 0.102 -> 0.127 [0.110 - 0.135], CMA-ES 0.139, random
0.162, TPE 0.204; at 100 ours 0.088, CMA-ES 0.130, random 0.149, TPE 0.170. The other six
tasks and circle packing (seeds 0-3 at 300) gave exactly the same runs. Then a probe
sometimes moves two named int settings at once (``PAIR_RATE`` 0.2, from 0.2/0.3/0.5 on
seeds 0-39): series_fit -0.121 -> -0.102 [-0.25 - -0.025] here; at 200, seeds 0-19 -0.120
-> -0.092 (CMA-ES -0.098), 20-39 -0.221 -> -0.077 (CMA-ES -0.087), held-out 40-79 -0.189 ->
-0.127 [-0.21 - -0.081] (CMA-ES -0.097, TPE -0.199); at 100 on 40-79 -0.264 -> -0.270
(CMA-ES -0.203, TPE -0.235). Again only series_fit changed. Ours is at least both
libraries on 5 of 7 (not series_fit, not spread12). The move's
settings were chosen on seeds 10-29 of these tasks, its rule for never-moved floats on seeds
0-19, which include these five: this table is not a held-out measure. At 100 evaluations
on 3 (user_bowl, ellipsoid6 -3.6e-4 against -371 and -553, noisy_sphere -0.009 against -0.19
and -0.53); it trails on the quadratic (-2.07 against TPE's -0.20), rosenbrock4 (-10.4
against -8.4), series_fit (-0.42 against CMA-ES's -0.17) and spread12 (0.086 against 0.162).

Without the CMA-ES move (the same day, seeds 0-4, 200): quadratic -0, user_bowl 10,
rosenbrock4 -2.17, ellipsoid6 -3e-4, series_fit -0.139, spread12 0.111, noisy_sphere -0.022;
at 100 it led on 5 (rosenbrock4 -3.04, series_fit -0.148). Five seeds move these medians a
lot; ours alone on seeds 0-19, without and with the move, at 200: quadratic -0 and -0,
rosenbrock4 -2.87 and -2.80, ellipsoid6 -2.4e-4 and -1.4e-4, series_fit -0.142 and -0.145,
spread12 0.111 and 0.102, noisy_sphere -0.022 and -0.010; at 100: ellipsoid6 -19 and -5.6e-4,
noisy_sphere -0.21 and -0.012, rosenbrock4 -4.5 and -5.7, series_fit -0.267 and -0.258.
Before issue 23 (signs, zeros,
one parameter per occurrence, the surrogate on raw values with its peak, an elite of 60) the
researcher reached, at 200: quadratic -4, user_bowl 9 (it stalled at 8.99999: y could not
cross zero), rosenbrock4 -2.99, ellipsoid6 -151, series_fit -0.139 (the same), spread12
0.128 (better than now: 24 coordinates, too many for a quadratic surrogate of 60 points, and
each moving alone), noisy_sphere -4.64. Tried and not kept: Optuna's multivariate TPE told
the run's same-skeleton nodes at every model move (a stateless ask, seeded per step) instead
of the Gaussian and surrogate: quadratic -1.5, ellipsoid6 -136, noisy_sphere -0.18, and
circle packing 1.900 against 2.011 on seeds 0-19; draws of 1-8 x the spread for the
surrogate to choose from and repeated moves growing 1-3 x: circle packing 1.979 against
2.034 (seeds 0-39).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bootstrap import median_interval  # noqa: E402
from search_harness import run_search  # noqa: E402
from search_tasks import TASKS, Task  # noqa: E402

from engine.agents.offline.researcher import OfflineResearcher  # noqa: E402

METHODS = ("ours", "ours_nobox", "tpe", "cmaes", "random")
log = logging.getLogger("search_quality")


def run_ours(task: Task, seed: int, budget: int, workers: int, ranges: bool) -> list[float]:
    """Best judged score per evaluation (the initial program is evaluation 1); ``ranges``:
    the program states the box."""

    def evaluate(code: str) -> tuple[float | None, float | None, str]:
        namespace: dict[str, Any] = {"__name__": "candidate_program"}
        try:
            exec(compile(code, "program.py", "exec"), namespace)  # noqa: S102 - our own mutants
            values = np.asarray(namespace["params"](), dtype=float)
        except Exception as exc:  # noqa: BLE001 - a broken mutant is a failed node
            return None, None, f"{type(exc).__name__}: {exc}"
        if values.shape != (len(task.params),) or not np.all(np.isfinite(values)):
            return None, None, "wrong number of values or a non-finite one"
        seen, true = task.observe(values, f"ours/{seed}")
        return seen, true, "" if seen is not None else "invalid"

    trace = run_search(
        task.program(ranges), evaluate, OfflineResearcher(seed=seed), steps=budget - 1, seed=seed,
        workers=workers, task_name=task.name,
    )  # fmt: skip
    return trace.best


def run_library(task: Task, method: str, seed: int, budget: int) -> list[float]:
    """The same for an Optuna sampler on the task's box (ask/tell, the start first)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    start = {p.name: int(p.start) if p.is_int else p.start for p in task.params}
    sampler: optuna.samplers.BaseSampler
    if method == "tpe":
        sampler = optuna.samplers.TPESampler(seed=seed)
    else:
        sampler = optuna.samplers.RandomSampler(seed=seed)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.enqueue_trial(start)
    record = Record(task, f"{method}/{seed}")
    for _ in range(budget):
        trial = study.ask()
        values = np.array(
            [
                trial.suggest_int(p.name, int(p.low), int(p.high))
                if p.is_int
                else trial.suggest_float(p.name, p.low, p.high)
                for p in task.params
            ],
            dtype=float,
        )
        seen = record.observe(values)
        if seen is None:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            study.tell(trial, seen)
    return record.best


def run_cmaes(task: Task, seed: int, budget: int) -> list[float]:
    """CMA-ES (the ``cmaes`` package, which Optuna's CMA-ES sampler runs) on the box scaled
    to the unit cube, its mean at the start, sigma 1/6 (Optuna's default); ints rounded."""
    from cmaes import CMA

    low = np.array([p.low for p in task.params], dtype=float)
    width = np.array([p.high for p in task.params], dtype=float) - low
    ints = np.array([p.is_int for p in task.params])
    start = (np.array([p.start for p in task.params], dtype=float) - low) / width
    bounds = np.tile([0.0, 1.0], (len(task.params), 1))
    optimizer = CMA(mean=start, sigma=1 / 6, bounds=bounds, seed=seed)
    record = Record(task, f"cmaes/{seed}")
    record.observe(low + width * start)  # the start is evaluation 1, as for the others
    while len(record.best) < budget:
        told = []
        for _ in range(optimizer.population_size):
            if len(record.best) >= budget:
                break
            x = optimizer.ask()
            values = low + width * x
            values[ints] = np.round(values[ints])
            seen = record.observe(values)
            told.append((x, -seen if seen is not None else 1e12))  # CMA minimises
        if len(told) == optimizer.population_size:
            optimizer.tell(told)
    return record.best


@dataclass
class Record:
    """The judged score of the best-looking evaluation so far, after each evaluation."""

    task: Task
    salt: str
    best: list[float] = field(default_factory=list)
    best_seen: float = -np.inf
    best_true: float = float("nan")

    def observe(self, values: np.ndarray) -> float | None:
        seen, true = self.task.observe(values, self.salt)
        if seen is not None and seen > self.best_seen:
            self.best_seen, self.best_true = seen, true
        self.best.append(self.best_true)
        return seen


def one_run(job: tuple[str, str, int, int, int]) -> tuple[str, str, int, list[float]]:
    name, method, seed, budget, workers = job
    warnings.simplefilter("ignore", RuntimeWarning)
    task = TASKS[name]
    if method in ("ours", "ours_nobox"):
        best = run_ours(task, seed, budget, workers, ranges=method == "ours")
    elif method == "cmaes":
        best = run_cmaes(task, seed, budget)
    else:
        best = run_library(task, method, seed, budget)
    return name, method, seed, best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--seeds", nargs="+", type=int, default=list(range(5)))
    parser.add_argument("--budget", type=int, default=200)
    parser.add_argument("--checkpoints", nargs="*", type=int, default=[50, 100])
    parser.add_argument("--workers", type=int, default=2)  # RunConfig.workers
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel (processes)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    args = parser.parse_args(argv)
    if args.budget < 2 or args.workers < 1 or args.jobs < 1:
        print(
            "error: --budget must be at least 2, --workers and --jobs at least 1", file=sys.stderr
        )
        return 2
    jobs = [
        (name, method, seed, args.budget, args.workers)
        for name in args.tasks
        for method in args.methods
        for seed in args.seeds
    ]
    if args.jobs == 1:
        results = [one_run(job) for job in jobs]
    else:
        with ProcessPoolExecutor(args.jobs) as pool:
            results = list(pool.map(one_run, jobs))
    runs: dict[tuple[str, str], list[list[float]]] = {}
    for name, method, _, best in results:
        runs.setdefault((name, method), []).append(best)
    marks = sorted({c for c in args.checkpoints if c < args.budget} | {args.budget})
    for at in marks:
        if not args.json:
            print(f"\n{at} evaluations, seeds {args.seeds}: median [95 % bootstrap interval]")
            print(f"{'task':14s}" + "".join(f"{m:>30s}" for m in args.methods))
        for name in args.tasks:
            cells = []
            for method in args.methods:
                values = [best[at - 1] for best in runs[(name, method)]]
                median = statistics.median(values)
                low, high = median_interval(values)
                cells.append((median, low, high))
                if args.json:
                    row = {"task": name, "method": method, "evaluations": at, "median": median}
                    row["median_ci95"] = [low, high]
                    print(json.dumps({**row, "values": values, "seeds": args.seeds}))
            if not args.json:
                print(
                    f"{name:14s}"
                    + "".join(
                        f"{_g(m):>10s} [{_g(lo)} - {_g(hi)}]".rjust(30) for m, lo, hi in cells
                    )
                )
    return 0


def _g(value: float) -> str:
    return f"{value:.4g}"


if __name__ == "__main__":
    raise SystemExit(main())
