"""The round pipeline through ``Engine``: commit order, stages, judge/analyzer failures, root."""

from __future__ import annotations

import asyncio
import textwrap
import time
from pathlib import Path

import pytest
from conftest import cli, make_toy_task

from engine.agents.base import Report
from engine.agents.setup import build_offline_agents
from engine.execution.engineer import Engineer, Limits
from engine.loop.engine import Engine, EngineError
from engine.samplers import make_sampler
from engine.samplers.settings import SamplerSettings
from engine.store.records import DONE, FAILED, PENDING, PRUNED
from engine.store.run_store import RunStore
from engine.task import load_task

# Appends "<stage> <X>" to $STAGE_LOG for every run, so tests can count evaluations.
STAGED_EVALUATOR = textwrap.dedent(
    """
    import json, os, runpy, sys, time
    stage, program = sys.argv[1], sys.argv[2]
    ns = runpy.run_path(program)
    x = float(ns["X"])
    if "STAGE_LOG" in os.environ:  # (a sandboxed CLI run may write only its work dir)
        with open(os.environ["STAGE_LOG"], "a") as f:
            f.write(f"{stage} {x}\\n")
    time.sleep(float(os.environ.get("STAGE_DELAY_" + stage, "0")))
    if stage == "check":
        error = os.environ.get("CHECK_ERROR", "X is far too large")
        out = {"valid": x < 100, "error": error, "metrics": {"checked": 1}}
    elif stage == "explore":
        out = {"score": -abs(x - 3.0), "metrics": {"x": x}}
    else:
        out = {"score": -abs(x - 3.0) * 2, "metrics": {"verified": 1}}
    with open(os.environ["ASI_EVOLVE_RESULTS"], "w") as f:
        json.dump(out, f)
    """
)


def make_staged_task(root: Path, top_k: int = 2) -> Path:
    task = root / "staged"
    task.mkdir(parents=True)
    (task / "task.yaml").write_text(
        textwrap.dedent(
            f"""
            name: staged
            description: task.md
            initial_program: initial.py
            evaluator: evaluate.py
            direction: maximize
            stages:
              - name: check
                command: "{{python}} {{evaluator}} check {{program}}"
                timeout: 20
              - name: explore
                command: "{{python}} {{evaluator}} explore {{program}}"
                timeout: 20
              - name: verify
                command: "{{python}} {{evaluator}} verify {{program}}"
                timeout: 20
                promote: {{top_k: {top_k}}}
            score_stage: explore
            """
        )
    )
    (task / "task.md").write_text("# Staged toy\nSet X near 3.\n")
    (task / "initial.py").write_text("X = 1.0\n")
    (task / "evaluate.py").write_text(STAGED_EVALUATOR)
    return task


def _engine(task_dir: Path, run_dir: Path, steps: int, workers: int = 1, agents=None) -> Engine:
    task = load_task(task_dir)
    store = RunStore.open(run_dir) if (run_dir / "evolve.db").exists() else RunStore.create(run_dir)
    store.set_meta("task", task.name)
    return Engine(
        store=store,
        task=task,
        run_dir=run_dir,
        agents=agents or build_offline_agents(0),
        sampler=make_sampler(SamplerSettings(), store, True, 0),
        engineer=Engineer(task, Limits()),
        steps_total=steps,
        workers=workers,
    )


def _log_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_stages_run_in_order_and_gate(tmp_path: Path, monkeypatch) -> None:
    log = tmp_path / "stages.log"
    monkeypatch.setenv("STAGE_LOG", str(log))
    engine = _engine(make_staged_task(tmp_path / "tasks", top_k=1), tmp_path / "run", steps=6)
    asyncio.run(engine.run())
    nodes = list(engine.store.nodes())
    root = nodes[0]
    assert root.status == DONE and root.score == pytest.approx(-2.0)
    stages = root.results["stages"]
    assert list(stages) == ["check", "explore", "verify"]
    assert stages["verify"]["ok"] and stages["verify"]["score"] == pytest.approx(-4.0)
    assert root.results["metrics"] == {"x": 1.0}  # the score stage's metrics on top
    lines = _log_lines(log)
    assert lines[:3] == ["check 1.0", "explore 1.0", "verify 1.0"]
    # A node that does not beat the best so far skips verify, with the reason kept.
    skipped = [n for n in nodes if "skipped" in n.results.get("stages", {}).get("verify", {})]
    ran = [n for n in nodes if n.results.get("stages", {}).get("verify", {}).get("ok")]
    assert len(ran) + len(skipped) == sum(1 for n in nodes if n.status == DONE)
    assert sum(1 for line in lines if line.startswith("verify")) == len(ran)
    for node in skipped:
        assert "not in the top 1" in node.results["stages"]["verify"]["skipped"]


def test_an_evaluator_naming_its_stage_gets_the_name_once(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CHECK_ERROR", "check: X is far too large")  # as linear_attention does
    task = make_staged_task(tmp_path / "tasks")
    (task / "initial.py").write_text("X = 1000.0\n")
    engine = _engine(task, tmp_path / "run", steps=1)
    with pytest.raises(EngineError, match="check: invalid: X is far too large"):
        asyncio.run(engine.run())
    assert next(engine.store.nodes()).error == "check: invalid: X is far too large"


def test_failing_stage_stops_later_stages(tmp_path: Path, monkeypatch) -> None:
    log = tmp_path / "stages.log"
    monkeypatch.setenv("STAGE_LOG", str(log))
    task = make_staged_task(tmp_path / "tasks")
    (task / "initial.py").write_text("X = 1000.0\n")
    engine = _engine(task, tmp_path / "run", steps=1)
    with pytest.raises(EngineError, match="check: invalid: X is far too large"):
        asyncio.run(engine.run())
    root = next(engine.store.nodes())
    assert root.status == FAILED
    assert root.results["stages"]["check"]["ok"] is False
    assert _log_lines(log) == ["check 1000.0"]


@pytest.mark.slow
def test_failing_root_is_resumable_after_a_fix(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("STAGE_LOG", raising=False)
    task = make_staged_task(tmp_path / "tasks")
    (task / "initial.py").write_text("X = 1000.0\n")
    run = tmp_path / "run"
    first = cli("run", str(task), "--steps", "2", "--run-dir", str(run), "--workers", "1")
    assert first.returncode == 1, first.stderr
    assert "initial program failed" in first.stderr
    (task / "initial.py").write_text("X = 2.0\n")
    second = cli("run", str(task), "--steps", "2", "--run-dir", str(run), "--workers", "1")
    assert second.returncode == 0, second.stderr
    store = RunStore.open(run)
    root = next(store.nodes("step = 0"))
    assert root.status == DONE and root.code == "X = 2.0\n"
    assert store.steps_done() == 2


class _StopDuringAnalysis:
    """An analyzer that stops the engine the first time it is asked (a crash mid-report)."""

    label = "stopper"

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self.calls = 0

    async def analyze(self, inp) -> Report:
        self.calls += 1
        if inp.node.step == 1 and self.calls < 10 and self.engine is not None:
            self.engine.request_stop("test stop during analysis")
            await asyncio.sleep(5)
        return Report(analysis=f"report for step {inp.node.step}")


def test_evaluation_is_committed_before_analysis(tmp_path: Path, monkeypatch) -> None:
    log = tmp_path / "stages.log"
    monkeypatch.setenv("STAGE_LOG", str(log))
    task = make_staged_task(tmp_path / "tasks")
    run = tmp_path / "run"
    agents = build_offline_agents(0)
    stopper = _StopDuringAnalysis()
    agents.analyzer = stopper
    engine = _engine(task, run, steps=3, agents=agents)
    stopper.engine = engine
    summary = asyncio.run(engine.run())
    assert summary.state == "stopped"
    node = next(engine.store.nodes("step = 1"))
    assert node.status in (DONE, FAILED) and node.metadata.get("post_pending") == ["analysis"]
    runs_before = len(_log_lines(log))
    engine.store.close()

    stopper.calls = 100  # the second engine's analyzer answers normally
    agents = build_offline_agents(0)
    agents.analyzer = stopper
    resumed = _engine(task, run, steps=3, agents=agents)
    asyncio.run(resumed.run())
    node = resumed.store.get_node(node.id)
    assert node.analysis == "report for step 1"
    assert "post_pending" not in node.metadata
    explored = [line for line in _log_lines(log)[runs_before:] if line.startswith("explore")]
    assert len(explored) == 2  # steps 2 and 3 only: step 1 was never evaluated again
    assert resumed.store.steps_done() == 3


class _BrokenJudge:
    async def judge(self, inp) -> float:
        raise RuntimeError("judge endpoint said no")


class _BrokenAnalyzer:
    label = "broken"

    async def analyze(self, inp) -> Report:
        raise ValueError("analyzer exploded")


def test_judge_and_analyzer_failures_keep_the_evaluation(toy_task: Path, tmp_path: Path) -> None:
    agents = build_offline_agents(0)
    agents.analyzer = _BrokenAnalyzer()
    engine = _engine(toy_task, tmp_path / "run", steps=2, agents=agents)
    asyncio.run(engine.run())
    for node in engine.store.nodes():
        assert node.status == DONE and node.score is not None
        assert node.analysis.startswith("(analyzer failed: ValueError: analyzer exploded")

    agents = build_offline_agents(0)
    agents.judge, agents.judge_ratio = _BrokenJudge(), 0.5
    with pytest.raises(EngineError, match="judge: RuntimeError"):
        asyncio.run(_engine(toy_task, tmp_path / "run2", steps=2, agents=agents).run())
    root = next(RunStore.open(tmp_path / "run2").nodes("step = 0"))
    assert root.status == FAILED and "eval_score" in root.results  # the evaluation is kept


def test_stop_works_while_the_root_evaluates(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("STAGE_LOG", str(tmp_path / "stages.log"))
    monkeypatch.setenv("STAGE_DELAY_explore", "30")
    run = tmp_path / "run"
    engine = _engine(make_staged_task(tmp_path / "tasks"), run, steps=2)
    outside = RunStore.open(run)

    async def main() -> float:
        job = asyncio.create_task(engine.run())
        while outside.get_meta("engine") is None or not engine.in_flight(1):
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        outside.add_command("stop")
        t0 = time.monotonic()
        await job
        return time.monotonic() - t0

    elapsed = asyncio.run(main())
    assert elapsed < 5
    root = next(outside.nodes("step = 0"))
    assert root.status == PENDING  # re-evaluated on resume, never half-done


@pytest.mark.slow
def test_prune_in_flight_through_engine(toy_task: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TOY_DELAY", "0.5")
    run = tmp_path / "run"
    engine = _engine(toy_task, run, steps=4, workers=1)
    outside = RunStore.open(run)

    async def main() -> int:
        job = asyncio.create_task(engine.run())
        while True:
            running = list(outside.nodes("step >= 1 AND status = 'running'"))
            if running:
                break
            await asyncio.sleep(0.02)
        outside.add_command("prune", str(running[0].id))
        await job
        return running[0].id

    victim = asyncio.run(main())
    node = outside.get_node(victim)
    assert node.status == PRUNED and node.error == "pruned while in flight"
    assert outside.steps_done() == 4


def test_toy_task_without_stages_keeps_flat_results(tmp_path: Path) -> None:
    task = make_toy_task(tmp_path / "tasks", name="flat")
    engine = _engine(task, tmp_path / "run", steps=1)
    asyncio.run(engine.run())
    root = next(engine.store.nodes("step = 0"))
    assert "stages" not in root.results and root.results["metrics"]["x"] == 1.0


def test_beat_baseline_gate_skips_the_baseline_itself(tmp_path: Path, monkeypatch) -> None:
    log = tmp_path / "stages.log"
    monkeypatch.setenv("STAGE_LOG", str(log))
    task = make_staged_task(tmp_path / "tasks")
    spec = (task / "task.yaml").read_text().replace("{top_k: 2}", "{beat_baseline: true}")
    (task / "task.yaml").write_text(spec)
    engine = _engine(task, tmp_path / "run", steps=4)
    asyncio.run(engine.run())
    nodes = list(engine.store.nodes())
    root = nodes[0]
    assert root.results["stages"]["verify"] == {"skipped": "the initial program is the baseline"}
    for node in nodes[1:]:
        verify = node.results.get("stages", {}).get("verify", {})
        if node.status == DONE and node.score <= root.score:
            assert verify["skipped"].startswith("does not beat the initial program")
        if verify.get("ok"):
            assert node.score > root.score
    verified = sum(1 for line in _log_lines(log) if line.startswith("verify"))
    assert verified == sum(
        1 for n in nodes if n.results.get("stages", {}).get("verify", {}).get("ok")
    )
