"""Slot utilisation of the real Engine against the ideal, with fake GPUs and sleep evaluators.

W research workers each spend L seconds researching (a researcher that sleeps, then moves a
literal) and E seconds experimenting (an evaluator that sleeps) on S fake GPU slots. With
no scheduling loss, candidates finish at min(W / (L + E), S / E) per second and the slots
are busy a share min(1, W·E / ((L + E)·S)) of the time. The engine's overhead, the slot
pool's queueing and SQLite commits show up as the gap between measured and ideal.

With ``--jitter J`` each experiment takes E·U(1-J, 1+J) (drawn from the program text), and
every W is run with and without the step barrier (``engine/samplers/barrier.py``: step s waits
until all steps <= s - W finished, which makes a run reproducible); the difference is the
barrier's cost in throughput and slot use.

    python benchmarks/slot_utilisation.py --workers 4 --slots 2 --research 0.2 --experiment 0.5
    python benchmarks/slot_utilisation.py --workers 2 4 8 --slots 4 --jitter 0.8 --steps 48
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.agents.setup import build_offline_agents  # noqa: E402
from engine.execution.engineer import Engineer, Limits  # noqa: E402
from engine.execution.resources import SlotPool  # noqa: E402
from engine.loop.engine import Engine  # noqa: E402
from engine.samplers import make_sampler  # noqa: E402
from engine.samplers.barrier import StepBarrier  # noqa: E402
from engine.samplers.settings import SamplerSettings  # noqa: E402
from engine.store.run_store import RunStore  # noqa: E402
from engine.task import (
    Resources,  # noqa: E402
    load_task,  # noqa: E402
)

EVALUATOR = """import hashlib, json, os, random, runpy, sys, time
jitter = float(os.environ["BENCH_JITTER"])
u = random.Random(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest()).uniform(-1, 1)
time.sleep(float(os.environ["BENCH_EXPERIMENT"]) * (1 + jitter * u))
x = float(runpy.run_path(sys.argv[1])["X"])
json.dump({"score": -abs(x - 3)}, open(os.environ["ASI_EVOLVE_RESULTS"], "w"))
"""


class RecordingPool(SlotPool):
    """A slot pool that remembers how long each grant was held."""

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.held: list[tuple[float, float, int]] = []

    @contextlib.asynccontextmanager
    async def acquire(self, resources: Resources):  # noqa: ANN201
        async with super().acquire(resources) as grant:
            start = time.monotonic()
            try:
                yield grant
            finally:
                self.held.append((start, time.monotonic(), len(grant.gpu_ids)))


class SlowResearcher:
    def __init__(self, inner, latency: float) -> None:  # noqa: ANN001
        self.inner, self.latency, self.label = inner, latency, "slow offline"

    async def propose(self, ctx):  # noqa: ANN001, ANN201
        await asyncio.sleep(self.latency)
        return await self.inner.propose(ctx)


def run(
    workers: int,
    slots: int,
    research: float,
    experiment: float,
    steps: int,
    jitter: float = 0.0,
    barrier: bool = True,
) -> dict:
    import os

    os.environ["BENCH_EXPERIMENT"] = str(experiment)
    os.environ["BENCH_JITTER"] = str(jitter)
    root = Path(tempfile.mkdtemp(prefix="slots-"))
    task_dir = root / "task"
    task_dir.mkdir()
    (task_dir / "task.yaml").write_text(
        "name: slots\ndescription: task.md\ninitial_program: initial.py\nevaluator: evaluate.py\n"
        "stages:\n  - name: explore\n    command: '{python} {evaluator} {program}'\n"
        "    timeout: 60\n    resources: {cpus: 1, gpus: 1}\n"
    )
    (task_dir / "task.md").write_text("sleep benchmark\n")
    (task_dir / "initial.py").write_text("X = 1.0\n")
    (task_dir / "evaluate.py").write_text(EVALUATOR)
    task = load_task(task_dir)
    store = RunStore.create(root / "run")
    store.set_meta("task", task.name)
    agents = build_offline_agents(0)
    agents.researcher = SlowResearcher(agents.researcher, research)
    pool = RecordingPool([str(i) for i in range(slots)], cpus=64)
    engine = Engine(
        store=store,
        task=task,
        run_dir=root / "run",
        agents=agents,
        sampler=StepBarrier(
            make_sampler(SamplerSettings(), store, True, 0), workers if barrier else None
        ),
        engineer=Engineer(task, Limits()),
        steps_total=steps,
        workers=workers,
        use_analyzer=False,
        pool=pool,
    )
    asyncio.run(engine.run())
    # Measure the steady part: from the first candidate's grant (after the root) to the end.
    candidates = sorted(pool.held)[1:]
    start, end = candidates[0][0], max(e for _, e, _ in candidates)
    busy = sum((e - s) * g for s, e, g in candidates)
    wall = end - start
    return {
        "throughput": len(candidates) / wall,
        "ideal_throughput": min(workers / (research + experiment), slots / experiment),
        "utilisation": busy / (slots * wall),
        "ideal_utilisation": min(1.0, workers * experiment / ((research + experiment) * slots)),
        "peak_gpus": pool.peak["gpus"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--research", type=float, default=0.2)
    parser.add_argument("--experiment", type=float, default=0.5)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--jitter", type=float, default=0.0, help="experiment time spread J")
    args = parser.parse_args()
    print(
        f"S={args.slots} slots, L={args.research}s research, E={args.experiment}s experiment "
        f"(x U(1-J, 1+J), J={args.jitter})"
    )
    print(
        f"{'W':>3} {'barrier':>7} {'cand/s':>8} {'ideal':>7} {'util':>6} {'ideal':>6} {'peak':>5}"
    )
    for w in args.workers:
        for barrier in (True, False):
            r = run(w, args.slots, args.research, args.experiment, args.steps, args.jitter, barrier)
            print(
                f"{w:>3} {'on' if barrier else 'off':>7} {r['throughput']:>8.2f} "
                f"{r['ideal_throughput']:>7.2f} {r['utilisation']:>6.2f} "
                f"{r['ideal_utilisation']:>6.2f} {r['peak_gpus']:>5}"
            )


if __name__ == "__main__":
    main()
