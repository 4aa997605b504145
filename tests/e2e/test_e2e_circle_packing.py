"""End to end: the README's main job, offline, climbs well above the initial program."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import cli

from engine.store.run_store import RunStore

pytestmark = pytest.mark.slow

INITIAL_SCORE = 0.9598


@pytest.mark.slow
def test_offline_circle_packing_climbs(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "circle_packing"
    result = cli(
        "run",
        "circle_packing",
        "--steps",
        "60",
        "--workers",
        "2",
        "--seed",
        "0",
        "--run-dir",
        str(run_dir),
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "OFFLINE" in result.stdout  # the banner says which researcher is at work

    info = json.loads(cli("status", str(run_dir), "--json").stdout)
    assert info["steps_done"] == 60 and info["nodes"] == 61
    assert info["llm_mode"] == "offline"
    assert info["best_score"] >= 1.5, info

    store = RunStore.open(run_dir, readonly=True)
    root = next(store.nodes("step = 0"))
    assert abs(root.score - INITIAL_SCORE) < 1e-4
    children = list(store.nodes("step >= 1"))
    # Every candidate says what it changed and what came of it.
    assert all(n.motivation for n in children)
    assert all(n.analysis for n in children if n.status == "done")
    best = store.best_node()
    assert best.results["valid"] is True
    assert best.results["metrics"]["sum_radii"] == best.score

    out = tmp_path / "best.py"
    assert cli("best", str(run_dir), "-o", str(out)).returncode == 0
    assert "def construct_packing" in out.read_text()
