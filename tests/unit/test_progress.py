"""Progress numbers: speed, ETA, candidates since the last improvement, stall."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import cli

from engine.store.progress import format_eta, measure


def test_speed_eta_and_stall() -> None:
    # root at t=0 scores 1; steps 1..40 finish one per 2 s; step 5 sets the best (3.0).
    rows = [(0, 0.0, 1.0, "done")]
    rows += [(s, 2.0 * s, 3.0 if s == 5 else 2.0, "done") for s in range(1, 41)]
    p = measure(rows, steps_total=100, maximize=True)
    assert p.per_minute == pytest.approx(30.0)
    assert p.eta_seconds == pytest.approx(60 * 2.0)  # 60 left at 30/min
    assert p.best_step == 5 and p.since_improvement == 35 and p.stalled
    fresh = measure(rows[:8], steps_total=100, maximize=True)
    assert fresh.since_improvement == 2 and not fresh.stalled
    assert measure(rows, 100, maximize=False).best_step == 0  # minimize: the root's 1.0
    assert format_eta(None) == "-" and format_eta(3 * 3600 + 120) == "3 h 02 min"
    assert p.pruned == 0
    pruned = measure(rows + [(41, 90.0, None, "pruned")], steps_total=100, maximize=True)
    assert pruned.pruned == 1 and pruned.since_improvement == 36


@pytest.mark.slow
def test_status_shows_progress(toy_task: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert cli("run", str(toy_task), "--run-dir", str(run), "--steps", "4").returncode == 0
    text = cli("status", str(run)).stdout
    assert "progress:" in text and "since the last improvement" in text
    info = json.loads(cli("status", str(run), "--json").stdout)
    assert set(info["progress"]) == {
        "per_minute",
        "eta_seconds",
        "since_improvement",
        "best_step",
        "stalled",
        "pruned",
    }
    assert cli("--version").stdout.startswith("asi-evolve ")
