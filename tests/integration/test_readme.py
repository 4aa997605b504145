"""The README's minimal evaluator works as printed."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import REPO, cli


def test_minimal_evaluator_from_the_readme_runs_and_improves(tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text()
    match = re.search(r"\*\*A minimal evaluator\*\*.*?```python\n(.*?)```", readme, re.S)
    assert match, "the README lost its minimal evaluator"
    task = tmp_path / "square"
    task.mkdir()
    (task / "evaluate.py").write_text(match.group(1))
    (task / "initial.py").write_text("def f(x):\n    return 0.5 * x * x + 1.0\n")
    (task / "task.md").write_text("Make f(x) equal x^2.\n")
    (task / "task.yaml").write_text(
        "name: square\ndescription: task.md\ninitial_program: initial.py\n"
        "evaluator: evaluate.py\ntimeout: 30\n"
    )
    run = tmp_path / "run"
    result = cli(
        "run", str(task), "--steps", "10", "--run-dir", str(run), "--no-cognition",
        "--seed", "0", "--workers", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    # the initial f(x) = x^2 / 2 + 1 is 49 off at x = +-10
    assert re.search(r"step +0 .* score -49 ", result.stdout), result.stdout
    best = float(re.search(r"best (-?[\d.]+) \(#", result.stdout).group(1))
    assert best > -49
