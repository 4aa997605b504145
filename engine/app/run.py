"""``asi-evolve run``: from a task, flags and a configuration to a running engine.

Everything is checked before the run directory or its database is created (bad input is
one line and exit 2; a run directory is never overwritten): the configuration is parsed
into the run's plan (``engine/app/plan.py``) and what the run is built from is prepared by
the composition root (``engine/app/compose.py``). Then a new run is created (atomically) or
an existing one resumed, and the composition root runs the engine.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path
from typing import Any

from engine.agents.llm.settings import redact_config
from engine.app import compose
from engine.app.plan import make_plan
from engine.app.usage import UsageError
from engine.config import RunConfig, from_dict, load_file
from engine.store import readonly, standing
from engine.store.lock import LOCK_NAME, RunLock
from engine.store.run_store import BUILDING_NAME, DB_NAME, RunStore, StoreError
from engine.task import TaskSpec, resolve_task

# What a kill -9 during the creation of a run can leave; such a directory starts afresh.
CREATION_LEFTOVERS = {LOCK_NAME, BUILDING_NAME, f"{BUILDING_NAME}-journal", ".write-test"}
UNSTARTED_FILES = {DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm"}


def cmd_run(args: argparse.Namespace) -> int:
    task = resolve_task(args.task)
    run_dir: Path = args.run_dir or Path("runs") / task.name
    flags = _flag_overrides(args)
    if args.tui:
        return compose.run_with_tui(args.argv, run_dir)
    unstarted = (run_dir / DB_NAME).exists() and _never_started(run_dir)
    if (run_dir / DB_NAME).exists() and not unstarted:
        return _resume(task, run_dir, args, flags)
    if run_dir.exists() and (not run_dir.is_dir() or not _fresh(run_dir, unstarted)):
        raise UsageError(f"{run_dir} exists and is not a run directory; choose another --run-dir")
    config = load_file(args.config) if args.config else RunConfig()
    plan = make_plan(from_dict(flags, config, origin="command line"))
    ready = compose.prepare(plan, task, run_dir, new_run=True)
    made = _make_run_dir(run_dir)

    def setup(store: RunStore) -> None:
        """What makes the new database a run; committed before it is named evolve.db."""
        store.set_meta("task", task.name)
        store.set_meta("task_dir", str(task.directory))
        store.set_meta("direction", task.direction)
        store.set_meta("created_at", time.time())
        store.set_meta("config", redact_config(plan.config.to_dict()))
        store.set_meta("steps_total", plan.config.steps)
        store.set_meta("llm_mode", plan.mode)
        store.set_meta(standing.META_KEY, stage_names(task).to_meta())
        store.add_event("run", f"new run of {task.name} ({plan.config.steps} steps)")
        compose.seed(store, plan, ready)  # a new run only, never on resume

    try:
        with RunLock(run_dir):
            _set_aside_unstarted(run_dir)
            store = RunStore.create(run_dir, setup)
            ready.attach(store)
            print(f"ASI-Evolve: new run of {task.name} in {run_dir}")
            return compose.execute(store, task, run_dir, plan, ready, args.quiet)
    except BaseException:
        if made:  # a run that could not be created leaves no empty directory of ours
            with contextlib.suppress(OSError):
                run_dir.rmdir()
        raise


def _resume(task: TaskSpec, run_dir: Path, args: argparse.Namespace, flags: dict) -> int:
    with RunLock(run_dir):
        store = RunStore.open(run_dir)
        stored_task = store.get_meta("task")
        if stored_task != task.name:
            raise UsageError(f"{run_dir} holds a run of task {stored_task!r}, not {task.name!r}")
        config = from_dict(store.get_meta("config", {}), origin=f"{run_dir} stored config")
        if args.config:
            config = load_file(args.config, config)
        plan = make_plan(from_dict(flags, config, origin="command line"), flags.get("llm"))
        done = store.steps_done()
        _check_budget(run_dir, plan.config.steps, done, store.get_meta("steps_total"), flags)
        ready = compose.prepare(plan, task, run_dir, new_run=False)
        ready.attach(store)
        stored = redact_config(plan.config.to_dict())
        changes = _changed(store.get_meta("config", {}), stored)
        store.set_meta("config", stored)
        store.set_meta("steps_total", plan.config.steps)
        store.set_meta("llm_mode", plan.mode)
        store.set_meta(standing.META_KEY, stage_names(task).to_meta())
        store.add_event("run", "resumed" + (f" with changes: {changes}" if changes else ""))
        best = store.standings(task.maximize).best()
        best_text = f", best {best.describe()}" if best else ""
        print(
            f"ASI-Evolve: resuming the run in {run_dir}: {done}/{plan.config.steps} steps done"
            f"{best_text}"
        )
        return compose.execute(store, task, run_dir, plan, ready, args.quiet)


def stage_names(task: TaskSpec) -> standing.StageNames:
    """The task's score and verify stages, recorded so that readers rank the run's best."""
    return standing.StageNames.of_task([s.name for s in task.stages], task.score_stage)


def _check_budget(run_dir: Path, steps: int, done: int, stored_total: object, flags: dict) -> None:
    """Refuse (exit 2, before anything is written) a resume whose total is below the steps
    already done: ``--steps`` is the run's total, and a smaller one would silently do
    nothing, most likely because it was meant as a number of steps to add."""
    if steps >= done:
        return
    asked = f"--steps {steps}" if "steps" in flags else f"the configuration's steps: {steps}"
    of = f"/{stored_total}" if isinstance(stored_total, int) else ""
    raise UsageError(
        f"{run_dir} already has {done}{of} steps done; {asked} asks for no more: nothing to run "
        f"(--steps is the run's total, not steps to add: give --steps {done + 1} or more "
        "to extend it)"
    )


def _fresh(run_dir: Path, unstarted: bool = False) -> bool:
    """The directory holds nothing but what an interrupted creation leaves (a kill -9 right
    after the lock or the unfinished database was made): the run starts afresh there."""
    allowed = CREATION_LEFTOVERS | (UNSTARTED_FILES if unstarted else set())
    return all(entry.name in allowed for entry in run_dir.iterdir())


def _never_started(run_dir: Path) -> bool:
    """An ``evolve.db`` of an older version killed before it recorded its task: no task,
    no node. It is set aside (never deleted) and the run is created again."""
    try:
        store = RunStore.open(run_dir, readonly=True)
    except StoreError:
        return False
    try:
        return store.get_meta("task") is None and not any(store.status_counts().values())
    finally:
        store.close()


def _set_aside_unstarted(run_dir: Path) -> None:
    """(Under the run lock) rename a never-started database to ``*.unstarted-<time>``."""
    if not (run_dir / DB_NAME).exists() or not _never_started(run_dir):
        return
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for name in UNSTARTED_FILES:
        old = run_dir / name
        if old.exists():
            old.rename(run_dir / f"{name}.unstarted-{stamp}")


def _make_run_dir(run_dir: Path) -> bool:
    """Create the run directory, or say in one line why it cannot be (nothing is left).
    Returns whether it was created here."""
    if problem := readonly.path_too_long(run_dir):
        raise UsageError(problem)
    for parent in run_dir.resolve().parents:
        if parent.exists() and not parent.is_dir():
            raise UsageError(f"--run-dir {run_dir}: {parent} is a file, not a directory")
    made = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise UsageError(f"cannot create the run directory {run_dir}: {reason}") from None
    return made


def _flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    flags: dict[str, Any] = {}
    if args.steps is not None:
        if args.steps < 0:
            raise UsageError(f"--steps must be >= 0, got {args.steps}")
        flags["steps"] = args.steps
    if args.workers is not None:
        if args.workers < 1:
            raise UsageError(f"--workers must be >= 1, got {args.workers}")
        flags["workers"] = args.workers
    if args.seed is not None:
        flags["seed"] = args.seed
    if args.llm is not None:
        flags["llm"] = args.llm
    if args.sampler is not None:
        flags["sampler"] = {"name": args.sampler}
    if getattr(args, "no_analyzer", False):
        flags["use_analyzer"] = False
    if getattr(args, "no_cognition", False):
        flags["use_cognition"] = False
    return flags


def _changed(old: dict, new: dict, prefix: str = "") -> str:
    diffs = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            inner = _changed(a, b, f"{prefix}{key}.")
            if inner:
                diffs.append(inner)
        elif a != b:
            diffs.append(f"{prefix}{key} {a!r} -> {b!r}")
    return ", ".join(diffs)
