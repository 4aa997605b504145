"""The ``stages:`` list of task.yaml, checked field by field (see ``engine/stages.py``).

A task without ``stages:`` gets ``default_stages`` (its ``precheck_command`` and
``evaluate_command``), so old tasks keep working unchanged.
"""

from __future__ import annotations

from typing import Any

from engine.stages import (
    DEFAULT_STAGE,
    NAME_PATTERN,
    PRECHECK_STAGE,
    Promotion,
    Resources,
    Stage,
    default_score_stage,
)
from engine.task_checks import TaskError, check_template, integer, no_unknown, positive_number, text

STAGE_KEYS = frozenset({"name", "command", "timeout", "resources", "promote"})
RESOURCE_KEYS = frozenset({"cpus", "gpus"})
PROMOTE_KEYS = frozenset({"top_k", "beat_baseline"})
MAX_STAGES = 32


def default_stages(
    evaluate_command: str,
    timeout: float,
    precheck_command: str | None = None,
    precheck_timeout: float = 30.0,
) -> tuple[Stage, ...]:
    """The stages of a task without ``stages:``, so old tasks run unchanged."""
    evaluate = Stage(DEFAULT_STAGE, evaluate_command, timeout)
    if precheck_command is None:
        return (evaluate,)
    return (Stage(PRECHECK_STAGE, precheck_command, precheck_timeout), evaluate)


def parse_stages(value: Any, default_timeout: float, where: str) -> tuple[Stage, ...]:
    """The ``stages:`` list -> Stages; names unique, every field checked.

    A stage without ``timeout`` gets the task's ``timeout``.
    """
    if not isinstance(value, list) or not value:
        raise TaskError(f"{where}: stages must be a non-empty list of stages")
    if len(value) > MAX_STAGES:
        raise TaskError(f"{where}: at most {MAX_STAGES} stages, got {len(value)}")
    stages: list[Stage] = []
    for index, item in enumerate(value):
        stage = _parse_stage(item, default_timeout, f"{where}: stages[{index}]")
        if any(s.name == stage.name for s in stages):
            raise TaskError(f"{where}: stages[{index}]: duplicate stage name {stage.name!r}")
        stages.append(stage)
    return tuple(stages)


def _parse_stage(item: Any, default_timeout: float, where: str) -> Stage:
    if not isinstance(item, dict):
        raise TaskError(f"{where}: a stage must be a mapping with name and command")
    no_unknown(item, STAGE_KEYS, where)
    name = item.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise TaskError(
            f"{where}: stage name must match [a-z][a-z0-9_-]* (at most 32 chars), got {name!r}"
        )
    where = f"{where} ({name})"
    if "command" not in item:
        raise TaskError(f"{where}: missing 'command'")
    command = text(item["command"], f"{where}: command")
    check_template(command, f"{where}: command")
    timeout = positive_number(item.get("timeout", default_timeout), f"{where}: timeout")
    resources = _parse_resources(item.get("resources"), f"{where}: resources")
    promote = _parse_promote(item["promote"], f"{where}: promote") if "promote" in item else None
    return Stage(name, command, timeout, resources, promote)


def _parse_resources(value: Any, where: str) -> Resources:
    if value is None:
        return Resources()
    if not isinstance(value, dict):
        raise TaskError(f"{where} must be a mapping like {{cpus: 1, gpus: 0}}")
    no_unknown(value, RESOURCE_KEYS, where)
    cpus = integer(value.get("cpus", 1), f"{where}.cpus", minimum=1)
    gpus = integer(value.get("gpus", 0), f"{where}.gpus", minimum=0)
    return Resources(cpus=cpus, gpus=gpus)


def _parse_promote(value: Any, where: str) -> Promotion:
    if not isinstance(value, dict):
        raise TaskError(f"{where} must be a mapping: {{top_k: N}} or {{beat_baseline: true}}")
    no_unknown(value, PROMOTE_KEYS, where)
    top_k = value.get("top_k")
    if top_k is not None:
        top_k = integer(top_k, f"{where}.top_k", minimum=1)
    beat = value.get("beat_baseline", False)
    if not isinstance(beat, bool):
        raise TaskError(f"{where}.beat_baseline must be true or false")
    if top_k is None and not beat:
        raise TaskError(f"{where} needs top_k or beat_baseline: true (else drop promote)")
    return Promotion(top_k=top_k, beat_baseline=beat)


def parse_score_stage(value: Any, stages: tuple[Stage, ...], where: str) -> str:
    """The stage whose score ranks nodes: named, ungated, and before every gated stage.

    A gate compares the score stage's score, so a gated stage can only come after it.
    """
    names = [s.name for s in stages]
    if value is None:
        name = default_score_stage(stages)
    elif not isinstance(value, str) or value not in names:
        raise TaskError(f"{where}: score_stage {value!r} is not a stage ({', '.join(names)})")
    else:
        name = value
    if name == PRECHECK_STAGE:
        raise TaskError(f"{where}: score_stage cannot be {PRECHECK_STAGE!r} (it reports no score)")
    position = names.index(name)
    if stages[position].promote is not None:
        raise TaskError(
            f"{where}: score stage {name!r} cannot have promote (gates compare its score)"
        )
    early = [s.name for s in stages[:position] if s.promote is not None]
    if early:
        raise TaskError(
            f"{where}: gated stage {early[0]!r} comes before the score stage {name!r}"
            " (its gate compares the score stage's score)"
        )
    return name
