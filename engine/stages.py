"""Staged evaluation: what a task's ``stages:`` list means.

Real experiments are expensive, so a candidate goes through stages of rising cost
(e.g. ``check`` in seconds, ``explore`` in minutes, ``verify`` in hours) and stops at the
first one that fails. Each stage is a shell command with its own wall-clock limit and
resource request; a stage may be *gated* (``promote``) so that only promising nodes pay
for it. A task without ``stages:`` has one stage, ``evaluate``, built from
``evaluate_command`` and ``timeout`` (and a ``precheck`` stage in front of it when the
task has a ``precheck_command``), so old tasks keep working unchanged.

task.yaml::

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

Every stage writes the usual ``results.json`` (see ``engine/execution/engineer.py``) to
``$ASI_EVOLVE_RESULTS``; only the score stage must report a score. The node's score is
the score stage's; the scores of other stages are kept apart in
``node.results["stages"][name]`` and never mixed into the ranking.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
DEFAULT_STAGE = "evaluate"
PRECHECK_STAGE = "precheck"


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
