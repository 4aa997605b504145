"""A task: the problem a run works on, as described by a task directory.

A task directory holds ``task.yaml`` (what to run), ``task.md`` (the problem
statement), the initial program, the evaluator, and optionally ``cognition.yaml``
(seed knowledge) and ``prompts/`` (template overrides). Built-in domains under
``domains/`` are task directories too.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

import domains

DEFAULT_COMMAND = "{python} {evaluator} {program}"


class TaskError(Exception):
    """The task cannot be used; the message is a one-line explanation."""


@dataclass
class TaskSpec:
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
        import shlex

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
    if path.is_dir():
        return load_task(path)
    known = ", ".join(builtins) or "none"
    raise TaskError(
        f"unknown task {name_or_path!r}: not a built-in domain ({known}) nor a directory"
    )


def load_task(directory: Path) -> TaskSpec:
    directory = directory.resolve()
    spec_file = directory / "task.yaml"
    if not spec_file.is_file():
        raise TaskError(f"{directory} has no task.yaml")
    try:
        raw = yaml.safe_load(spec_file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise TaskError(f"{spec_file}: malformed YAML ({_one_line(exc)})") from None
    if not isinstance(raw, dict):
        raise TaskError(f"{spec_file}: expected a mapping at the top level")

    def need_file(key: str) -> Path:
        value = raw.get(key)
        if not value or not isinstance(value, str):
            raise TaskError(f"{spec_file}: missing {key!r}")
        path = (directory / value).resolve()
        if not path.is_file():
            raise TaskError(f"{spec_file}: {key} file {value!r} not found")
        return path

    initial = need_file("initial_program")
    evaluator = need_file("evaluator")
    description_file = need_file("description")
    direction = str(raw.get("direction", "maximize"))
    if direction not in ("maximize", "minimize"):
        raise TaskError(f"{spec_file}: direction must be 'maximize' or 'minimize'")
    timeout = _positive(raw.get("timeout", 300), "timeout", spec_file)
    command = str(raw.get("evaluate_command", DEFAULT_COMMAND))
    _check_template(command, spec_file, "evaluate_command")
    precheck = raw.get("precheck_command")
    if precheck is not None:
        _check_template(str(precheck), spec_file, "precheck_command")
    return TaskSpec(
        name=str(raw.get("name") or directory.name),
        directory=directory,
        description=description_file.read_text(encoding="utf-8"),
        initial_program=initial,
        evaluator=evaluator,
        evaluate_command=command,
        program_name=str(raw.get("program_name", initial.name)),
        timeout=timeout,
        direction=direction,
        precheck_command=str(precheck) if precheck is not None else None,
        precheck_timeout=_positive(raw.get("precheck_timeout", 30), "precheck_timeout", spec_file),
        settings=dict(raw.get("settings") or {}),
    )


def _positive(value: Any, key: str, spec_file: Path) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TaskError(f"{spec_file}: {key} must be a number") from None
    if number <= 0:
        raise TaskError(f"{spec_file}: {key} must be positive")
    return number


def _check_template(template: str, spec_file: Path, key: str) -> None:
    try:
        template.format(python="", evaluator="", program="", workdir="", task_dir="")
    except (KeyError, IndexError, ValueError) as exc:
        raise TaskError(f"{spec_file}: {key} has an unknown placeholder {exc}") from None


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())
