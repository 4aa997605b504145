"""The circle packing domain: the initial program's score and the evaluator's strict checks."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from engine.task import load_task

DOMAIN = Path(__file__).resolve().parents[2] / "domains" / "circle_packing"
EVALUATOR = DOMAIN / "evaluate.py"

# A valid hand-made packing: a 5 x 5 grid of radius just under 0.1, plus one small circle
# in the hole between four grid circles. ``{edit}`` lets a test break it in one way.
GRID_PROGRAM = """
import numpy as np

def construct_packing():
    r = 0.1 * (1 - 1e-9)
    centers = [(0.1 + 0.2 * i, 0.1 + 0.2 * j) for i in range(5) for j in range(5)]
    centers = np.array(centers + [(0.2, 0.2)])
    radii = np.array([r] * 25 + [0.01])
    reported = float(radii.sum())
{edit}
    return centers, radii, reported
"""
GRID_SCORE = 25 * 0.1 * (1 - 1e-9) + 0.01


def evaluate(tmp_path: Path, code: str, *flags: str) -> dict:
    program = tmp_path / "program.py"
    program.write_text(code)
    proc = subprocess.run(
        [sys.executable, str(EVALUATOR), str(program), *flags],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout) < 1000  # one short summary line, never the program's output
    return json.loads((tmp_path / "results.json").read_text())


def grid(edit: str = "") -> str:
    return GRID_PROGRAM.format(edit=textwrap.indent(textwrap.dedent(edit), "    "))


def test_task_loads() -> None:
    task = load_task(DOMAIN)
    assert task.name == "circle_packing" and task.maximize and task.timeout == 60
    assert task.cognition_file is not None
    assert "construct_packing" in task.description


def test_initial_program_scores_0_9598(tmp_path: Path) -> None:
    result = evaluate(tmp_path, (DOMAIN / "initial.py").read_text())
    assert result["valid"] is True, result.get("error")
    assert round(result["score"], 4) == 0.9598
    metrics = result["metrics"]
    assert metrics["sum_radii"] == result["score"]
    assert metrics["n_circles"] == 26 and metrics["min_gap"] >= 0
    assert metrics["eval_time"] > 0 and "error" not in result


def test_hand_made_grid_is_valid(tmp_path: Path) -> None:
    result = evaluate(tmp_path, grid())
    assert result["valid"] is True, result.get("error")
    assert result["score"] == pytest.approx(GRID_SCORE, abs=1e-12)
    assert result["metrics"]["max_radius"] == pytest.approx(0.1, abs=1e-9)
    assert result["metrics"]["min_radius"] == pytest.approx(0.01)


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        # Two grid circles pushed into each other.
        ("centers[1] = centers[0] + [0.0, 0.15]", "overlap"),
        # The small circle grown until it overlaps by the last bit: no positive tolerance.
        (
            """
            d = float(np.sqrt(np.sum((centers[25] - centers[0]) ** 2)))
            r = d - radii[0]
            while radii[0] + r <= d:
                r = np.nextafter(r, 1.0)
            radii[25] = r
            reported = float(radii.sum())
            """,
            "overlap",
        ),
        ("centers[0] = [0.05, 0.5]; reported = float(radii.sum())", "not inside"),
        ("radii[24] = 0.1 + 1e-12; reported = float(radii.sum())", "not inside"),
        ("centers = centers[:25]", "shape"),
        ("radii = radii.reshape(26, 1)", "shape"),
        ("centers[3, 0] = np.nan", "NaN"),
        ("radii[5] = -0.01; reported = float(radii.sum())", "negative radius"),
        ("reported += 0.1", "differs"),
        ("raise ValueError('boom')", "raised ValueError: boom"),
        ("return centers, radii", "must return"),
    ],
)
def test_invalid_packings_are_rejected_with_a_reason(
    tmp_path: Path, edit: str, reason: str
) -> None:
    result = evaluate(tmp_path, grid(edit))
    assert result["valid"] is False
    assert result["score"] == 0.0
    assert reason in result["error"]


def test_a_hanging_program_times_out(tmp_path: Path) -> None:
    result = evaluate(tmp_path, grid("import time; time.sleep(60)"), "--timeout", "1")
    assert result["valid"] is False and "timeout" in result["error"]
    assert result["metrics"]["eval_time"] < 10


def test_timeout_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIRCLE_PACKING_TIMEOUT", "1")
    result = evaluate(tmp_path, grid("import time; time.sleep(60)"))
    assert "timeout" in result["error"]


def test_broken_program_and_huge_output(tmp_path: Path) -> None:
    result = evaluate(tmp_path, "def construct_packing(:\n")
    assert result["valid"] is False and "SyntaxError" in result["error"]
    result = evaluate(tmp_path, grid("print('x' * 5_000_000)"))
    assert result["valid"] is True
    assert len(result["logs"]) <= 2000


def test_the_initial_program_states_the_libraries_box() -> None:
    """The offline researcher reads the same box the benchmark gives Optuna and CMA-ES: each
    named setting's range (``# in [low, high]``), the count n fixed, and a box point written
    back into the program as the named settings (an inner ring of 16 stays the inner ring)."""
    sys.path.insert(0, str(DOMAIN.parents[1] / "benchmarks"))
    import numpy as np
    from circle_packing_quality import BOX, box_program

    from engine.agents.offline.literals import find_literals

    code = (DOMAIN / "initial.py").read_text()
    named = {lit.value: (lit.low, lit.high) for lit in find_literals(code)[0] if lit.named}
    assert named[26] == (26, 26)
    assert [named[p.start] for p in BOX] == [(p.low, p.high) for p in BOX]
    assert box_program(np.array([p.start for p in BOX], dtype=float)) == code
    swapped = box_program(np.array([0.5, 0.3, 0.7, 0.01, 16, 8]))
    assert "    ring = 16  #" in swapped and "    outer_ring = 8  #" in swapped
