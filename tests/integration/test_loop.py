"""The asyncio loop: budget, commands, and crash-safe resume."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, cli

from engine.agents.setup import build_offline_agents
from engine.execution.engineer import Engineer, Limits
from engine.loop.engine import Engine
from engine.samplers import make_sampler
from engine.samplers.settings import SamplerSettings
from engine.store.records import DONE, PRUNED
from engine.store.run_store import RunStore, StoreError
from engine.task import load_task


def _engine(task_dir: Path, run_dir: Path, steps: int, workers: int = 2) -> Engine:
    task = load_task(task_dir)
    store = RunStore.create(run_dir)
    store.set_meta("task", task.name)
    sampler = make_sampler(SamplerSettings(), store, True, 0)
    return Engine(
        store=store,
        task=task,
        run_dir=run_dir,
        agents=build_offline_agents(0),
        sampler=sampler,
        engineer=Engineer(task, Limits()),
        steps_total=steps,
        workers=workers,
    )


def test_budget_is_exact_and_steps_unique(toy_task: Path, tmp_path: Path) -> None:
    engine = _engine(toy_task, tmp_path / "run", steps=9, workers=3)
    summary = asyncio.run(engine.run())
    nodes = list(engine.store.nodes())
    assert summary.steps_done == 9
    assert sorted(n.step for n in nodes) == list(range(10))
    assert all(n.status in ("done", "failed") for n in nodes)
    for node in nodes[1:]:
        assert node.parent_ids and node.motivation and node.analysis
    assert summary.best_score is not None and summary.best_score >= nodes[0].score


@pytest.mark.slow
def test_commands_pause_prune_resume_stop(toy_task: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TOY_DELAY", "0.3")
    run_dir = tmp_path / "run"
    engine = _engine(toy_task, run_dir, steps=500, workers=2)
    outside = RunStore.open(run_dir)  # another connection, like the TUI's

    async def steer() -> dict:
        seen: dict = {}
        while engine.store.steps_done() < 2:
            await asyncio.sleep(0.05)
        cmd = outside.add_command("pause")
        t0 = time.time()
        while outside.get_command(cmd)["status"] == "new":
            await asyncio.sleep(0.05)
        seen["pause_latency"] = time.time() - t0
        await asyncio.sleep(1.0)  # running candidates finish
        frozen = outside.status_counts()
        await asyncio.sleep(1.0)
        seen["frozen"] = (frozen, outside.status_counts())
        seen["state"] = outside.get_meta("state")
        victim = next(n for n in outside.nodes("step >= 1 AND status = 'done'"))
        outside.add_command("prune", str(victim.id))
        outside.add_command("prune", "99999")
        outside.add_command("resume")
        await asyncio.sleep(2.0)
        seen["victim"] = victim.id
        outside.add_command("stop")
        return seen

    async def both():
        return await asyncio.gather(engine.run(), steer())

    summary, seen = asyncio.run(both())
    assert seen["pause_latency"] < 1.0
    before, after = seen["frozen"]
    assert before == after, "no candidate may start or finish while paused and idle"
    assert before["running"] == 0 and before["pending"] == 0
    assert seen["state"] == "paused"
    assert summary.state == "stopped"
    victim = outside.get_node(seen["victim"])
    assert victim.status == PRUNED
    children = list(
        outside.nodes("parent_id = ? AND created_at > ?", [victim.id, victim.updated_at])
    )
    assert children == [], "a pruned node is never chosen as a parent"
    rejected = [c for c in outside.db.query("SELECT * FROM commands WHERE status = 'rejected'")]
    assert len(rejected) == 1 and "no node #99999" in rejected[0]["result"]
    # Stop interrupted in-flight candidates: they are pending and re-run on resume.
    assert all(n.status != "running" for n in outside.nodes())


CRASH_SCRIPT = """
import sys
from engine.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_resume_after_kill_neither_duplicates_nor_skips(toy_task: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    env = {**os.environ, "TOY_DELAY": "0.4"}
    env.pop("OPENAI_BASE_URL", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CRASH_SCRIPT,
            "run",
            str(toy_task),
            "--steps",
            "12",
            "--workers",
            "3",
            "--run-dir",
            str(run_dir),
            "--quiet",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        time.sleep(0.1)
        if (run_dir / "evolve.db").exists():
            try:
                store = RunStore.open(run_dir, readonly=True)
            except StoreError:  # caught between file creation and the schema commit
                continue
            try:
                counts = store.status_counts()
            finally:
                store.close()
            if counts["done"] >= 4 and counts["running"] >= 1:
                break
    os.killpg(proc.pid, signal.SIGKILL)  # the engine and its evaluators die mid-flight
    proc.wait()

    store = RunStore.open(run_dir, readonly=True)
    interrupted = {n.id: n.step for n in store.interrupted_nodes()}
    finished_before = {n.id: (n.step, n.score) for n in store.nodes("status = 'done'")}
    store.close()
    assert interrupted, "the kill should have caught candidates in flight"

    result = cli("run", str(toy_task), "--run-dir", str(run_dir), "--quiet", env={"TOY_DELAY": "0"})
    assert result.returncode == 0, result.stderr
    assert "resuming" in result.stdout
    store = RunStore.open(run_dir, readonly=True)
    nodes = list(store.nodes())
    steps = [n.step for n in nodes]
    assert sorted(steps) == list(range(13)), steps
    for node_id, step in interrupted.items():
        node = store.get_node(node_id)
        assert node.step == step and node.status in ("done", "failed")
    for node_id, (step, score) in finished_before.items():
        node = store.get_node(node_id)
        assert node.status == DONE and node.step == step and node.score == score
    events = [e["kind"] for e in store.events()]
    assert "resume" in events
    info = json.loads(cli("status", str(run_dir), "--json").stdout)
    assert info["steps_done"] == 12 and info["running"] == [] and info["pending"] == 0
    assert info["running_count"] == 0
