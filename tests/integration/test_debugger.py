"""The debug agent: crashes are fixed within the node, verdicts on the idea are not."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from conftest import cli, make_toy_task
from scripted_server import ConstantEditor, Reply, ScriptedServer, agents_script, search_replace

from engine.agents.base import Proposal
from engine.agents.debugger import (
    DebugInput,
    OfflineDebugger,
    add_import,
    is_runtime_error,
)
from engine.agents.setup import build_offline_agents
from engine.execution.engineer import Engineer, Evaluation, Limits
from engine.loop.engine import Engine
from engine.samplers import make_sampler
from engine.samplers.settings import SamplerSettings
from engine.store.records import DONE, FAILED
from engine.store.run_store import RunStore
from engine.task import load_task


def _failure(error: str, stderr: str = "") -> Evaluation:
    return Evaluation(False, None, {"stderr_tail": stderr}, error, 0.1)


def test_only_crashes_count_as_runtime_errors() -> None:
    assert is_runtime_error(_failure("invalid: NameError: name 'math' is not defined"))
    assert is_runtime_error(
        _failure("evaluator exited with code 1", "Traceback (most recent call last):\n  x")
    )
    assert not is_runtime_error(_failure("timed out after 10.0s"))
    assert not is_runtime_error(_failure("check: invalid: not causal: output at t=3 changed"))
    assert not is_runtime_error(_failure("rejected by precheck: SyntaxError"))
    assert not is_runtime_error(Evaluation(True, 1.0, {}, "", 0.1))


def test_add_import_goes_after_docstring_and_future() -> None:
    code = '"""Doc\nstring."""\nfrom __future__ import annotations\n\nX = math.pi\n'
    fixed = add_import(code, "import math")
    assert fixed.split("\n")[3] == "import math"
    assert add_import("X = np.ones(2)\n", "import numpy as np").startswith("import numpy as np\n")


def test_offline_rule_fixes_a_missing_import_and_explains_otherwise() -> None:
    debugger = OfflineDebugger()
    inp = DebugInput(
        "toy", "", "X = math.sqrt(4.0)\n", "invalid: NameError: name 'math' is not defined", "", 1
    )
    fix = asyncio.run(debugger.fix(inp))
    assert fix is not None and fix.code == "import math\nX = math.sqrt(4.0)\n"
    other = DebugInput(
        "toy", "", "X = 1 / 0\n", "invalid: ZeroDivisionError: division by zero", "", 1
    )
    assert asyncio.run(debugger.fix(other)) is None
    assert debugger.last_reason == "no rule applies to ZeroDivisionError"


class _BuggyResearcher:
    """Writes a program that uses ``math`` without importing it."""

    label = "buggy"

    async def propose(self, ctx) -> Proposal:  # noqa: ANN001
        return Proposal(code="X = math.sqrt(9.0)\nY = 1.0\n", name="sqrt", motivation="use sqrt")


def _engine(task_dir: Path, run_dir: Path, debug_attempts: int) -> Engine:
    task = load_task(task_dir)
    store = RunStore.create(run_dir)
    store.set_meta("task", task.name)
    agents = build_offline_agents(0)
    agents.researcher = _BuggyResearcher()
    return Engine(
        store=store,
        task=task,
        run_dir=run_dir,
        agents=agents,
        sampler=make_sampler(SamplerSettings(), store, True, 0),
        engineer=Engineer(task, Limits()),
        steps_total=1,
        workers=1,
        debug_attempts=debug_attempts,
    )


def test_engine_reruns_the_fixed_program_in_the_same_node(toy_task: Path, tmp_path: Path) -> None:
    engine = _engine(toy_task, tmp_path / "run", debug_attempts=2)
    asyncio.run(engine.run())
    node = next(engine.store.nodes("step = 1"))
    assert node.status == DONE and node.score == pytest.approx(0.0)  # X = 3, Y = 1
    assert node.code.startswith("import math\n")
    (attempt,) = node.metadata["debug_attempts"]
    assert attempt["outcome"] == "fixed" and "NameError" in attempt["error"]
    assert attempt["code_before"] == "X = math.sqrt(9.0)\nY = 1.0\n"
    assert (tmp_path / "run" / "nodes" / "1.attempt-1").is_dir()  # the crashed attempt is kept

    off = _engine(toy_task, tmp_path / "run-off", debug_attempts=0)
    asyncio.run(off.run())
    node = next(off.store.nodes("step = 1"))
    assert node.status == FAILED and "NameError" in node.error


def _debug_reply(request: dict[str, Any]) -> Reply:
    program = request["messages"][1]["content"]
    assert "NameError" in program
    return Reply(search_replace("X = math.sqrt(4.0)", "import math\nX = math.sqrt(4.0)"))


@pytest.mark.slow
def test_llm_debugger_turns_a_crash_into_a_pass_through_the_cli(tmp_path: Path) -> None:
    task = make_toy_task(tmp_path / "tasks")
    editor = ConstantEditor([("X = 1.0", "X = math.sqrt(4.0)")])
    researcher_and_analyzer = agents_script(editor)

    def handle(request: dict[str, Any]) -> Reply | str:
        system = request["messages"][0]["content"]
        if "You fix crashing programs" in system:
            return _debug_reply(request)
        return researcher_and_analyzer(request)

    run = tmp_path / "run"
    with ScriptedServer(handle) as server:
        result = cli(
            "run", str(task), "--llm", "openai", "--steps", "1", "--workers", "1",
            "--run-dir", str(run),
            env={"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-test"},
        )  # fmt: skip
        debug_calls = [
            r
            for r in server.chat_requests
            if "You fix crashing programs" in r.messages[0]["content"]
        ]
    assert result.returncode == 0, result.stderr
    assert len(debug_calls) == 1
    db = sqlite3.connect(run / "evolve.db")
    code, status, metadata = db.execute(
        "SELECT code, status, metadata FROM nodes WHERE step = 1"
    ).fetchone()
    assert status == DONE and code.startswith("import math\nX = math.sqrt(4.0)")
    attempts = json.loads(metadata)["debug_attempts"]
    assert [a["outcome"] for a in attempts] == ["fixed"]


@pytest.mark.slow
def test_static_check_refusal_spends_no_experiment(tmp_path: Path) -> None:
    task = make_toy_task(tmp_path / "tasks")
    (task / "prompts").mkdir()
    (task / "prompts" / "static_check.j2").write_text(
        "Requirement: X must never be 2.0.\n```{{ lang }}\n{{ code }}\n```\n"
    )
    editor = ConstantEditor([("X = 1.0", "X = 2.0")])
    others = agents_script(editor)
    reviewed: list[str] = []

    def handle(request: dict[str, Any]) -> Reply | str:
        if "You are a strict reviewer" in request["messages"][0]["content"]:
            program = request["messages"][1]["content"]
            reviewed.append(program)
            if "X = 2.0" in program:
                return Reply("<verdict>refuse</verdict><reason>X is 2.0 on line 1</reason>")
            return Reply("<verdict>pass</verdict>")
        return others(request)

    run = tmp_path / "run"
    with ScriptedServer(handle) as server:
        result = cli(
            "run", str(task), "--llm", "openai", "--steps", "1", "--workers", "1",
            "--run-dir", str(run),
            env={"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-test"},
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert len(reviewed) == 1  # the candidate only: the initial program is not reviewed
    db = sqlite3.connect(run / "evolve.db")
    status, error = db.execute("SELECT status, error FROM nodes WHERE step = 1").fetchone()
    assert status == FAILED and error == "static check: X is 2.0 on line 1"
    assert not (run / "nodes" / "1").exists()  # no experiment was spent
