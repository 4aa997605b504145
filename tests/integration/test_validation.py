"""Bad input: one line on stderr, exit 2, no traceback, and nothing written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import cli, make_toy_task

from engine.execution.engineer import bound_metrics


def _one_line_exit_2(result, needle: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert needle in result.stderr, result.stderr


CONFIGS = [
    ("budget:\n  max_cost_usd: abc\n", "budget.max_cost_usd must be a number"),
    ("budget:\n  max_cost: 5\n", "budget: unknown key 'max_cost'"),
    ("budget:\n  max_tokens_total: -5\n", "budget.max_tokens_total must be >= 0"),
    ("seed: -3\n", "seed must be >= 0"),
    ("engineer:\n  timeout: .nan\n", "timeout"),
    ("engineer:\n  cpus: 0\n", "engineer.cpus must be >= 1"),
    ("engineer:\n  backend: slurm\n", "engineer.backend must be local or ray"),
    ("ray:\n  adress: auto\n", "ray:"),
    ("backup_every: -1\n", "backup_every must be >= 0"),
    ("stepz: 3\n", "stepz"),
    ("researcher:\n  mode_typo: diff\n", "researcher: unknown setting 'mode_typo'"),
    ("api:\n  base_ulr: http://x\n", "api: unknown setting 'base_ulr'"),
    ("judge:\n  ratoi: 0.5\n", "judge: unknown setting 'ratoi'"),
    ("cognition:\n  top_kk: 3\n", "cognition.top_kk"),
]


@pytest.mark.parametrize(("text", "needle"), CONFIGS)
def test_bad_config_is_refused_before_anything_is_written(
    toy_task: Path, tmp_path: Path, text: str, needle: str
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(text)
    run = tmp_path / "run"
    result = cli("run", str(toy_task), "--run-dir", str(run), "--config", str(config))
    _one_line_exit_2(result, needle)
    assert not run.exists()


TASK_EDITS = [
    ("task.yaml", b"name: toy\x00\xff\xfe\n", "task.yaml"),
    ("initial.py", b"X = '\xff\xfe'\n", "initial"),
    ("task.md", b"\x00\x01\x02", "task.md"),
]


@pytest.mark.parametrize(("name", "data", "needle"), TASK_EDITS)
def test_binary_or_non_utf8_task_files(tmp_path: Path, name: str, data: bytes, needle: str) -> None:
    task = make_toy_task(tmp_path / "tasks")
    (task / name).write_bytes(data)
    run = tmp_path / "run"
    result = cli("run", str(task), "--run-dir", str(run))
    _one_line_exit_2(result, needle)
    assert not run.exists()


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("program_name: ../../evil.py\n", "program_name"),
        ("program_name: ''\n", "program_name"),
        ("evaluat_command: x\n", "evaluat_command"),
    ],
)
def test_task_yaml_escapes_and_typos(tmp_path: Path, line: str, needle: str) -> None:
    task = make_toy_task(tmp_path / "tasks")
    with (task / "task.yaml").open("a") as f:
        f.write(line)
    run = tmp_path / "run"
    _one_line_exit_2(cli("run", str(task), "--run-dir", str(run)), needle)
    assert not run.exists()


def test_task_name_that_escapes_is_refused(tmp_path: Path) -> None:
    task = make_toy_task(tmp_path / "tasks")
    spec = (task / "task.yaml").read_text().replace("name: toy", "name: ../../etc")
    (task / "task.yaml").write_text(spec)
    _one_line_exit_2(cli("run", str(task), "--run-dir", str(tmp_path / "r")), "name")
    assert not (tmp_path / "r").exists()


def test_run_dir_under_a_file_or_too_long(toy_task: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    _one_line_exit_2(
        cli("run", str(toy_task), "--run-dir", str(blocker / "run")), "is a file, not a directory"
    )
    assert blocker.read_text() == "x"
    long_dir = tmp_path / ("d" * 200) / ("e" * 200)
    long_dir = Path(str(long_dir) + "/" + "/".join(["f" * 250] * 14))
    _one_line_exit_2(cli("run", str(toy_task), "--run-dir", str(long_dir)), "too long")
    assert not (tmp_path / ("d" * 200)).exists()


def test_best_output_to_a_missing_dir_or_a_directory(toy_task: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert cli("run", str(toy_task), "--run-dir", str(run), "--steps", "1").returncode == 0
    _one_line_exit_2(cli("best", str(run), "-o", str(tmp_path / "no" / "b.py")), "does not exist")
    _one_line_exit_2(cli("best", str(run), "-o", str(tmp_path)), "is a directory")


WRITERS = {
    "valid as a string": ({"score": 1.0, "valid": "false"}, "'valid' must be true or false"),
    "huge integer score": ({"score": 10**400}, "score is too large"),
}


@pytest.mark.parametrize("case", list(WRITERS))
def test_results_json_cannot_smuggle_a_pass(tmp_path: Path, case: str) -> None:
    payload, reason = WRITERS[case]
    task = make_toy_task(tmp_path / "tasks")
    (task / "evaluate.py").write_text(
        "import json, os\n"
        f"open(os.environ['ASI_EVOLVE_RESULTS'], 'w').write({json.dumps(json.dumps(payload))})\n"
    )
    run = tmp_path / "run"
    result = cli("run", str(task), "--run-dir", str(run), "--steps", "1")
    assert result.returncode == 1 and reason in result.stderr, result.stderr
    shutil.rmtree(run)


def test_metrics_are_bounded() -> None:
    metrics = {f"m{i}": "x" * 10_000 for i in range(1000)}
    metrics["m0"] = {"nested": list(range(10))}
    bounded = bound_metrics(metrics)
    assert len(bounded) == 201 and bounded["metrics_cut"] == 800
    assert all(len(v) <= 500 for k, v in bounded.items() if isinstance(v, str))
    assert bound_metrics([1, 2]) == {"metrics_error": "metrics must be a mapping, got list"}


def test_ids_beyond_sqlite_integers(toy_task: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert cli("run", str(toy_task), "--run-dir", str(run), "--steps", "1").returncode == 0
    huge = str(2**70)
    for verb in ("show", "approve"):
        _one_line_exit_2(cli("cognition", verb, str(run), huge), "not an item id")
