"""A task: the problem a run works on, as its task directory describes it (one module).

A task directory holds ``task.yaml`` (what to run), ``task.md`` (the problem statement),
the initial program, the evaluator, and optionally ``cognition.yaml`` (seed knowledge) and
``prompts/`` (template overrides). Built-in domains under ``domains/`` are task directories
too. Everything in ``task.yaml`` is checked before a run directory exists: an unknown key (a
typo), a wrong type, a text file that is not UTF-8, YAML built to exhaust memory or recursion
(``engine/yaml_input.py``), a ``name`` or ``program_name`` that would leave its directory, or
a malformed ``stages:`` list is a one-line ``TaskError``, not a surprise hours into a run.

Staged evaluation. Real experiments are expensive, so a candidate goes through stages of
rising cost (``check`` in seconds, ``explore`` in minutes, ``verify`` in hours) and stops at
the first one that fails. Each stage is a shell command with its own wall-clock limit and
resource request; a stage may be *gated* (``promote``) so that only promising nodes pay for
it. A task without ``stages:`` has one stage, ``evaluate``, built from ``evaluate_command``
and ``timeout`` (and a ``precheck`` stage in front of it when the task has a
``precheck_command``), so old tasks keep working unchanged::

    stages:
      - name: check                 # [a-z][a-z0-9_-]*, unique
        command: "{python} {evaluator} --stage check {program}"
        timeout: 120                # seconds
        resources: {cpus: 1, gpus: 0}
      - name: explore
        command: "{python} {evaluator} --stage explore {program}"
        timeout: 900
        resources: {cpus: 2, gpus: 1}
      - name: verify
        command: "{python} {evaluator} --stage verify {program}"
        timeout: 7200
        promote: {top_k: 3}         # or {beat_baseline: true}
    score_stage: explore            # default: the last stage without ``promote``

Every stage writes the usual ``results.json`` (``engine/execution/engineer.py``) to
``$ASI_EVOLVE_RESULTS``; only the score stage must report a score. The node's score is the
score stage's; other stages' scores are kept apart in ``node.results["stages"][name]``.
"""

from __future__ import annotations

import math
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import domains
from engine.text import one_line
from engine.yaml_input import load_yaml

__all__ = [
    "DEFAULT_STAGE",
    "PRECHECK_STAGE",
    "Promotion",
    "Resources",
    "Stage",
    "TaskError",
    "TaskSpec",
    "builtin_tasks",
    "load_task",
    "resolve_task",
]

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
DEFAULT_STAGE = "evaluate"
PRECHECK_STAGE = "precheck"
DEFAULT_COMMAND = "{python} {evaluator} {program}"
PLACEHOLDERS = ("python", "evaluator", "program", "workdir", "task_dir")
MAX_NAME_CHARS = 100
MAX_STAGES = 32
# Files the engine writes next to the program (``<stage>_`` prefixed for named stages).
OUTPUT_NAMES = ("results.json", "stdout.txt", "stderr.txt")


class TaskError(Exception):
    """The task cannot be used; the message is a one-line explanation."""


@dataclass(frozen=True)
class Resources:
    """What one running stage holds while it runs.

    cpus: CPU slots; the evaluator also gets ``OMP_NUM_THREADS`` (and friends) = cpus.
    gpus: GPU slots; the evaluator gets ``CUDA_VISIBLE_DEVICES`` set to the granted
      device ids (empty when 0, so a CPU stage never touches a GPU by accident).
    """

    cpus: int = 1
    gpus: int = 0


@dataclass(frozen=True)
class Promotion:
    """Which nodes a gated stage runs for (both set: both must hold).

    top_k: the node's score-stage score ranks among the best ``top_k`` finished nodes
      seen so far (the node itself included).
    beat_baseline: the node's score-stage score is better than the initial program's.
    """

    top_k: int | None = None
    beat_baseline: bool = False


@dataclass(frozen=True)
class Stage:
    """One step of a candidate's evaluation.

    name: shown in events, metrics and file names (``<name>.stdout.txt``).
    command: a shell command template with the placeholders ``{python}``,
      ``{evaluator}``, ``{program}``, ``{workdir}`` and ``{task_dir}``.
    timeout: wall-clock limit in seconds; the whole process tree is killed after it.
    resources: the slots held while the command runs.
    promote: None = every node that passed the earlier stages runs it.
    """

    name: str
    command: str
    timeout: float
    resources: Resources = field(default_factory=Resources)
    promote: Promotion | None = None


def default_score_stage(stages: tuple[Stage, ...] | list[Stage]) -> str:
    """The last stage every node runs: the one whose score ranks nodes by default."""
    ungated = [s.name for s in stages if s.promote is None]
    return ungated[-1] if ungated else stages[-1].name


def check_task_name(value: Any, where: str) -> str:
    """A task name is one plain path component (it names ``runs/<name>``)."""
    if not isinstance(value, str) or not value.strip():
        raise TaskError(f"{where}: name must be a non-empty string")
    if (
        len(value) > MAX_NAME_CHARS
        or any(c in "/\\" or ord(c) < 32 or ord(c) == 127 for c in value)
        or value.startswith((".", "-"))
        or value != value.strip()
    ):
        raise TaskError(
            f"{where}: name {value[:MAX_NAME_CHARS]!r} must be one plain directory name "
            f"(no '/', no leading '.' or '-', at most {MAX_NAME_CHARS} chars)"
        )
    return value


def check_program_name(value: Any, where: str) -> str:
    """``program_name`` is a relative path that stays inside the node's working directory."""
    if not isinstance(value, str) or not value.strip():
        raise TaskError(f"{where}: program_name must be a non-empty file name")
    if "\x00" in value or "\\" in value or len(value) > 255:
        raise TaskError(f"{where}: program_name {value[:80]!r} is not a usable file name")
    parts = value.split("/")
    if PurePosixPath(value).is_absolute() or any(p in ("", ".", "..") for p in parts):
        raise TaskError(
            f"{where}: program_name {value!r} must stay inside the working directory "
            "(a relative path without '..')"
        )
    if parts[-1].endswith(OUTPUT_NAMES):
        raise TaskError(f"{where}: program_name {value!r} clashes with the engine's output files")
    return value


def check_template(template: str, where: str) -> None:
    """Every ``{placeholder}`` is one the engine fills."""
    try:
        template.format(**{key: "" for key in PLACEHOLDERS})
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        raise TaskError(
            f"{where} has an unknown or malformed placeholder ({one_line(exc)}); "
            f"known: {', '.join('{' + k + '}' for k in PLACEHOLDERS)}"
        ) from None


def positive_number(value: Any, where: str) -> float:
    """A finite number > 0 (YAML ``.nan``, ``.inf``, booleans and strings are refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TaskError(f"{where} must be a number, got {short(value)}")
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise TaskError(f"{where} must be a finite positive number, got {short(value)}")
    return number


def read_text_file(path: Path, what: str) -> str:
    """A text file's content; binary (NUL bytes) or non-UTF-8 content is a TaskError."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TaskError(f"{path}: cannot read the {what} ({one_line(exc)})") from None
    if b"\x00" in data:
        raise TaskError(f"{path}: the {what} is a binary file (it has NUL bytes)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TaskError(
            f"{path}: the {what} is not UTF-8 text (bad byte at offset {exc.start})"
        ) from None


def integer(value: Any, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TaskError(f"{where} must be an integer, got {short(value)}")
    if value < minimum:
        raise TaskError(f"{where} must be >= {minimum}, got {value}")
    return value


def text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise TaskError(f"{where} must be a non-empty string")
    if "\x00" in value:
        raise TaskError(f"{where} must not contain NUL bytes")
    return value


def no_unknown(mapping: dict[Any, Any], known: frozenset[str], where: str) -> None:
    unknown = [k for k in mapping if k not in known]
    if unknown:
        raise TaskError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")


def is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ------------------------------------------------------------------ stages:
STAGE_KEYS = frozenset({"name", "command", "timeout", "resources", "promote"})
RESOURCE_KEYS = frozenset({"cpus", "gpus"})
PROMOTE_KEYS = frozenset({"top_k", "beat_baseline"})


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


# ------------------------------------------------------------------ the task
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
