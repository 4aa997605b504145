"""Run wiring: from a checked configuration and task to the Engineer, its slots and its log.

The command line decides *what* to run; this module decides *how* the experiments of a
run are executed on this machine (local slots or a Ray cluster, per-stage resource
overrides, the score stage's timeout override) and where the engine's own log goes.
Everything here is checked before the engine starts, so a request this machine cannot
meet is one line and exit 2, not a failure hours into a run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from pathlib import Path

from engine.config import ConfigError, RunConfig
from engine.execution.engineer import Engineer, Limits
from engine.execution.reaper import Reaper
from engine.execution.resources import ResourceError, SlotPool, discover_gpus
from engine.execution.sandbox import Sandbox, SandboxSettings
from engine.task import Resources, Stage, TaskSpec

LOG_NAME = "engine.log"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclasses.dataclass
class Execution:
    """How this run's experiments execute: the Engineer, the slot pool (None on Ray),
    and the lines worth telling the user (e.g. "no GPU here: explore runs on the CPU")."""

    engineer: Engineer
    pool: SlotPool | None
    notes: list[str]


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


def plan_execution(
    task: TaskSpec,
    config: RunConfig,
    run_dir: Path,
    sandbox: Sandbox,
    secret_env: tuple[str, ...],
) -> Execution:
    """Build the Engineer for this run; changes ``task.stages`` to what will really run."""
    e = config.engineer
    limits = Limits(
        cpu_seconds=e.cpu_seconds, memory_mb=e.memory_mb, output_tail_bytes=e.output_tail_bytes
    )
    stages = plan_stages(task, config)
    notes: list[str] = []
    if e.backend == "ray":
        from engine.execution.ray_backend import RayEngineer, RaySettings

        task.stages = stages
        confine = SandboxSettings(e.sandbox, e.sandbox_network, tuple(e.sandbox_writable))
        engineer: Engineer = RayEngineer(
            task,
            limits,
            secret_env=secret_env,
            settings=RaySettings(**config.ray),
            sandbox=confine,
        )
        address = config.ray.get("address", "auto")
        notes.append(f"engineer: Ray cluster at {address} (Ray places each stage run)")
        notes.append(f"sandbox on Ray workers: {e.sandbox}, resolved on each worker")
        return Execution(engineer, None, notes)
    try:
        gpus = discover_gpus(e.gpus)
        pool = SlotPool(gpus, e.cpus or os.cpu_count() or 1)
        fitted, notes = pool.fit(stages)
    except ResourceError as exc:
        raise ConfigError(str(exc)) from None
    task.stages = tuple(fitted)
    gpu_text = f"GPUs {','.join(gpus)}" if gpus else "no GPU"
    notes.insert(0, f"engineer: local slots: {pool.cpus} CPUs, {gpu_text}")
    reaper = Reaper(run_dir)
    engineer = Engineer(task, limits, secret_env=secret_env, sandbox=sandbox, reaper=reaper)
    return Execution(engineer, pool, notes)


class _LogFile(logging.FileHandler):
    """``engine.log``, where a record that cannot be written (a full disk) is dropped: not a
    traceback on the console for every record (the run's own failure line says why)."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        return


def start_log(run_dir: Path) -> logging.Handler:
    """Send the engine's log records (warnings, tracebacks) to ``RUN_DIR/engine.log``."""
    handler = _LogFile(run_dir / LOG_NAME, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    return handler


def stop_log(handler: logging.Handler) -> None:
    logging.getLogger().removeHandler(handler)
    with contextlib.suppress(OSError):  # a full disk refuses the last flush: said already
        handler.close()
