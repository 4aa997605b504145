"""The command-line contract: bad input is one line on stderr, exit 2, nothing written."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from conftest import cli, make_toy_task

from engine.store.lock import RunLock


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _assert_usage_error(result, fragment: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert fragment in lines[0]


def test_unknown_task_writes_nothing(tmp_path: Path) -> None:
    result = cli("run", "no_such_task", "--run-dir", str(tmp_path / "r"), cwd=tmp_path)
    _assert_usage_error(result, "unknown task")
    assert not (tmp_path / "r").exists()
    assert not (tmp_path / "runs").exists()


def test_missing_evaluator(tmp_path: Path) -> None:
    task = make_toy_task(tmp_path)
    (task / "evaluate.py").unlink()
    result = cli("run", str(task), "--run-dir", str(tmp_path / "r"))
    _assert_usage_error(result, "evaluator file")
    assert not (tmp_path / "r").exists()


def test_malformed_task_yaml(tmp_path: Path) -> None:
    task = make_toy_task(tmp_path)
    (task / "task.yaml").write_text("name: [unclosed\n")
    result = cli("run", str(task), "--run-dir", str(tmp_path / "r"))
    _assert_usage_error(result, "malformed YAML")
    assert not (tmp_path / "r").exists()


def test_malformed_and_unknown_config(tmp_path: Path) -> None:
    task = make_toy_task(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: : :\n")
    _assert_usage_error(
        cli("run", str(task), "--run-dir", str(tmp_path / "r"), "--config", str(bad)),
        "malformed YAML",
    )
    bad.write_text("stpes: 3\n")
    _assert_usage_error(
        cli("run", str(task), "--run-dir", str(tmp_path / "r"), "--config", str(bad)),
        "unknown setting 'stpes'",
    )
    bad.write_text("workers: many\n")
    _assert_usage_error(
        cli("run", str(task), "--run-dir", str(tmp_path / "r"), "--config", str(bad)),
        "workers must be int",
    )
    assert not (tmp_path / "r").exists()


def test_negative_steps_and_workers(tmp_path: Path) -> None:
    task = make_toy_task(tmp_path)
    _assert_usage_error(
        cli("run", str(task), "--steps", "-1", "--run-dir", str(tmp_path / "r")),
        "--steps must be >= 0",
    )
    _assert_usage_error(
        cli("run", str(task), "--workers", "0", "--run-dir", str(tmp_path / "r")),
        "--workers must be >= 1",
    )
    assert not (tmp_path / "r").exists()


def test_bad_flag_is_one_line(tmp_path: Path) -> None:
    _assert_usage_error(cli("run", "circle_packing", "--sampler", "bogus"), "invalid choice")
    _assert_usage_error(cli("status"), "required")


def test_non_run_directory_is_refused(tmp_path: Path) -> None:
    task = make_toy_task(tmp_path)
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "precious.txt").write_text("keep me")
    _assert_usage_error(cli("run", str(task), "--run-dir", str(occupied)), "not a run directory")
    assert [p.name for p in occupied.iterdir()] == ["precious.txt"]
    _assert_usage_error(cli("status", str(occupied)), "not a run directory")
    _assert_usage_error(cli("best", str(occupied)), "not a run directory")


@pytest.mark.slow
def test_full_cycle_resume_and_other_task_refused(tmp_path: Path) -> None:
    task = make_toy_task(tmp_path)
    run_dir = tmp_path / "run"
    first = cli("run", str(task), "--steps", "4", "--run-dir", str(run_dir), "--seed", "1")
    assert first.returncode == 0, first.stderr
    assert "OFFLINE" in first.stdout
    assert "step    1" in first.stdout or "step 1" in first.stdout.replace("  ", " ")

    status = cli("status", str(run_dir), "--json")
    assert status.returncode == 0, status.stderr
    info = json.loads(status.stdout)
    for key in ("nodes", "done", "failed", "best_score", "best_node", "steps_total"):
        assert key in info
    assert info["nodes"] == 5 and info["steps_total"] == 4 and info["steps_done"] == 4
    assert info["engine"] == "not running"

    # Another task on this run dir is refused and changes nothing.
    other = make_toy_task(tmp_path, name="other")
    before = _digest(run_dir / "evolve.db")
    _assert_usage_error(cli("run", str(other), "--run-dir", str(run_dir)), "holds a run of task")
    assert _digest(run_dir / "evolve.db") == before

    # Resuming with a larger budget finishes exactly that budget.
    again = cli("run", str(task), "--steps", "7", "--run-dir", str(run_dir))
    assert again.returncode == 0, again.stderr
    assert "resuming" in again.stdout
    info = json.loads(cli("status", str(run_dir), "--json").stdout)
    assert info["nodes"] == 8 and info["steps_done"] == 7

    out = tmp_path / "best.py"
    best = cli("best", str(run_dir), "-o", str(out))
    assert best.returncode == 0, best.stderr
    assert "X =" in out.read_text()
    assert "X =" in cli("best", str(run_dir)).stdout


@pytest.mark.slow
def test_second_engine_is_refused(tmp_path: Path) -> None:
    task = make_toy_task(tmp_path)
    run_dir = tmp_path / "run"
    assert cli("run", str(task), "--steps", "1", "--run-dir", str(run_dir)).returncode == 0
    before = _digest(run_dir / "evolve.db")
    with RunLock(run_dir):
        result = cli("run", str(task), "--steps", "3", "--run-dir", str(run_dir))
        _assert_usage_error(result, "another engine")
        status = json.loads(cli("status", str(run_dir), "--json").stdout)
        assert status["engine"] != "not running"
    assert _digest(run_dir / "evolve.db") == before


def test_tasks_lists_circle_packing() -> None:
    result = cli("tasks")
    assert result.returncode == 0
    assert "circle_packing" in result.stdout


@pytest.mark.slow
def test_resume_with_fewer_steps_than_done_is_refused(tmp_path: Path) -> None:
    """--steps is the run's total: one below the steps done would silently do nothing."""
    task = make_toy_task(tmp_path)
    run_dir = tmp_path / "run"
    first = cli("run", str(task), "--steps", "3", "--run-dir", str(run_dir), "--no-cognition")
    assert first.returncode == 0, first.stderr
    before = sorted((p.name, _digest(p)) for p in run_dir.iterdir() if p.is_file())
    fewer = cli("run", str(task), "--steps", "1", "--run-dir", str(run_dir))
    _assert_usage_error(fewer, "already has 3/3 steps done; --steps 1 asks for no more")
    assert "nothing to run" in fewer.stderr and "--steps 4 or more" in fewer.stderr
    assert fewer.stdout == ""
    assert sorted((p.name, _digest(p)) for p in run_dir.iterdir() if p.is_file()) == before
    same = cli("run", str(task), "--steps", "3", "--run-dir", str(run_dir))  # complete: fine
    assert same.returncode == 0, same.stderr
    assert "run finished: 3/3 steps" in same.stdout


def test_ray_auto_without_a_cluster_is_refused_before_the_run_dir(tmp_path: Path) -> None:
    from engine.execution.ray_backend import find_auto_cluster

    env = {"RAY_TMPDIR": str(tmp_path / "raytmp"), "RAY_ADDRESS": ""}  # no address file there
    if find_auto_cluster({**os.environ, **env}) is not None:
        pytest.skip("a Ray cluster (a raylet process) is running on this machine")
    task = make_toy_task(tmp_path)
    config = tmp_path / "ray.yaml"
    config.write_text("engineer:\n  backend: ray\nray:\n  address: auto\n")
    run_dir = tmp_path / "runs" / "r"
    result = cli("run", str(task), "--run-dir", str(run_dir), "--config", str(config), env=env)
    _assert_usage_error(result, "no Ray cluster is running here")
    assert "ray: {address: local}" in result.stderr and "ray start --head" in result.stderr
    assert not (tmp_path / "runs").exists()
