"""The reported best of a staged run is the best *verified* node, and what runs now is
visible: ``status`` (text and JSON), ``best -o``, the run's own lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, cli
from test_pipeline import make_staged_task

from engine.store.records import DONE, Node
from engine.store.run_store import RunStore
from engine.store.standing import META_KEY, StageNames


def _stages(explore: float, verify: dict | None) -> dict:
    out = {"check": {"ok": True, "score": None}, "explore": {"ok": True, "score": explore}}
    if verify is not None:
        out["verify"] = verify
    return {"stages": out}


def _rl_like_run(run_dir: Path) -> None:
    """rl_algorithm as a user saw it: #2 won explore (0.615, one seed) and lost its own
    3-seed verify (0.5875), below the initial program's verify (0.6117)."""
    store = RunStore.create(run_dir)
    store.set_meta("task", "rl_like")
    store.set_meta("direction", "maximize")
    store.set_meta("steps_total", 3)
    store.set_meta(META_KEY, StageNames("explore", "verify").to_meta())
    for step, score, verify, code in [
        (0, 0.600, {"ok": True, "score": 0.6117}, "initial = 1\n"),
        (1, 0.615, {"ok": True, "score": 0.5875}, "lucky = 1\n"),
        (2, 0.610, {"skipped": "not in the top 2 (2 nodes score better)"}, "other = 1\n"),
    ]:
        node = Node(step=step, code=code, score=score, status=DONE, results=_stages(score, verify))
        node.finished_at = time.time()
        store.insert_node(node)
    store.close()


@pytest.mark.slow
def test_status_and_best_report_the_verified_best_and_flag_the_lucky_node(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _rl_like_run(run)
    info = json.loads(cli("status", str(run), "--json").stdout)
    assert info["best_node"] == 1 and info["best_score"] == pytest.approx(0.6117)
    assert info["best_stage"] == "verify" and info["best_verified"] is True
    assert info["best_explore"] == pytest.approx(0.600)
    assert info["baseline_verify"] == pytest.approx(0.6117)
    assert info["below_baseline"] == [{"node": 2, "verify": pytest.approx(0.5875)}]
    assert info["running"] == [] and info["progress"]["eta_seconds"] is None
    text = cli("status", str(run)).stdout
    assert "best:     0.6117 (#1, verify; explore 0.6)" in text
    assert "flagged:  verified below the baseline's verify 0.6117: #2 0.5875" in text
    assert "None" not in text
    done = cli("best", str(run), "-o", str(tmp_path / "best.py"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "best.py").read_text() == "initial = 1\n"
    assert "wrote node #1 (verify score 0.6117)" in done.stdout


def test_status_of_a_run_whose_first_candidate_runs_has_no_raw_none(tmp_path: Path) -> None:
    run = tmp_path / "run"
    store = RunStore.create(run)
    store.set_meta("task", "fresh")
    store.insert_node(Node(step=0, code="x = 1\n", status="running"))
    store.close()
    out = cli("status", str(run))
    assert out.returncode == 0, out.stderr
    assert "None" not in out.stdout and "best:     - (no scored node yet)" in out.stdout


@pytest.mark.slow
def test_a_staged_run_shows_its_stages_while_they_run(tmp_path: Path) -> None:
    """A live engine: ``status --json`` lists the running candidate with its stage, time
    and limit; the console has a line when a stage starts and ends; the end says which
    stage the reported best comes from."""
    task = make_staged_task(tmp_path / "tasks", top_k=1)
    run = tmp_path / "run"
    env = {**os.environ, "STAGE_DELAY_explore": "1.5"}
    env.pop("OPENAI_BASE_URL", None)
    argv = [sys.executable, "-m", "engine.cli", "run", str(task), "--run-dir", str(run)]
    proc = subprocess.Popen(
        [*argv, "--steps", "3", "--workers", "1", "--no-cognition"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen: list[dict] = []
    try:
        deadline = time.time() + 60
        while proc.poll() is None and time.time() < deadline:
            if (run / "evolve.db").exists():
                info = json.loads(cli("status", str(run), "--json").stdout or "{}")
                seen += [r for r in info.get("running", []) if r["stage"] == "explore"]
            time.sleep(0.3)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert seen, "status never listed a candidate in its explore stage"
    assert all(r["timeout"] == 20 and 0 <= r["elapsed"] < 20 for r in seen)
    assert "#1     explore started (limit 0:20)" in out
    assert "#1     explore passed in 0:01, score -2" in out
    assert "verify passed" in out or "verify skipped" in out
    last = [line for line in out.splitlines() if line.startswith("run finished")][0]
    assert "verify" in last  # the root is verified (top 1), so the best names its stage
    store = RunStore.open(run, readonly=True)
    try:
        assert StageNames.from_meta(store.get_meta(META_KEY)) == StageNames("explore", "verify")
        assert all("running_stage" not in n.metadata for n in store.nodes())
    finally:
        store.close()
