"""Researcher, Analyzer and Judge against the scripted server, in process."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from conftest import make_toy_task
from scripted_server import (
    ConstantEditor,
    Reply,
    ScriptedServer,
    agents_script,
    last_user,
    search_replace,
)

from engine.agents.base import (
    AgentError,
    Agents,
    AgentSetupError,
    AnalysisInput,
    Knowledge,
    ResearchContext,
)
from engine.agents.llm.client import CallRecorder, LLMClient
from engine.agents.llm.prompts import Templates
from engine.agents.llm.researcher import LLMResearcher
from engine.agents.llm.settings import LLMSettings, ResearcherSettings
from engine.agents.setup import build_llm_agents
from engine.app.plan import make_plan
from engine.config import RunConfig, from_dict
from engine.store.records import DONE, FAILED, Node
from engine.task import load_task

PARENT = Node(
    id=3,
    step=2,
    name="bigger-x",
    code="X = 1.0\nY = 0.5\n",
    motivation="Move X towards the peak.",
    analysis="ANALYSIS-OF-3: X helped.",
    results={"metrics": {"x": 1.0}, "logs": "LOG-TAIL-3 evaluated fine"},
    score=-4.25,
    status=DONE,
)
OTHER = Node(
    id=5,
    step=4,
    name="broken",
    code="X = (\n",
    motivation="Try a tuple.",
    analysis="ANALYSIS-OF-5",
    results={"logs": "LOG-TAIL-5", "stderr_tail": "SyntaxError: '(' was never closed"},
    error="evaluator exited with 1",
    status=FAILED,
)


def context(**extras: Any) -> ResearchContext:
    return ResearchContext(
        task_name="toy",
        task_description="Set X to maximize -(X-3)^2.",
        parent=PARENT,
        context=[PARENT, OTHER],
        knowledge=[Knowledge(id=11, title="KNOW-TITLE", content="Peaks are at 3.")],
        step=6,
        node_id=9,
        extras=extras,
    )


def researcher(server: ScriptedServer, **settings: Any) -> tuple[LLMResearcher, list]:
    rows: list = []

    class Store:
        def add_llm_call(self, **fields: Any) -> None:
            rows.append(fields)

        def add_event(self, *args: Any) -> None:
            pass

    recorder = CallRecorder()
    recorder.attach(Store())
    client = LLMClient(
        LLMSettings(base_url=server.base_url, model="m", retries=1, backoff_base=0.0),
        "researcher",
        recorder,
    )
    return LLMResearcher(client, Templates(), ResearcherSettings(**settings)), rows


def propose(agent: LLMResearcher, ctx: ResearchContext | None = None):  # noqa: ANN201
    async def go():  # noqa: ANN202
        try:
            return await agent.propose(ctx or context(use_analyzer=True))
        finally:
            await agent.client.close()  # in this loop: never leave a pool to the GC

    return asyncio.run(go())


def run_closing(agents: Agents, coro):  # noqa: ANN001, ANN201
    """Run ``coro`` and close the agents' HTTP clients in the same event loop."""

    async def go():  # noqa: ANN202
        try:
            return await coro
        finally:
            await agents.aclose()

    return asyncio.run(go())


DIFF_OK = "<name>x-two</name><motivation>X closer to 3.</motivation>\n" + search_replace(
    "X = 1.0", "X = 2.0"
)


def test_diff_answer_becomes_the_candidate_and_prompt_has_the_context() -> None:
    with ScriptedServer(ConstantEditor([("X = 1.0", "X = 2.5")])) as server:
        agent, rows = researcher(server)
        proposal = propose(agent)
        prompt = server.chat_requests[0].text
    assert proposal.code == "X = 2.5\nY = 0.5\n"
    assert proposal.name == "set-X = 2.5" and "Change 'X = 1.0'" in proposal.motivation
    assert proposal.metadata["researcher"]["answers"] == 1
    for needed in (
        "KNOW-TITLE",
        "Peaks are at 3.",
        "ANALYSIS-OF-3",
        "ANALYSIS-OF-5",
        "Try a tuple",
    ):
        assert needed in prompt
    assert "## Parent program\n```python\nX = 1.0\nY = 0.5\n```" in prompt
    assert "LOG-TAIL" not in prompt  # with an analyzer, reports replace raw logs
    assert [r["node_id"] for r in rows] == [9]


def test_no_analyzer_ablation_shows_raw_results_instead_of_analyses() -> None:
    with ScriptedServer(ConstantEditor([("X = 1.0", "X = 2.5")])) as server:
        agent, _ = researcher(server)
        propose(agent, context(use_analyzer=False))
        prompt = server.chat_requests[0].text
    assert "ANALYSIS-OF" not in prompt
    assert "LOG-TAIL-3" in prompt and "LOG-TAIL-5" in prompt and "never closed" in prompt
    assert "Raw results (no analyzer in this run)" in prompt


def test_mismatched_search_gets_a_repair_turn_with_the_closest_lines() -> None:
    editor = ConstantEditor([("X = 1.0", "X = 2.5")], bad_first=True)
    with ScriptedServer(editor) as server:
        agent, _ = researcher(server)
        proposal = propose(agent)
        second = server.chat_requests[1]
    assert proposal.code.startswith("X = 2.5")
    assert proposal.metadata["researcher"]["repairs"] == 1
    follow_up = last_user(second.body)
    assert "block 1: the SEARCH text does not match" in follow_up and "Closest lines" in follow_up
    assert (
        second.messages[-2]["role"] == "assistant" and "bad-edit" in second.messages[-2]["content"]
    )


def test_repairs_exhausted_fall_back_to_a_full_rewrite() -> None:
    def script(request: dict) -> Reply:
        if "write the complete new program" in last_user(request):
            return Reply("<name>full</name><motivation>m</motivation><code>\nX = 3.0\n</code>")
        return Reply("<name>n</name>" + search_replace("X = 9", "X = 3"))

    with ScriptedServer(script) as server:
        agent, _ = researcher(server, max_repair_turns=1)
        proposal = propose(agent)
        assert len(server.chat_requests) == 3
    assert proposal.code == "X = 3.0\n" and proposal.metadata["researcher"]["fallback"]


def test_truncated_answer_is_told_to_the_model() -> None:
    with ScriptedServer() as server:
        server.push(Reply(DIFF_OK, finish_reason="length"), DIFF_OK)
        agent, _ = researcher(server)
        proposal = propose(agent)
        follow_up = last_user(server.chat_requests[1].body)
    assert "cut off" in follow_up and proposal.code.startswith("X = 2.0")


def test_persistent_truncation_fails_the_node_with_the_reason() -> None:
    with ScriptedServer(lambda r: Reply(DIFF_OK, finish_reason="length")) as server:
        agent, _ = researcher(server, max_repair_turns=1)
        with pytest.raises(AgentError, match="after 2 answers: the answer was cut off"):
            propose(agent)


def test_over_long_code_is_an_error_not_a_truncation() -> None:
    long_code = "X = 1.0\n" + "# padding\n" * 50
    reply = f"<name>long</name><motivation>m</motivation><code>{long_code}</code>"
    with ScriptedServer(lambda r: Reply(reply)) as server:
        agent, _ = researcher(server, mode="full", max_code_chars=100, max_repair_turns=1)
        with pytest.raises(AgentError, match="over the limit of 100"):
            propose(agent)
        assert "over the limit" in last_user(server.chat_requests[1].body)


def test_full_mode_tolerates_fences_and_repairs_syntax_errors() -> None:
    with ScriptedServer() as server:
        server.push(
            "<name>a</name><motivation>m</motivation><code>\n```python\nX = (\n```\n</code>",
            "<name>b</name><motivation>fixed</motivation><code>\n```python\nX = 3.0\n```\n</code>",
        )
        agent, _ = researcher(server, mode="full")
        proposal = propose(agent)
        assert "does not compile" in last_user(server.chat_requests[1].body)
        assert "<code>" in server.chat_requests[0].messages[0]["content"]
    assert proposal.code == "X = 3.0\n" and proposal.motivation == "fixed"


# ------------------------------------------------------------ analyzer, judge
def built(tmp_path: Path, server: ScriptedServer, **raw: Any):  # noqa: ANN201
    task = load_task(make_toy_task(tmp_path))
    api = {"base_url": server.base_url, "model": "m", "backoff_base": 0.0, "retries": 1}
    config = from_dict({"api": api, **raw}, RunConfig())
    return build_llm_agents(make_plan(config, "openai"), task)


def analysis_input() -> AnalysisInput:
    node = Node(
        id=9,
        step=6,
        name="x-two",
        code="X = 2.0\nY = 0.5\n",
        motivation="X closer",
        results={"metrics": {"x": 2.0}, "logs": "NODE-LOGS"},
        score=-1.25,
        status=DONE,
    )
    best = Node(id=4, step=3, name="best", code="X = 2.9\n", score=-0.1, status=DONE)
    return AnalysisInput("toy", "maximize it", node, PARENT, best)


def test_analyzer_report_and_knowledge_proposals(tmp_path: Path) -> None:
    with ScriptedServer(agents_script(ConstantEditor([]))) as server:
        agents, _ = built(tmp_path, server)
        report = run_closing(agents, agents.analyzer.analyze(analysis_input()))
        prompt = server.chat_requests[0].text
    assert report.analysis.startswith("LLM analysis: the candidate is done with score -1.25")
    assert report.knowledge_proposals == [
        {"title": "Scripted lesson", "content": "Single-constant edits are cheap probes."}
    ]
    for needed in ("X = 2.0", "NODE-LOGS", "x=2.0", "best sampled node: #4", "bigger-x"):
        assert needed in prompt
    assert agents.judge is None


def test_judge_maps_its_rating_to_the_eval_scale(tmp_path: Path) -> None:
    (tmp_path / "rubric.j2").write_text("RUBRIC for {{ node.name }}: rate elegance.")
    with ScriptedServer() as server:
        server.push("no rating here", "<score>0.25</score>")
        agents, _ = built(
            tmp_path, server, judge={"ratio": 0.3, "template": "../rubric.j2", "scale": [0, 4]}
        )
        assert agents.judge_ratio == 0.3
        value = run_closing(agents, agents.judge.judge(analysis_input()))
        assert "RUBRIC for x-two" in server.chat_requests[0].text
        assert "<score>x</score>" in last_user(server.chat_requests[1].body)
    assert value == 1.0


def test_judge_without_a_rating_fails(tmp_path: Path) -> None:
    with ScriptedServer(lambda r: Reply("I like it")) as server:
        agents, _ = built(tmp_path, server, judge={"enabled": True, "ratio": 0.5})
        with pytest.raises(AgentError, match="no rating"):
            run_closing(agents, agents.judge.judge(analysis_input()))


@pytest.mark.parametrize(
    "judge, message",
    [
        ({"template": "missing.j2", "ratio": 0.2}, "judge.template 'missing.j2' not found"),
        ({"ratio": 1.5}, "judge.ratio must be in"),
        ({"scale": [1, 1]}, "judge.scale"),
        ({"temperature": 1}, "unknown setting 'temperature'"),
    ],
)
def test_judge_config_errors(tmp_path: Path, judge: dict, message: str) -> None:
    with ScriptedServer() as server, pytest.raises(AgentSetupError, match=message):
        built(tmp_path, server, judge=judge)


def test_task_prompt_overrides_and_broken_templates(tmp_path: Path) -> None:
    task_dir = make_toy_task(tmp_path / "a")
    (task_dir / "prompts").mkdir()
    (task_dir / "prompts" / "researcher.j2").write_text(
        "OVERRIDE {{ task.name }}\n## Parent program\n```python\n{{ parent.code }}\n```\n"
    )
    task = load_task(task_dir)
    with ScriptedServer(ConstantEditor([("X = 1.0", "X = 2.0")])) as server:
        config = from_dict({"api": {"base_url": server.base_url, "model": "m"}}, RunConfig())
        agents, recorder = build_llm_agents(make_plan(config, "openai"), task)
        recorder.attach(type("S", (), {"add_llm_call": lambda *a, **k: None})())
        run_closing(agents, agents.researcher.propose(context()))
        assert server.chat_requests[0].messages[1]["content"].startswith("OVERRIDE toy")
    (task_dir / "prompts" / "analyzer.j2").write_text("{% if %}")
    with pytest.raises(AgentSetupError, match="analyzer.j2: line 1"):
        build_llm_agents(make_plan(config, "openai"), task)
