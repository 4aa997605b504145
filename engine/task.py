"""A task: the problem a run works on, as described by a task directory.

A task directory holds ``task.yaml`` (what to run), ``task.md`` (the problem
statement), the initial program, the evaluator, and optionally ``cognition.yaml``
(seed knowledge) and ``prompts/`` (template overrides). Built-in domains under
``domains/`` are task directories too.

Everything in ``task.yaml`` is checked before a run directory exists (field checks in
``engine/task_checks.py``, the ``stages:`` list in ``engine/task_stages.py``): an unknown
key (a typo), a wrong type, a text file that is not UTF-8, YAML built to exhaust memory or
recursion (``engine/yaml_input.py``), a ``name`` or ``program_name``
that would leave its directory, or a malformed ``stages:`` list is a one-line
``TaskError`` rather than a surprise hours into a run.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import domains
from engine.stages import DEFAULT_STAGE, Stage
from engine.task_checks import (
    TaskError,
    check_program_name,
    check_task_name,
    check_template,
    is_dir,
    is_file,
    no_unknown,
    one_line,
    positive_number,
    read_text_file,
    text,
)
from engine.task_stages import default_stages, parse_score_stage, parse_stages
from engine.yaml_input import load_yaml

__all__ = ["TaskError", "TaskSpec", "builtin_tasks", "load_task", "resolve_task"]

DEFAULT_COMMAND = "{python} {evaluator} {program}"
TASK_KEYS = frozenset(
    {
        "name",
        "description",
        "initial_program",
        "evaluator",
        "evaluate_command",
        "program_name",
        "timeout",
        "direction",
        "precheck_command",
        "precheck_timeout",
        "settings",
        "stages",
        "score_stage",
    }
)


@dataclass
class TaskSpec:
    """A checked task. ``stages`` is never empty: a task without ``stages:`` gets
    ``default_stages`` (``precheck`` when it has a precheck command, then ``evaluate``)."""

    name: str
    directory: Path
    description: str
    initial_program: Path
    evaluator: Path
    evaluate_command: str = DEFAULT_COMMAND
    program_name: str = "program.py"
    timeout: float = 300.0
    direction: str = "maximize"
    precheck_command: str | None = None
    precheck_timeout: float = 30.0
    settings: dict[str, Any] = field(default_factory=dict)
    stages: tuple[Stage, ...] = ()
    score_stage: str = DEFAULT_STAGE

    def __post_init__(self) -> None:
        if not self.stages:
            self.stages = default_stages(
                self.evaluate_command, self.timeout, self.precheck_command, self.precheck_timeout
            )

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"

    @property
    def cognition_file(self) -> Path | None:
        path = self.directory / "cognition.yaml"
        return path if path.is_file() else None

    @property
    def prompts_dir(self) -> Path | None:
        path = self.directory / "prompts"
        return path if path.is_dir() else None

    def initial_code(self) -> str:
        return self.initial_program.read_text(encoding="utf-8")

    def command_for(self, program: Path, workdir: Path, template: str | None = None) -> str:
        """The shell command that evaluates ``program`` (placeholders filled, paths quoted)."""
        values = {
            "python": shlex.quote(sys.executable),
            "evaluator": shlex.quote(str(self.evaluator)),
            "program": shlex.quote(str(program)),
            "workdir": shlex.quote(str(workdir)),
            "task_dir": shlex.quote(str(self.directory)),
        }
        return (template or self.evaluate_command).format(**values)


def builtin_tasks() -> dict[str, Path]:
    """Built-in domain name -> its task directory."""
    root = Path(domains.__file__).parent
    return {p.name: p for p in sorted(root.iterdir()) if p.is_dir() and (p / "task.yaml").is_file()}


def resolve_task(name_or_path: str) -> TaskSpec:
    """A built-in domain name or a path to a task directory -> a checked TaskSpec."""
    builtins = builtin_tasks()
    if name_or_path in builtins:
        return load_task(builtins[name_or_path])
    path = Path(name_or_path)
    if is_dir(path):
        return load_task(path)
    known = ", ".join(builtins) or "none"
    raise TaskError(
        f"unknown task {name_or_path!r}: not a built-in domain ({known}) nor a directory"
    )


def load_task(directory: Path) -> TaskSpec:
    """Read and check ``directory/task.yaml`` and the files it names."""
    try:
        directory = directory.resolve()
    except (OSError, RuntimeError, ValueError) as exc:
        raise TaskError(f"{directory}: not a usable task directory ({one_line(exc)})") from None
    spec_file = directory / "task.yaml"
    if not is_file(spec_file):
        raise TaskError(f"{directory} has no task.yaml")
    raw = load_yaml(spec_file, TaskError, "task file")  # size, encoding, aliases, nesting
    if not isinstance(raw, dict):
        raise TaskError(f"{spec_file}: expected a mapping at the top level")
    where = str(spec_file)
    no_unknown(raw, TASK_KEYS, where)

    def need_file(key: str) -> Path:
        value = raw.get(key)
        if value is None or value == "":
            raise TaskError(f"{spec_file}: missing {key!r}")
        if not isinstance(value, str) or "\x00" in value:
            raise TaskError(f"{spec_file}: {key} must be a file name")
        path = directory / value
        if not is_file(path):
            raise TaskError(f"{spec_file}: {key} file {value!r} not found")
        return path.resolve()

    initial = need_file("initial_program")
    evaluator = need_file("evaluator")
    description_file = need_file("description")
    description = read_text_file(description_file, "description")
    read_text_file(initial, "initial program")

    direction = raw.get("direction", "maximize")
    if direction not in ("maximize", "minimize"):
        raise TaskError(f"{spec_file}: direction must be 'maximize' or 'minimize'")
    timeout = positive_number(raw.get("timeout", 300), f"{where}: timeout")
    command = text(raw.get("evaluate_command", DEFAULT_COMMAND), f"{where}: evaluate_command")
    check_template(command, f"{where}: evaluate_command")
    precheck = raw.get("precheck_command")
    if precheck is not None:
        precheck = text(precheck, f"{where}: precheck_command")
        check_template(precheck, f"{where}: precheck_command")
    precheck_timeout = positive_number(
        raw.get("precheck_timeout", 30), f"{where}: precheck_timeout"
    )
    settings = raw.get("settings")
    if settings is not None and not isinstance(settings, dict):
        raise TaskError(f"{spec_file}: settings must be a mapping")

    if "stages" in raw:
        legacy = ("evaluate_command", "precheck_command", "precheck_timeout")
        mixed = [k for k in legacy if k in raw]
        if mixed:
            raise TaskError(
                f"{spec_file}: give either stages: or {mixed[0]}, not both "
                "(a stage's command replaces it)"
            )
        stages = parse_stages(raw["stages"], timeout, where)
    else:
        stages = default_stages(command, timeout, precheck, precheck_timeout)
    score_stage = parse_score_stage(raw.get("score_stage"), stages, where)

    return TaskSpec(
        name=check_task_name(raw.get("name", directory.name), where),
        directory=directory,
        description=description,
        initial_program=initial,
        evaluator=evaluator,
        evaluate_command=command,
        program_name=check_program_name(raw.get("program_name", initial.name), where),
        timeout=timeout,
        direction=direction,
        precheck_command=precheck,
        precheck_timeout=precheck_timeout,
        settings=dict(settings or {}),
        stages=stages,
        score_stage=score_stage,
    )
