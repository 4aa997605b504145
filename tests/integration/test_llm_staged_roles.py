"""What the research replay found broken in the LLM path, each pinned by a test.

- The Analyzer's prompt of a staged node failed to render (``'dict object' has no
  attribute 'skipped'``) whenever a stage ran, so every analysis of a staged task was
  "(analyzer failed ...)" and no knowledge was ever proposed.
- The static-check and debugger calls were recorded without their node, so a node's LLM
  cost and prompts missed them.
"""

from __future__ import annotations

import asyncio
from typing import Any

from scripted_server import Reply, ScriptedServer, search_replace

from engine.agents.base import AnalysisInput
from engine.agents.debugger import DebugInput, LLMDebugger
from engine.agents.llm.analyzer import LLMAnalyzer
from engine.agents.llm.client import CallRecorder, LLMClient
from engine.agents.llm.prompts import Templates
from engine.agents.llm.settings import LLMSettings
from engine.agents.llm.static_check import LLMStaticChecker
from engine.store.records import DONE, Node

STAGED = {
    "metrics": {"bpb": 2.8},
    "stages": {
        "check": {"ok": True, "score": None, "error": "", "runtime": 1.5, "results": {}},
        "explore": {"ok": True, "score": 99.2, "error": "", "runtime": 60.0, "results": {}},
        "verify": {"skipped": "not in the top 2 (2 nodes score better)"},
    },
}


def client(server: ScriptedServer, role: str) -> tuple[LLMClient, list[dict[str, Any]]]:
    rows: list[dict[str, Any]] = []

    class Store:
        def add_llm_call(self, **fields: Any) -> None:
            rows.append(fields)

        def add_event(self, *args: Any) -> None:
            pass

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


def test_static_check_and_debug_calls_are_recorded_under_their_node() -> None:
    task = type("Task", (), {"name": "t", "description": "d"})()
    templates = Templates()
    templates.add_file("static_check.j2", _template())
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


def _template():  # noqa: ANN202 - a Path
    import tempfile
    from pathlib import Path

    path = Path(tempfile.mkdtemp()) / "static_check.j2"
    path.write_text("Check {{ task_name }}:\n```{{ lang }}\n{{ code }}\n```\n")
    return path
