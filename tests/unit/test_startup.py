"""What a command start imports: ``--version``, ``status`` and ``tasks`` load neither numpy
nor Textual, torch, the openai SDK, the loop or the execution room (issue 22: every command
paid about 2 s of imports; ``python -X importtime -m engine.cli --version`` shows it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

HEAVY = ("numpy", "textual", "torch", "openai", "yaml", "engine.loop", "engine.execution")
PROBE = """
import contextlib, io, json, sys
from engine.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        code = main(sys.argv[1:])
    except SystemExit as exc:  # --version
        code = exc.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def _modules(*args: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["code"] == 0, done.stderr
    return set(result["modules"])


def _heavy(modules: set[str], allowed: tuple[str, ...] = ()) -> list[str]:
    return sorted(
        m
        for m in modules
        if any(m == h or m.startswith(h + ".") for h in HEAVY)
        and not any(m == a or m.startswith(a + ".") for a in allowed)
    )


def test_version_imports_nothing_heavy() -> None:
    assert _heavy(_modules("--version")) == []


def test_status_imports_nothing_heavy(tmp_path: Path) -> None:
    from engine.store.records import DONE, Node
    from engine.store.run_store import RunStore

    store = RunStore.create(tmp_path / "run")
    store.set_meta("task", "t")
    store.insert_node(Node(step=0, code="x = 1\n", score=1.0, status=DONE))
    store.close()
    assert _heavy(_modules("status", str(tmp_path / "run"))) == []


@pytest.mark.parametrize("command", ["tasks"])
def test_tasks_imports_only_the_task_reader(command: str) -> None:
    assert _heavy(_modules(command), allowed=("yaml",)) == []  # task.yaml is YAML


def test_the_interpreter_of_the_install_starts_without_an_import_hook() -> None:
    """Every evaluator of every candidate starts this interpreter: an editable install
    must put a plain path in its .pth (pyproject's ``package-dir``), not setuptools'
    finder, which imported pathlib, re and urllib at every start (15 ms here)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "pass"],
        capture_output=True,
        text=True,
        check=True,
    )
    imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()]
    assert not [name for name in imported if "editable" in name], imported
    assert "pathlib" not in imported and "re" not in imported, imported
