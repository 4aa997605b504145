"""Per-node engine overhead at scale: sample + insert + two updates + observe.

A real round costs minutes of LLM and evaluation time, so the engine's own bookkeeping only
matters if it grows with the run. This measures it on runs of 1k, 10k and 100k existing
nodes of ~10 KB code each (the pre-fill is not timed; building the sampler is timed apart
as "load", since a restart pays it once).

    python benchmarks/engine_overhead.py [--sizes 1000 10000 100000] [--iters 200]
                                         [--sampler ucb1 island]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.samplers import SamplerSettings, make_sampler
from engine.store.records import DONE, PENDING, RUNNING, Node
from engine.store.run_store import RunStore

N_BODIES = 256  # distinct program bodies; each node adds a unique header


@dataclass
class Result:
    sampler: str
    size: int
    load_s: float
    total_ms: list[float]
    sample_ms: list[float]
    store_ms: list[float]
    observe_ms: list[float]
    reload_s: float = 0.0  # a restart over the same run (caches warm)


def make_bodies(code_kb: int, rng: np.random.Generator) -> list[str]:
    """Random programs of ~code_kb KB over a shared vocabulary (so diversity varies)."""
    vocab = np.array([f"name_{i}" for i in range(4000)] + ["def", "return", "(", ")", ":"])
    bodies = []
    for _ in range(N_BODIES):
        words = rng.choice(vocab[: rng.integers(300, len(vocab))], size=code_kb * 150)
        bodies.append(" ".join(words)[: code_kb * 1000 + int(rng.integers(-2000, 2000))])
    return bodies


def prefill(store: RunStore, size: int, bodies: list[str], islands: int, rng: np.random.Generator):
    """Insert ``size`` done nodes in one transaction (step 0 is the root, on no island)."""
    now = time.time()
    rows = []
    for step in range(size):
        parent = int(rng.integers(1, step + 1)) if step > 0 else None
        rows.append(
            (
                step,
                f"node {step}",
                parent,
                json.dumps([parent] if parent else []),
                f"# node {step}\n{bodies[step % len(bodies)]}",
                json.dumps({"metrics": {"acc": float(rng.random())}}),
                float(rng.random()),
                DONE,
                step % islands if step > 0 else None,
                int(rng.integers(0, 5)),
                now,
                now,
            )
        )
    with store.db.conn:
        store.db.conn.executemany(
            "INSERT INTO nodes(step, name, parent_id, parent_ids, code, results, score, status, "
            "island, visits, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            rows,
        )


def run_one(name: str, size: int, iters: int, code_kb: int, seed: int) -> Result:
    rng = np.random.default_rng(seed)
    bodies = make_bodies(code_kb, rng)
    settings = SamplerSettings(name=name)
    with tempfile.TemporaryDirectory(prefix="evolve-bench-") as tmp:
        store = RunStore.create(Path(tmp) / "run")
        prefill(store, size, bodies, settings.num_islands, rng)
        t0 = time.perf_counter()
        sampler = make_sampler(settings, store, maximize=True, seed=seed)
        load_s = time.perf_counter() - t0
        res = Result(name, size, load_s, [], [], [], [])
        for it in range(iters):
            step = size + it
            t0 = time.perf_counter()
            sel = sampler.sample()
            t1 = time.perf_counter()
            child = Node(
                step=step,
                code=f"# node {step}\n{bodies[int(rng.integers(len(bodies)))]}",
                parent_ids=[sel.parent_id],
                context_ids=sel.context_ids,
                motivation="benchmark round",
                island=sel.island,
                status=PENDING,
            )
            store.insert_node(child)
            store.update_node(child.id, status=RUNNING, started_at=time.time())
            score = float(rng.random())
            results = {"metrics": {"acc": score, "latency_ms": 12.5}, "stdout": "ok\n" * 20}
            store.update_node(
                child.id, status=DONE, score=score, results=results, finished_at=time.time()
            )
            child.status, child.score, child.results = DONE, score, results
            t2 = time.perf_counter()
            sampler.observe(child)
            t3 = time.perf_counter()
            res.sample_ms.append((t1 - t0) * 1e3)
            res.store_ms.append((t2 - t1) * 1e3)
            res.observe_ms.append((t3 - t2) * 1e3)
            res.total_ms.append((t3 - t0) * 1e3)
        t0 = time.perf_counter()
        make_sampler(settings, store, maximize=True, seed=seed)
        res.reload_s = time.perf_counter() - t0
        store.close()
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--sampler", nargs="+", default=["ucb1"])
    parser.add_argument("--code-kb", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    header = (
        f"{'sampler':<8} {'size':>7} {'load s':>7} {'reload s':>8}"
        f" {'mean ms':>8} {'p50 ms':>7} {'p95 ms':>7}"
        f" | {'sample':>6} {'store':>6} {'observe':>7}"
    )
    print(header)
    print("-" * len(header))
    for name in args.sampler:
        for size in args.sizes:
            r = run_one(name, size, args.iters, args.code_kb, args.seed)
            p50, p95 = np.percentile(r.total_ms, [50, 95])
            print(
                f"{name:<8} {size:>7} {r.load_s:>7.2f} {r.reload_s:>8.2f}"
                f" {statistics.fmean(r.total_ms):>8.2f}"
                f" {p50:>7.2f} {p95:>7.2f} | {statistics.fmean(r.sample_ms):>6.2f}"
                f" {statistics.fmean(r.store_ms):>6.2f} {statistics.fmean(r.observe_ms):>7.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
