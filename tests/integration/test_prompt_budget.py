"""The researcher's prompt budget (issue 24): a long run's prompt stays within
``api.context_tokens`` less the answer's tokens, trimmed in the documented order; a short
run's prompt is unchanged. The numbers are printed by ``benchmarks/prompt_budget.py``."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO
from scripted_server import ConstantEditor, ScriptedServer
from test_llm_agents import OTHER, PARENT, context, propose, researcher

from engine.agents.base import AgentSetupError, Knowledge, ResearchContext
from engine.agents.llm import budget
from engine.agents.llm.settings import resolve_settings
from engine.store.records import DONE, Node

sys.path.insert(0, str(REPO / "benchmarks"))

import prompt_budget  # noqa: E402


def with_budget(agent: Any, context_tokens: int | None, max_tokens: int | None = None) -> Any:
    client = agent.client
    client.settings = dataclasses.replace(
        client.settings, context_tokens=context_tokens, max_tokens=max_tokens
    )
    return agent


def test_estimate_and_budget_arithmetic() -> None:
    messages = [{"role": "system", "content": "x" * 35}, {"role": "user", "content": "y" * 36}]
    assert budget.estimate_tokens(messages) == 10 + 4 + 11 + 4
    assert budget.prompt_budget(None, 4096) is None
    assert budget.prompt_budget(32_000, 8_000) == 24_000
    assert budget.prompt_budget(32_000, None) == 32_000 - budget.DEFAULT_ANSWER_TOKENS
    assert budget.prompt_budget(8_000, None) == 6_000  # at most a quarter for the answer


def test_the_setting_per_role_null_and_checked() -> None:
    env: dict[str, str] = {}
    api = {"base_url": "http://x/v1", "roles": {"researcher": {"context_tokens": 128_000}}}
    assert resolve_settings(api, "researcher", env).context_tokens == 128_000
    assert resolve_settings(api, "analyzer", env).context_tokens == 32_000  # the default
    assert resolve_settings({**api, "context_tokens": None}, "judge", env).context_tokens is None
    # Not configured and a long answer (a reasoning model's config): the default grows.
    big = resolve_settings({"base_url": "x", "max_tokens": 40_000}, None, env)
    assert big.context_tokens == 40_000 + 16_000
    with pytest.raises(AgentSetupError, match=r"api.context_tokens \(8000\) must be larger"):
        resolve_settings({"base_url": "x", "context_tokens": 8000, "max_tokens": 8000}, None, env)
    with pytest.raises(AgentSetupError, match="must be an integer"):
        resolve_settings({"base_url": "x", "context_tokens": "big"}, None, env)


def test_a_short_run_prompt_is_unchanged_by_the_budget() -> None:
    with ScriptedServer(ConstantEditor([("X = 1.0", "X = 2.5")])) as server:
        default, _ = researcher(server)
        unlimited = with_budget(researcher(server)[0], None)
        ctx = context(use_analyzer=True)
        fitted = default.prompt(ctx)
        assert fitted.trimmed is None
        assert fitted.messages == unlimited.prompt(ctx).messages
        proposal = propose(default)
    assert "prompt_trimmed" not in proposal.metadata["researcher"]


def big_context(n_others: int = 4) -> ResearchContext:
    """A parent and ``n_others`` context nodes (best first) whose fields are long."""
    others = [
        dataclasses.replace(
            OTHER,
            id=20 + i,
            name=f"other-{i}",
            code=f"# NODE-{i}\n" + "Z = 1\n" * 1500,
            analysis=f"ANALYSIS-{i} " + "a" * 3000,
        )
        for i in range(n_others)
    ]
    parent = dataclasses.replace(PARENT, analysis="PARENT-ANALYSIS " + "p" * 3000)
    knowledge = [
        Knowledge(id=k, title=f"KNOW-{k}", content="k" * 2000, score=s)
        for k, s in enumerate([0.9, 0.2, 0.5])
    ]
    return ResearchContext(
        task_name="toy",
        task_description="TASK-DESCRIPTION " + "t" * 2000,
        parent=parent,
        context=[parent, *others],
        knowledge=knowledge,
        step=7,
        node_id=9,
        extras={"use_analyzer": True},
    )


def test_trimming_order_shortens_then_drops_the_least_relevant_first() -> None:
    with ScriptedServer(ConstantEditor([("X = 1.0", "X = 2.5")])) as server:
        agent, _ = researcher(server)
    ctx = big_context()
    full = with_budget(agent, None).prompt(ctx).estimated_tokens
    # Just over: the last context node is shortened, nothing dropped.
    fitted = with_budget(agent, full - 100 + 1000, 1000).prompt(ctx)
    user = fitted.messages[1]["content"]
    assert fitted.estimated_tokens <= full - 100
    assert fitted.trimmed["shortened_nodes"] == 1 and fitted.trimmed["dropped_nodes"] == 0
    assert "NODE-3" in user and "more characters of this program omitted" in user
    assert "ANALYSIS-3 " + "a" * 3000 not in user and "ANALYSIS-0 " + "a" * 3000 in user
    # Tighter: every node shortened, then the least relevant (the last) ones dropped.
    fitted = with_budget(agent, 7000, 1000).prompt(ctx)
    user = fitted.messages[1]["content"]
    assert fitted.estimated_tokens <= 6000 and not fitted.over_budget
    trimmed = fitted.trimmed
    assert trimmed["shortened_nodes"] == 4 and 0 < trimmed["dropped_nodes"] < 4
    kept = 4 - trimmed["dropped_nodes"]
    assert all(f"NODE-{i}" in user for i in range(kept))
    assert not any(f"NODE-{i}" in user for i in range(kept, 4))
    assert trimmed["dropped_knowledge"] == 0 and "KNOW-1" in user
    assert "TASK-DESCRIPTION " + "t" * 2000 in user
    assert "## Parent program\n```python\nX = 1.0\nY = 0.5\n```" in user


def test_knowledge_then_the_parent_analysis_and_the_minimum_is_sent_with_one_line() -> None:
    with ScriptedServer(ConstantEditor([("X = 1.0", "X = 2.5")])) as server:
        agent, _ = researcher(server)
        said: list[tuple[str, int | None]] = []
        agent.client.recorder.event = lambda message, node_id: said.append((message, node_id))
        ctx = big_context()
        # Room for the minimum and the best knowledge item only.
        fitted = with_budget(agent, 2900, 300).prompt(ctx)
        user = fitted.messages[1]["content"]
        assert not fitted.over_budget and fitted.trimmed["dropped_nodes"] == 4
        assert "KNOW-0" in user and "KNOW-1" not in user  # the least similar went first
        assert fitted.trimmed["dropped_knowledge"] == 2 and not said
        # Not even the minimum fits: it is sent, said once, recorded on the candidate.
        with_budget(agent, 400, 100)
        fitted = agent.prompt(ctx)
        user = fitted.messages[1]["content"]
        assert fitted.over_budget and fitted.trimmed["shortened_parent"]
        assert "KNOW-0" not in user and "PARENT-ANALYSIS " + "p" * 3000 not in user
        assert "TASK-DESCRIPTION " + "t" * 2000 in user and "X = 1.0\nY = 0.5" in user
        proposal = propose(agent, ctx)
    lines = [message for message, _ in said]
    assert len(lines) == 2 and all("\n" not in line for line in lines)  # once per prompt
    assert lines[0].startswith("researcher prompt over budget: about ")
    assert "api.context_tokens 400" in lines[0] and "sending the task and the parent" in lines[0]
    assert said[0][1] == 9
    record = proposal.metadata["researcher"]["prompt_trimmed"]
    assert record["over_budget"] and record["dropped_nodes"] == 4
    assert record["estimated_tokens"] > record["budget"] == 300
    assert proposal.code == "X = 2.5\nY = 0.5\n"  # the step was not failed


def test_a_thousand_node_population_stays_within_the_budget(tmp_path: Path) -> None:
    """The real store and rank sampler, programs growing to ~10 KB, analyses of 1-2 KB."""
    results = prompt_budget.measure(
        n_context=8, rounds=5, budgets=(None, 32_000, 16_000), run_dir=tmp_path
    )
    assert list(results) == [10, 100, 1000]
    for rows in results.values():
        for limit in (32_000, 16_000):
            for row in rows[limit]:
                assert row["tokens"] <= limit - 4096, row
                assert row["parent_code_kept"] and row["task_kept"]
        for unlimited, limited in zip(rows[None], rows[32_000], strict=True):
            if limited["trimmed"] is None:
                assert limited["tokens"] == unlimited["tokens"]
    late = results[1000]
    assert max(r["tokens"] for r in late[None]) > 16_000 - 4096  # the budget was needed
    assert all(r["trimmed"]["dropped_nodes"] > 0 for r in late[16_000])
    assert max(r["tokens"] for r in late[None]) > max(r["tokens"] for r in results[10][None])


def test_the_parent_program_is_never_cut() -> None:
    """A parent longer than the whole budget: sent whole, with the task."""
    with ScriptedServer(ConstantEditor([("X = 1.0", "X = 2.5")])) as server:
        agent, _ = researcher(server)
    agent.client.recorder.event = lambda message, node_id: None
    code = "X = 1.0\n" + "Y = 0.5\n" * 5000
    parent = Node(id=3, step=2, name="p", code=code, status=DONE, score=1.0)
    ctx = dataclasses.replace(context(use_analyzer=True), parent=parent, context=[parent])
    fitted = with_budget(agent, 2000, 500).prompt(ctx)
    assert fitted.over_budget and code.rstrip("\n") in fitted.messages[1]["content"]
