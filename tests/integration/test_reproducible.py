"""A run is reproducible for a seed whatever the evaluation timing (engine/samplers/barrier.py).

Two runs of the real Engine on circle packing, offline, 3 workers, same seed, where the
evaluator sleeps a different pseudo-random time per program in each run, must produce the
same nodes: same step -> parent, context, program and score. The test also checks that the
evaluations really finished in a different order, or it would prove nothing.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from conftest import REPO

from engine.agents.offline.researcher import ELITE_SIZE
from engine.agents.setup import build_offline_agents
from engine.execution.engineer import Engineer, Limits
from engine.loop.engine import Engine
from engine.samplers import make_sampler
from engine.samplers.settings import SamplerSettings
from engine.store.run_store import RunStore
from engine.task import load_task

# Sleeps a time drawn from (REPRO_DELAY_SEED, program text), then runs the real evaluator.
SLOW_EVALUATOR = """import hashlib, os, random, runpy, sys, time
text = open(sys.argv[1], encoding="utf-8").read()
key = os.environ["REPRO_DELAY_SEED"] + hashlib.sha256(text.encode()).hexdigest()
time.sleep(random.Random(key).uniform(0.0, float(os.environ["REPRO_MAX_DELAY"])))
sys.argv = [{real!r}] + sys.argv[1:]
runpy.run_path({real!r}, run_name="__main__")
"""


def _task(tmp_path: Path) -> Path:
    src = REPO / "domains" / "circle_packing"
    task_dir = tmp_path / "task"
    task_dir.mkdir()
    for name in ("task.yaml", "task.md", "initial.py"):
        shutil.copy(src / name, task_dir / name)
    real = str(src / "evaluate.py")
    (task_dir / "evaluate.py").write_text(SLOW_EVALUATOR.format(real=real), encoding="utf-8")
    return task_dir


def _run(
    task_dir: Path, run_dir: Path, workers: int, steps: int, seed: int, resume: bool = False
) -> list[tuple]:
    task = load_task(task_dir)
    if resume:
        store = RunStore.open(run_dir)
    else:
        store = RunStore.create(run_dir)
        store.set_meta("task", task.name)
    engine = Engine(
        store=store,
        task=task,
        run_dir=run_dir,
        agents=build_offline_agents(seed),
        sampler=make_sampler(SamplerSettings(), store, task.maximize, seed),
        engineer=Engineer(task, Limits()),
        steps_total=steps,
        workers=workers,
        use_analyzer=False,
    )
    summary = asyncio.run(engine.run())
    assert summary.steps_done == steps
    reader = RunStore.open(run_dir, readonly=True)
    nodes = sorted(reader.nodes(), key=lambda n: n.step)
    finish_order = [n.step for n in sorted(nodes, key=lambda n: n.finished_at or 0.0)]
    rows = [
        (
            n.step,
            n.parent_ids,
            n.context_ids,
            n.code,
            n.status,
            None if n.score is None else round(n.score, 9),
            n.metadata.get("elite_ids"),
            n.metadata.get("operator"),
        )
        for n in nodes
    ]
    return [tuple(finish_order)] + rows


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_same_seed_same_run_whatever_the_timing(tmp_path: Path, monkeypatch) -> None:
    task_dir = _task(tmp_path)
    monkeypatch.setenv("REPRO_MAX_DELAY", "0.6")
    runs = []
    for delay_seed in ("a", "b"):
        monkeypatch.setenv("REPRO_DELAY_SEED", delay_seed)
        runs.append(_run(task_dir, tmp_path / f"run-{delay_seed}", workers=3, steps=20, seed=4))
    (order_a, *nodes_a), (order_b, *nodes_b) = runs
    reader = RunStore.open(tmp_path / "run-a", readonly=True)
    ids_by_step = {n.step: n.id for n in reader.nodes()}
    score_by_step = {n.step: n.score for n in reader.nodes()}  # unrounded: 1e-15 apart is apart
    reader.close()
    assert order_a != order_b, "the delays did not change the finishing order: no test"
    assert [n[:3] for n in nodes_a] == [n[:3] for n in nodes_b]  # step, parent, context
    assert nodes_a == nodes_b
    assert len({n[1][0] for n in nodes_a[1:]}) >= 2  # not a single lineage
    # The elite handed to step s: the ELITE_SIZE fittest done nodes of steps <= max(0, s - 3).
    for step, *_, elite, _ in nodes_a[1:]:
        visible = [n for n in nodes_a if n[0] <= max(0, step - 3) and n[4] == "done"]
        best = sorted(visible, key=lambda n: (-score_by_step[n[0]], n[0]))[:ELITE_SIZE]
        assert [ids_by_step[n[0]] for n in best] == elite
    # The pipeline hands the elite to the Researcher: its model move fits it (after the
    # start-up steps, which move every bounded float at once).
    assert {"model", "startup"} <= {n[-1] for n in nodes_a}


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_resumed_run_continues_as_if_never_stopped(tmp_path: Path, monkeypatch) -> None:
    """Stopped after 5 of 12 steps and resumed, the run matches an uninterrupted one.

    At the stop steps 4 and 5 have finished; an uninterrupted run's step 6 (3 workers) sees
    only steps <= 3, so the restarted sampler must hold 4 and 5 back (``hold_back``) although
    it loaded them from the database.
    """
    task_dir = _task(tmp_path)
    monkeypatch.setenv("REPRO_MAX_DELAY", "0.2")
    monkeypatch.setenv("REPRO_DELAY_SEED", "a")
    whole = _run(task_dir, tmp_path / "whole", workers=3, steps=12, seed=4)
    _run(task_dir, tmp_path / "split", workers=3, steps=5, seed=4)
    resumed = _run(task_dir, tmp_path / "split", workers=3, steps=12, seed=4, resume=True)
    assert [n[:3] for n in resumed[1:]] == [n[:3] for n in whole[1:]]
    assert resumed[1:] == whole[1:]
