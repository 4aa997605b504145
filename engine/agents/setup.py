"""Which agents a run uses: the offline ones, or LLM agents on an endpoint (with the
debug and static-check agents), built from the configuration before anything is written."""

from __future__ import annotations

import os
from typing import Any

from engine.agents.base import Agents, AgentSetupError, NoRetriever


def endpoint_configured(api: dict[str, Any]) -> bool:
    return bool(api.get("base_url") or os.environ.get("OPENAI_BASE_URL"))


def resolve_llm_mode(requested: str | None, api: dict[str, Any]) -> str:
    """offline unless asked for openai or an endpoint is configured."""
    if requested:
        return requested
    return "openai" if endpoint_configured(api) else "offline"


def build_offline_agents(seed: int | None) -> Agents:
    from engine.agents.debugger import OfflineDebugger
    from engine.agents.offline.analyzer import OfflineAnalyzer
    from engine.agents.offline.researcher import OfflineResearcher

    return Agents(
        researcher=OfflineResearcher(seed=seed),
        analyzer=OfflineAnalyzer(),
        retriever=NoRetriever(),
        debugger=OfflineDebugger(),
    )


def check_offline_config(config: Any) -> None:
    """Settings an offline run cannot honour are errors, not silently ignored."""
    from engine.agents.llm.settings import (
        _API_KEYS,
        _ROLE_KEYS,
        ROLES,
        _check_keys,
        judge_settings,
        researcher_settings,
    )

    # A typo in an LLM section must fail offline too, not wait for the first online run.
    api = getattr(config, "api", None) or {}
    _check_keys(api, _API_KEYS, "api")
    for role, section in (api.get("roles") or {}).items():
        if role not in ROLES:
            raise AgentSetupError(f"api.roles: unknown role {role!r} (use {', '.join(ROLES)})")
        _check_keys(section or {}, _ROLE_KEYS | {"api_key_env"}, f"api.roles.{role}")
    researcher_settings(getattr(config, "researcher", None) or {})
    if judge_settings(getattr(config, "judge", None) or {}).enabled:
        raise AgentSetupError(
            "the judge needs an LLM endpoint: configure one (api.base_url or OPENAI_BASE_URL) "
            "with --llm openai, or set judge.enabled: false"
        )


def build_llm_agents(config: Any, task: Any) -> tuple[Agents, Any]:
    """LLM Researcher, Analyzer and optional Judge, and the recorder of their calls.

    Every setting and template is checked here, before a run directory exists; the
    caller attaches the run store to the returned ``CallRecorder`` once it has one.
    """
    from engine.agents.llm.analyzer import LLMAnalyzer
    from engine.agents.llm.client import CallRecorder, LLMClient
    from engine.agents.llm.judge import LLMJudge
    from engine.agents.llm.prompts import Templates
    from engine.agents.llm.researcher import LLMResearcher
    from engine.agents.llm.settings import judge_settings, researcher_settings, resolve_settings

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
        clients.append(LLMClient(resolve_settings(config.api, role), role, recorder))
        return clients[-1]

    agents = Agents(
        researcher=LLMResearcher(
            client("researcher"),
            templates,
            researcher_settings(config.researcher),
            use_analyzer=config.use_analyzer,
            program_name=task.program_name,
        ),
        analyzer=LLMAnalyzer(client("analyzer"), templates, program_name=task.program_name),
        retriever=NoRetriever(),
    )
    judging = judge_settings(config.judge)
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
