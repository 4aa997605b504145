"""Which agents a run uses: the offline ones, or LLM agents on an endpoint (with the
debug and static-check agents), built from the configuration before anything is written."""

from __future__ import annotations

from typing import Any

from engine.agents.base import Agents, AgentSetupError, NoRetriever


def build_offline_agents(seed: int | None) -> Agents:
    from engine.agents.debugger import OfflineDebugger
    from engine.agents.offline import cma_move
    from engine.agents.offline.analyzer import OfflineAnalyzer
    from engine.agents.offline.researcher import OfflineResearcher

    return Agents(
        researcher=OfflineResearcher(seed=seed),
        analyzer=OfflineAnalyzer(),
        retriever=NoRetriever(),
        debugger=OfflineDebugger(),
        warmers=[cma_move.warm_up],
    )


def build_llm_agents(plan: Any, task: Any) -> tuple[Agents, Any]:
    """LLM Researcher, Analyzer and optional Judge, and the recorder of their calls.

    ``plan`` is the run's parsed configuration (``engine.app.plan.RunPlan``): endpoints per
    role, researcher and judge settings. Every template is checked here, before a run
    directory exists; the caller attaches the run store to the returned ``CallRecorder``
    once it has one.
    """
    from engine.agents.llm.analyzer import LLMAnalyzer
    from engine.agents.llm.client import CallRecorder, LLMClient
    from engine.agents.llm.judge import LLMJudge
    from engine.agents.llm.prompts import Templates
    from engine.agents.llm.researcher import LLMResearcher

    templates = Templates(task.prompts_dir)
    templates.check(
        "researcher_system.j2",
        "researcher.j2",
        "researcher_repair.j2",
        "researcher_fallback.j2",
        "analyzer_system.j2",
        "analyzer.j2",
        "debug_system.j2",
        "debug.j2",
    )
    recorder = CallRecorder()

    clients: list[LLMClient] = []

    def client(role: str) -> LLMClient:
        clients.append(LLMClient(plan.llm[role], role, recorder))
        return clients[-1]

    agents = Agents(
        researcher=LLMResearcher(
            client("researcher"),
            templates,
            plan.researcher,
            use_analyzer=plan.config.use_analyzer,
            program_name=task.program_name,
        ),
        analyzer=LLMAnalyzer(client("analyzer"), templates, program_name=task.program_name),
        retriever=NoRetriever(),
    )
    judging = plan.judge
    if judging.enabled:
        templates.check("judge_system.j2")
        agents.judge = LLMJudge(
            client("judge"),
            templates,
            scale=(judging.scale[0], judging.scale[1]),
            template=judge_template(judging.template, task, templates),
            program_name=task.program_name,
        )
        agents.judge_ratio = judging.ratio
    from engine.agents.debugger import LLMDebugger
    from engine.agents.llm import static_check

    agents.debugger = LLMDebugger(client("debugger"), templates, program_name=task.program_name)
    if static_check.wanted(task):
        templates.check("static_check_system.j2", static_check.TEMPLATE)
        agents.static_checker = static_check.LLMStaticChecker(
            client("static_check"), templates, program_name=task.program_name
        )
    agents.closers = [c.close for c in clients]
    from engine.agents.llm.client import warm_up

    agents.warmers.append(warm_up)
    return agents, recorder


def judge_template(template: str, task: Any, templates: Any) -> str:
    """The judge template's name: a file (relative to the task dir) or a built-in name."""
    from pathlib import Path

    path = Path(template).expanduser()
    if not path.is_absolute():
        path = Path(task.directory) / path
    if path.is_file():
        templates.add_file("judge template", path)
        return "judge template"
    for name in (template, f"{template}.j2"):
        if templates.exists(name):
            templates.check(name)
            return name
    raise AgentSetupError(
        f"judge.template {template!r} not found: neither a file in {task.directory} "
        "nor a built-in template"
    )
