"""task.yaml ``stages:`` / ``score_stage:`` parsing (engine/task.py over engine/task.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.task import Promotion, Resources, Stage, TaskError, TaskSpec, load_task


def make_task(tmp_path: Path, **extra: Any) -> Path:
    """A minimal valid task directory; ``extra`` keys are added to (or replace) task.yaml."""
    (tmp_path / "task.md").write_text("maximize x\n", encoding="utf-8")
    (tmp_path / "initial.py").write_text("X = 1\n", encoding="utf-8")
    (tmp_path / "evaluate.py").write_text("print('ok')\n", encoding="utf-8")
    spec: dict[str, Any] = {
        "name": "toy",
        "description": "task.md",
        "initial_program": "initial.py",
        "evaluator": "evaluate.py",
        "timeout": 50,
    }
    spec.update(extra)
    (tmp_path / "task.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    return tmp_path


CMD = "{python} {evaluator} {program}"


def test_task_without_stages_gets_one_evaluate_stage(tmp_path: Path) -> None:
    task = load_task(make_task(tmp_path))
    assert task.stages == (Stage("evaluate", CMD, 50.0),)
    assert task.score_stage == "evaluate"


def test_precheck_becomes_a_stage_in_front(tmp_path: Path) -> None:
    task = load_task(make_task(tmp_path, precheck_command="true {program}", precheck_timeout=7))
    assert task.stages == (
        Stage("precheck", "true {program}", 7.0),
        Stage("evaluate", CMD, 50.0),
    )
    assert task.score_stage == "evaluate"


def test_directly_built_taskspec_gets_default_stages(tmp_path: Path) -> None:
    task = TaskSpec("t", tmp_path, "d", tmp_path / "i.py", tmp_path / "e.py", timeout=9)
    assert task.stages == (Stage("evaluate", CMD, 9.0),)
    assert task.score_stage == "evaluate"


def test_full_staged_task(tmp_path: Path) -> None:
    stages = [
        {
            "name": "check",
            "command": CMD + " --stage check",
            "timeout": 120,
            "resources": {"cpus": 1, "gpus": 0},
        },
        {
            "name": "explore",
            "command": CMD + " --stage explore",
            "timeout": 900,
            "resources": {"cpus": 2, "gpus": 1},
        },
        {
            "name": "verify",
            "command": CMD + " --stage verify",
            "timeout": 7200,
            "promote": {"top_k": 3},
        },
        {
            "name": "final-2",
            "command": "{python} {evaluator} {workdir} {task_dir}",
            "promote": {"beat_baseline": True, "top_k": 1},
        },
    ]
    task = load_task(make_task(tmp_path, stages=stages, score_stage="explore"))
    assert [s.name for s in task.stages] == ["check", "explore", "verify", "final-2"]
    assert task.stages[0].resources == Resources(1, 0)
    assert task.stages[1].resources == Resources(2, 1)
    assert task.stages[1].timeout == 900.0
    assert task.stages[2].promote == Promotion(top_k=3)
    assert task.stages[3].promote == Promotion(top_k=1, beat_baseline=True)
    assert task.stages[3].timeout == 50.0  # the task's timeout when a stage gives none
    assert task.score_stage == "explore"


def test_default_score_stage_is_the_last_ungated(tmp_path: Path) -> None:
    stages = [
        {"name": "a", "command": CMD},
        {"name": "b", "command": CMD},
        {"name": "c", "command": CMD, "promote": {"beat_baseline": True}},
    ]
    assert load_task(make_task(tmp_path, stages=stages)).score_stage == "b"


def _stage(**kw: Any) -> dict[str, Any]:
    return {"name": "s", "command": CMD, **kw}


BAD_STAGES: list[tuple[str, Any, dict[str, Any], str]] = [
    ("not a list", {"name": "s"}, {}, "non-empty list"),
    ("empty list", [], {}, "non-empty list"),
    ("not a mapping", ["s"], {}, "must be a mapping"),
    ("unknown stage key", [_stage(timout=3)], {}, "unknown key 'timout'"),
    ("upper-case name", [_stage(name="Check")], {}, "stage name must match"),
    ("name with slash", [_stage(name="a/b")], {}, "stage name must match"),
    ("name not a string", [_stage(name=3)], {}, "stage name must match"),
    ("duplicate names", [_stage(), _stage()], {}, "duplicate stage name 's'"),
    ("missing command", [{"name": "s"}], {}, "missing 'command'"),
    ("empty command", [_stage(command=" ")], {}, "non-empty string"),
    ("zero timeout", [_stage(timeout=0)], {}, "finite positive"),
    ("negative timeout", [_stage(timeout=-5)], {}, "finite positive"),
    ("nan timeout", [_stage(timeout=float("nan"))], {}, "finite positive"),
    ("inf timeout", [_stage(timeout=float("inf"))], {}, "finite positive"),
    ("string timeout", [_stage(timeout="10")], {}, "must be a number"),
    ("bool timeout", [_stage(timeout=True)], {}, "must be a number"),
    ("negative gpus", [_stage(resources={"gpus": -1})], {}, "gpus must be >= 0"),
    ("zero cpus", [_stage(resources={"cpus": 0})], {}, "cpus must be >= 1"),
    ("fractional cpus", [_stage(resources={"cpus": 1.5})], {}, "cpus must be an integer"),
    ("unknown resource", [_stage(resources={"gpu": 1})], {}, "unknown key 'gpu'"),
    ("resources not a mapping", [_stage(resources=2)], {}, "must be a mapping"),
    ("promote with neither key", [_stage(), _stage(name="v", promote={})], {}, "needs top_k"),
    (
        "promote only false",
        [_stage(), _stage(name="v", promote={"beat_baseline": False})],
        {},
        "needs top_k",
    ),
    (
        "promote unknown key",
        [_stage(), _stage(name="v", promote={"top": 3})],
        {},
        "unknown key 'top'",
    ),
    (
        "promote top_k zero",
        [_stage(), _stage(name="v", promote={"top_k": 0})],
        {},
        "top_k must be >= 1",
    ),
    (
        "promote beat string",
        [_stage(), _stage(name="v", promote={"beat_baseline": "yes"})],
        {},
        "true or false",
    ),
    ("bad placeholder", [_stage(command="{python} {evalutor}")], {}, "unknown or malformed"),
    ("positional placeholder", [_stage(command="run {0}")], {}, "unknown or malformed"),
    ("unbalanced brace", [_stage(command="run {program")], {}, "unknown or malformed"),
    ("unknown score_stage", [_stage()], {"score_stage": "verify"}, "is not a stage"),
    ("score_stage not a string", [_stage()], {"score_stage": 1}, "is not a stage"),
    (
        "gated score stage",
        [_stage(), _stage(name="v", promote={"top_k": 2})],
        {"score_stage": "v"},
        "cannot have promote",
    ),
    ("all stages gated", [_stage(promote={"top_k": 2})], {}, "cannot have promote"),
    (
        "gate before score stage",
        [_stage(promote={"top_k": 2}), _stage(name="b")],
        {},
        "comes before the score stage",
    ),
    (
        "precheck as score stage",
        [_stage(name="precheck"), _stage(name="b")],
        {"score_stage": "precheck"},
        "cannot be 'precheck'",
    ),
    ("stages with evaluate_command", [_stage()], {"evaluate_command": CMD}, "either stages"),
    ("stages with precheck_command", [_stage()], {"precheck_command": CMD}, "either stages"),
]


@pytest.mark.parametrize(
    ("stages", "extra", "message"),
    [pytest.param(s, e, m, id=i) for i, s, e, m in BAD_STAGES],
)
def test_bad_stages_are_one_line_errors(
    tmp_path: Path, stages: Any, extra: dict[str, Any], message: str
) -> None:
    with pytest.raises(TaskError) as info:
        load_task(make_task(tmp_path, stages=stages, **extra))
    text = str(info.value)
    assert message in text
    assert "\n" not in text
    assert "task.yaml" in text


def test_score_stage_without_stages_must_be_evaluate(tmp_path: Path) -> None:
    assert load_task(make_task(tmp_path, score_stage="evaluate")).score_stage == "evaluate"
    with pytest.raises(TaskError, match="is not a stage"):
        load_task(make_task(tmp_path, score_stage="explore"))
