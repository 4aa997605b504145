"""What the research replay found broken in the LLM path, each pinned by a test.

- The Analyzer's prompt of a staged node failed to render (``'dict object' has no
  attribute 'skipped'``) whenever a stage ran, so every analysis of a staged task was
  "(analyzer failed ...)" and no knowledge was ever proposed.
- The static-check and debugger calls were recorded without their node, so a node's LLM
  cost and prompts missed them.
- A static-check answer without a verdict passed the candidate silently (the node says
  "passed" as if the model had said so); it now leaves an event.
- With a judge, a promotion gate compared a candidate's evaluation score with the judge's
  blends of the other nodes' scores (the root's included).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from scripted_server import Reply, ScriptedServer, search_replace

from engine.agents.base import AnalysisInput, Proposal
from engine.agents.debugger import DebugInput, LLMDebugger
from engine.agents.llm.analyzer import LLMAnalyzer
from engine.agents.llm.client import CallRecorder, LLMClient
from engine.agents.llm.prompts import Templates
from engine.agents.llm.settings import LLMSettings
from engine.agents.llm.static_check import LLMStaticChecker
from engine.agents.setup import build_offline_agents
from engine.execution.engineer import Engineer, Limits
from engine.loop.engine import Engine
from engine.samplers import make_sampler
from engine.samplers.settings import SamplerSettings
from engine.store.records import DONE, Node
from engine.store.run_store import RunStore
from engine.task import load_task

STAGED = {
    "metrics": {"bpb": 2.8},
    "stages": {
        "check": {"ok": True, "score": None, "error": "", "runtime": 1.5, "results": {}},
        "explore": {
            "ok": True,
            "score": 99.2,
            "error": "",
            "runtime": 60.0,
            "results": {"metrics": {"bpb": 2.8}},
        },
        "verify": {"skipped": "not in the top 2 (2 nodes score better)"},
    },
}
VERIFIED = {
    "ok": True,
    "score": 98.0,
    "error": "",
    "runtime": 900.0,
    "results": {"metrics": {"bpb": 2.81, "beats_baseline": False}, "logs": "LONG LOG"},
}


EVENTS: list[tuple] = []


def client(server: ScriptedServer, role: str) -> tuple[LLMClient, list[dict[str, Any]]]:
    rows: list[dict[str, Any]] = []

    class Store:
        def add_llm_call(self, **fields: Any) -> None:
            rows.append(fields)

        def add_event(self, *args: Any) -> None:
            EVENTS.append(args)

    recorder = CallRecorder()
    recorder.attach(Store())
    settings = LLMSettings(base_url=server.base_url, model="m", retries=0, backoff_base=0.0)
    return LLMClient(settings, role, recorder), rows


def run(agent_client: LLMClient, coro):  # noqa: ANN001, ANN201
    async def go():  # noqa: ANN202
        try:
            return await coro
        finally:
            await agent_client.close()

    return asyncio.run(go())


def test_analyzer_prompt_of_a_staged_node_shows_every_stage() -> None:
    node = Node(id=7, step=3, name="gated", code="X = 1\n", results=STAGED, score=99.2)
    node.status = DONE
    with ScriptedServer() as server:
        server.push("<analysis>fine</analysis>")
        llm, rows = client(server, "analyzer")
        analyzer = LLMAnalyzer(llm, Templates())
        report = run(llm, analyzer.analyze(AnalysisInput("t", "d", node, None, None)))
        prompt = server.chat_requests[0].text
    assert report.analysis == "fine"
    assert "Stages: check=passed; explore=passed (score 99.2); " in prompt
    assert "verify=skipped (not in the top 2 (2 nodes score better))" in prompt
    assert rows[0]["node_id"] == 7
    # A verify stage's verdict reaches the Analyzer; the score stage's metrics are not repeated.
    node.results = {**STAGED, "stages": {**STAGED["stages"], "verify": VERIFIED}}
    with ScriptedServer() as server:
        server.push("<analysis>fine</analysis>")
        llm, rows = client(server, "analyzer")
        run(llm, LLMAnalyzer(llm, Templates()).analyze(AnalysisInput("t", "d", node, None, None)))
        prompt = server.chat_requests[0].text
    assert "explore=passed (score 99.2); " in prompt
    assert "verify=passed (score 98.0) [bpb=2.81, beats_baseline=False]" in prompt
    assert "LONG LOG" not in prompt


def test_static_check_and_debug_calls_are_recorded_under_their_node(tmp_path: Path) -> None:
    task = type("Task", (), {"name": "t", "description": "d"})()
    template = tmp_path / "static_check.j2"
    template.write_text("Check {{ task_name }}:\n```{{ lang }}\n{{ code }}\n```\n")
    templates = Templates()
    templates.add_file("static_check.j2", template)
    with ScriptedServer() as server:
        server.push(
            Reply("<verdict>refuse</verdict><reason>reads the future</reason>"),
            Reply(search_replace("X = 1 / 0", "X = 1")),
        )
        llm, rows = client(server, "static_check")
        checker = LLMStaticChecker(llm, templates)
        assert run(llm, checker.check("X = 1\n", task, node_id=12)) == "reads the future"
        llm, debug_rows = client(server, "debugger")
        debugger = LLMDebugger(llm, templates)
        inp = DebugInput("t", "d", "X = 1 / 0\n", "ZeroDivisionError", "", 1, node_id=13)
        fix = run(llm, debugger.fix(inp))
    assert fix is not None and fix.code == "X = 1\n"
    assert [r["node_id"] for r in rows + debug_rows] == [12, 13]


def test_static_check_without_a_verdict_passes_but_leaves_an_event(tmp_path: Path) -> None:
    task = type("Task", (), {"name": "t", "description": "d"})()
    template = tmp_path / "static_check.j2"
    template.write_text("Check:\n{{ code }}\n")
    templates = Templates()
    templates.add_file("static_check.j2", template)
    EVENTS.clear()
    with ScriptedServer() as server:
        server.push("The attention term may be costly; I cannot tell.")
        llm, _ = client(server, "static_check")
        assert run(llm, LLMStaticChecker(llm, templates).check("X = 1\n", task, 4)) is None
    assert len(EVENTS) == 1
    kind, message, node_id = EVENTS[0]
    assert (kind, node_id) == ("llm", 4) and message.startswith("static check gave no verdict")
    assert "may be costly" in message


# ------------------------------------------------- promotion with a judge (bug 3)
STAGED_EVALUATOR = """
import json, os, runpy, sys
stage, program = sys.argv[1], sys.argv[2]
x = float(runpy.run_path(program)["X"])
score = -abs(x - 3.0) * (2 if stage == "verify" else 1)
with open(os.environ["ASI_EVOLVE_RESULTS"], "w") as f:
    json.dump({"score": score, "metrics": {"x": x}} if stage != "check" else {"valid": True}, f)
"""


class _Researcher:
    label = "fixed researcher"

    async def propose(self, ctx: Any) -> Proposal:
        return Proposal(code="X = 2.0\n", name="closer", motivation="X closer to 3.")


class _GenerousJudge:
    label = "judge rating everything 1.0"

    async def judge(self, inp: Any) -> float:
        return 1.0


def test_promotion_compares_evaluation_scores_not_judge_blends(tmp_path: Path) -> None:
    """With a judge, the root's score is a blend (here -2 -> -0.5); the candidate's explore
    score (-1, better than the root's evaluation) was compared with that blend, so no
    candidate was ever promoted while the judge rated above the evaluation."""
    task = tmp_path / "task"
    task.mkdir()
    stage = '{name: %s, command: "{python} {evaluator} %s {program}", timeout: 20}'
    stages = [stage % (s, s) for s in ("check", "explore")]
    stages.append(stage[:-1] % ("verify", "verify") + ", promote: {beat_baseline: true, top_k: 1}}")
    (task / "task.yaml").write_text(
        "name: staged\ndescription: task.md\ninitial_program: initial.py\n"
        "evaluator: evaluate.py\ndirection: maximize\nscore_stage: explore\nstages:\n"
        + "".join(f"  - {s}\n" for s in stages)
    )
    (task / "task.md").write_text("Set X near 3.\n")
    (task / "initial.py").write_text("X = 1.0\n")
    (task / "evaluate.py").write_text(STAGED_EVALUATOR)
    spec = load_task(task)
    agents = build_offline_agents(0)
    agents.researcher = _Researcher()
    agents.judge, agents.judge_ratio = _GenerousJudge(), 0.5
    store = RunStore.create(tmp_path / "run")
    store.set_meta("task", spec.name)
    engine = Engine(
        store=store,
        task=spec,
        run_dir=tmp_path / "run",
        agents=agents,
        sampler=make_sampler(SamplerSettings(), store, True, 0),
        engineer=Engineer(spec, Limits()),
        steps_total=1,
        workers=1,
    )
    asyncio.run(engine.run())
    root, child = list(engine.store.nodes())
    assert root.results["eval_score"] == -2.0 and root.score == -0.5
    verify = child.results["stages"]["verify"]
    assert verify.get("ok") and verify["score"] == -2.0, verify
    assert engine.store.count_better(-1.5, maximize=True) == 1  # the child's -1, not -0.5
