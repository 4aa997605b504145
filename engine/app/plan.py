"""A run's plan: its configuration read once into typed, frozen sections.

``engine/config.py`` is what the user wrote, overlaid (defaults, a YAML file, flags) and
stored in the run as it is. The plan is that configuration parsed once, section by section,
into the settings each part of the run takes - the LLM endpoint per role, the researcher,
judge, cognition, novelty, budget, Ray and sandbox sections - so nothing downstream re-reads
a raw mapping or checks it again, and every problem is one line before anything is written.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from cognition.settings import CognitionSettings, NoveltySettings
from cognition.settings import cognition_settings as parse_cognition
from cognition.settings import novelty_settings as parse_novelty
from engine.agents.base import AgentSetupError
from engine.agents.llm import settings as llm
from engine.config import ConfigError, RunConfig
from engine.execution.ray_backend import RaySettings
from engine.execution.sandbox import SandboxSettings
from engine.task import Resources, Stage, TaskSpec

LLM_MODES = ("offline", "openai")


@dataclass(frozen=True)
class Budget:
    """When the run starts no more candidates (``budget:``); None: no limit."""

    max_cost_usd: float | None = None
    max_tokens_total: float | None = None

    @property
    def limited(self) -> bool:
        """Whether any limit is set (without one the run's totals need not be read)."""
        return bool(self.max_cost_usd or self.max_tokens_total)

    def reason(self, totals: dict[str, float]) -> str | None:
        """Why to start no more candidates, given the run's LLM totals, or None."""
        cost = totals["cost_usd"]
        if self.max_cost_usd and cost >= self.max_cost_usd:
            return f"budget reached: ${cost:.4f} of ${self.max_cost_usd}"
        used = totals["prompt_tokens"] + totals["completion_tokens"]
        if self.max_tokens_total and used >= self.max_tokens_total:
            return f"budget reached: {used} of {self.max_tokens_total} tokens"
        return None


@dataclass(frozen=True)
class RunPlan:
    """Every section of a run's configuration, parsed.

    config: the overlay as the user gave it (stored in the run, minus API keys).
    mode: offline (the built-in agents) or openai (LLM agents on an endpoint).
    llm: the endpoint settings of each LLM role (empty offline).
    secret_env: environment variables holding API keys, kept from evaluators and Ray.
    """

    config: RunConfig
    mode: str
    llm: dict[str, llm.LLMSettings]
    researcher: llm.ResearcherSettings
    judge: llm.JudgeSettings
    cognition: CognitionSettings
    novelty: NoveltySettings
    budget: Budget
    ray: RaySettings
    sandbox: SandboxSettings
    secret_env: tuple[str, ...]

    @property
    def wants_retriever(self) -> bool:
        """Retrieval or the novelty check needs the cognition base in this run."""
        return self.config.use_cognition or self.novelty.threshold is not None


def plan_stages(task: TaskSpec, config: RunConfig) -> tuple[Stage, ...]:
    """The task's stages with this run's overrides (resources per stage, score timeout)."""
    e = config.engineer
    names = {s.name for s in task.stages}
    unknown = sorted(set(e.resources) - names)
    if unknown:
        raise ConfigError(
            f"engineer.resources names no stage of {task.name}: {', '.join(unknown)} "
            f"(stages: {', '.join(s.name for s in task.stages)})"
        )
    stages = []
    for stage in task.stages:
        wanted = e.resources.get(stage.name)
        if wanted:
            r = stage.resources
            resources = Resources(cpus=wanted.get("cpus", r.cpus), gpus=wanted.get("gpus", r.gpus))
            stage = dataclasses.replace(stage, resources=resources)
        if e.timeout is not None and stage.name == task.score_stage:
            stage = dataclasses.replace(stage, timeout=float(e.timeout))
        stages.append(stage)
    return tuple(stages)


def endpoint_configured(api: dict[str, Any]) -> bool:
    import os

    return bool(api.get("base_url") or os.environ.get("OPENAI_BASE_URL"))


def llm_mode(requested: str | None, api: dict[str, Any]) -> str:
    """offline unless asked for openai or an endpoint is configured."""
    if requested:
        return requested
    return "openai" if endpoint_configured(api) else "offline"


def make_plan(config: RunConfig, requested_llm: str | None = None) -> RunPlan:
    """Parse and check every section (ConfigError, AgentSetupError, CognitionError)."""
    config.validate()
    mode = llm_mode(requested_llm or config.llm, config.api)
    researcher = llm.researcher_settings(config.researcher)
    judge = llm.judge_settings(config.judge)
    if mode == "openai":  # the judge's endpoint only when there is a judge
        used = [r for r in llm.ROLES if r != "judge" or judge.enabled]
        roles = {role: llm.resolve_settings(config.api, role) for role in used}
    else:
        llm.check_api_keys(config.api)  # a typo must fail offline too
        if judge.enabled:
            raise AgentSetupError(
                "the judge needs an LLM endpoint: configure one (api.base_url or "
                "OPENAI_BASE_URL) with --llm openai, or set judge.enabled: false"
            )
        roles = {}
    e = config.engineer
    return RunPlan(
        config=config,
        mode=mode,
        llm=roles,
        researcher=researcher,
        judge=judge,
        cognition=parse_cognition(config.cognition),
        novelty=parse_novelty(config.novelty),
        budget=Budget(**{k: _limit(v) for k, v in config.budget.items()}),
        ray=RaySettings(**config.ray),
        sandbox=SandboxSettings(e.sandbox, e.sandbox_network, tuple(e.sandbox_writable)),
        secret_env=secret_env_names(config.to_dict()),
    )


def _limit(value: float | None) -> float | None:
    return None if value is None or math.isinf(value) else value


def secret_env_names(config: dict[str, Any]) -> tuple[str, ...]:
    """Environment variables holding API keys, kept from the evaluator's environment.

    Every ``api_key_env`` (or other ``*_key_env``) value anywhere in the configuration
    counts: api, its per-role sections, researcher/analyzer/judge, the cognition
    embedding endpoint, and sections added later.
    """
    found: set[str] = set()
    stack: list[Any] = [config]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if str(key).endswith("key_env") and isinstance(value, str) and value:
                    found.add(value)
                else:
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)
    return tuple(sorted(found))
