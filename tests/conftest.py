"""Shared fixtures: small task directories built on the fly, and CLI runners."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# Test modules live in unit/, integration/ and e2e/; the helpers they import by name
# (scripted_server, tui_support, audit_db_opens) live here, beside this file.
sys.path.insert(0, str(Path(__file__).resolve().parent))

REPO = Path(__file__).resolve().parent.parent

TOY_EVALUATOR = textwrap.dedent(
    """
    import json, math, os, runpy, sys, time
    program = sys.argv[1]
    delay = float(os.environ.get("TOY_DELAY", "0"))
    time.sleep(delay)
    try:
        ns = runpy.run_path(program)
        x = float(ns["X"])
        y = float(ns.get("Y", 0.0))
        score = -((x - 3.0) ** 2) - (y - 1.0) ** 2
        out = {"score": score, "valid": math.isfinite(score), "metrics": {"x": x, "y": y}}
    except Exception as exc:
        out = {"score": 0.0, "valid": False, "error": f"{type(exc).__name__}: {exc}"}
    with open("results.json", "w") as f:
        json.dump(out, f)
    """
)


def make_toy_task(root: Path, name: str = "toy", timeout: float = 20) -> Path:
    """A task whose program sets X and Y; the score peaks at X = 3, Y = 1."""
    task = root / name
    task.mkdir(parents=True)
    (task / "task.yaml").write_text(
        f"name: {name}\ndescription: task.md\ninitial_program: initial.py\n"
        f"evaluator: evaluate.py\ntimeout: {timeout}\ndirection: maximize\n"
    )
    (task / "task.md").write_text("# Toy task\nSet X to maximize -(X-3)^2.\n")
    (task / "initial.py").write_text("X = 1.0\nY = 0.5\n")
    (task / "evaluate.py").write_text(TOY_EVALUATOR)
    return task


@pytest.fixture
def toy_task(tmp_path: Path) -> Path:
    return make_toy_task(tmp_path / "tasks")


def cli(
    *args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run the real ``asi-evolve`` entry point in a subprocess."""
    full_env = dict(os.environ)
    full_env.pop("OPENAI_BASE_URL", None)  # offline unless a test asks otherwise
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        cwd=cwd or REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
