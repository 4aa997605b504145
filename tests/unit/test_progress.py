"""Progress numbers: speed, ETA, candidates since the last improvement, stall."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import cli

from engine.store.progress import format_eta, idle_closed, idle_opened, measure


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


def test_paused_and_down_time_do_not_slow_the_rate() -> None:
    """One finish per 2 s of work; a 60 s pause and an overnight stop in between: the
    rate stays 30/min and the ETA 2 min, not the 3 -> 18 minutes a user saw."""
    rows = [(0, 0.0, 1.0, "done")]
    t, idle = 0.0, []
    for s in range(1, 41):
        if s == 20:  # paused for a minute
            idle = idle_closed(idle_opened(idle, t + 1.0), t + 61.0)
            t += 60.0
        if s == 30:  # stopped overnight, resumed
            idle = idle_closed(idle_opened(idle, t + 0.5), t + 0.5 + 8 * 3600)
            t += 8 * 3600
        t += 2.0
        rows.append((s, t, 2.0, "done"))
    p = measure(rows, steps_total=100, maximize=True, idle=idle)
    assert p.per_minute == pytest.approx(30.0)
    assert p.eta_seconds == pytest.approx(120.0)
    # Not working (paused or no engine): a rate, but no ETA.
    assert measure(rows, 100, True, idle, working=False).eta_seconds is None
    # Without the record (a run from before) the idle time counts, as it used to.
    assert measure(rows, 100, maximize=True).per_minute < 1.0


def test_idle_intervals_open_once_and_close_once() -> None:
    idle = idle_opened(idle_opened([], 10.0), 20.0)  # a second pause while paused
    assert idle == [[10.0, None]]
    assert idle_closed(idle_closed(idle, 30.0), 40.0) == [[10.0, 30.0]]
    assert idle_opened("garbage", 5.0) == [[5.0, None]]  # a damaged meta value


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
