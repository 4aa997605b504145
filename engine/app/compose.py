"""The composition root: the one module that wires the engine, the cognition base and the TUI.

``asi-evolve run`` checks its input and creates or opens the run (``engine/app/run.py``);
everything the run then needs is built here and nowhere else: the agents, the sandbox and
the Engineer with its slots (from the run's plan, ``engine/app/plan.py``), the cognition
retriever, the sampler and the Engine, the engine's log and signal handlers; and the TUI
commands. No other module of ``engine/`` imports ``cognition`` or ``tui``: the loop, the
store and the execution rooms only know the small protocols their parts implement.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cognition import setup as cognition_setup
from cognition.items import CognitionError
from cognition.items import Draft as KnowledgeDraft
from engine.agents import setup as agent_setup
from engine.agents.base import Agents
from engine.app.plan import RunPlan, plan_stages
from engine.config import ConfigError
from engine.execution.engineer import Engineer, Limits
from engine.execution.launcher import Launcher
from engine.execution.launcher import available as launcher_available
from engine.execution.reaper import Reaper, kill_orphans, subreaper
from engine.execution.resources import ResourceError, SlotPool, discover_gpus
from engine.execution.sandbox import Sandbox, make_sandbox, private_memory
from engine.loop.engine import Engine
from engine.samplers import make_sampler
from engine.store.backup import Backups
from engine.store.reader import RunNotFound
from engine.store.run_store import RunStore
from engine.task import TaskSpec

LOG_NAME = "engine.log"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Failures that are the user's input (one line, exit 2), from the parts wired here.
INPUT_ERRORS: tuple[type[Exception], ...] = (CognitionError, RunNotFound)


@dataclass
class Execution:
    """How this run's experiments execute: the Engineer, the slot pool (None on Ray), and
    the lines worth telling the user (e.g. "no GPU here: explore runs on the CPU")."""

    engineer: Engineer
    pool: SlotPool | None
    notes: list[str]


@dataclass
class Prepared:
    """What a run is built from, checked before anything is written.

    agents: the run's agents; attach: gives them the run store (LLM call records) once it
    exists; seeds: the task's knowledge for a new run; execution: Engineer and slots;
    recorder: the LLM agents' ``CallRecorder`` (None offline), told where console lines go.
    """

    agents: Agents
    attach: Callable[[Any], None]
    seeds: list[KnowledgeDraft]
    execution: Execution
    recorder: Any = None


def prepare(plan: RunPlan, task: TaskSpec, run_dir: Path, new_run: bool) -> Prepared:
    """Agents, knowledge seeds and execution, each refused in one line (exit 2) if unusable."""
    recorder = None
    if plan.mode == "openai":
        agents, recorder = agent_setup.build_llm_agents(plan, task)
        attach = recorder.attach
    else:
        agents, attach = agent_setup.build_offline_agents(plan.config.seed), lambda store: None
    seeds = cognition_setup.prepare(
        plan.cognition, plan.novelty, plan.config.use_cognition, task if new_run else None
    )
    sandbox = make_sandbox(plan.sandbox, run_dir, task.directory)
    execution = plan_execution(task, plan, run_dir, sandbox)
    execution.notes.insert(0, sandbox.describe())
    return Prepared(agents, attach, seeds, execution, recorder)


def seed(store: RunStore, plan: RunPlan, prepared: Prepared) -> None:
    """(A new run, while its database is built) the task's knowledge, never on resume."""
    cognition_setup.seed(store, plan.cognition, prepared.seeds)


def plan_execution(task: TaskSpec, plan: RunPlan, run_dir: Path, sandbox: Sandbox) -> Execution:
    """Build the Engineer for this run; changes ``task.stages`` to what will really run."""
    e = plan.config.engineer
    limits = Limits(
        cpu_seconds=e.cpu_seconds, memory_mb=e.memory_mb, output_tail_bytes=e.output_tail_bytes
    )
    stages = plan_stages(task, plan.config)
    if e.backend == "ray":
        from engine.execution.ray_backend import NO_CLUSTER_HINT, RayEngineer, find_auto_cluster

        # Refused here, before the run directory exists: Ray itself would only fail at the
        # first stage run, in the new run's first candidate.
        if plan.ray.address == "auto" and find_auto_cluster() is None:
            raise ConfigError(
                "engineer.backend: ray with ray: {address: auto}, but no Ray cluster is "
                f"running here (RAY_ADDRESS unset, no ray_current_cluster file): {NO_CLUSTER_HINT}"
            )
        task.stages = stages
        engineer: Engineer = RayEngineer(
            task, limits, secret_env=plan.secret_env, settings=plan.ray, sandbox=plan.sandbox
        )
        notes = [
            f"engineer: Ray cluster at {plan.ray.address} (Ray places each stage run)",
            f"sandbox on Ray workers: {e.sandbox}, resolved on each worker",
        ]
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
    engineer = Engineer(
        task,
        limits,
        secret_env=plan.secret_env,
        sandbox=sandbox,
        reaper=Reaper(run_dir),
        # started on the first supervised launch only (never under bubblewrap without rlimits)
        launcher=Launcher() if launcher_available() else None,
    )
    return Execution(engineer, pool, notes)


def execute(
    store: RunStore, task: TaskSpec, run_dir: Path, plan: RunPlan, ready: Prepared, quiet: bool
) -> int:
    """Build the engine on ``store`` and run it until its budget is spent or it stops."""
    config, agents = plan.config, ready.agents
    if plan.mode == "offline":
        print(
            "researcher: built-in OFFLINE researcher (numeric-literal mutation; no LLM "
            "endpoint configured) · analyzer: rule-based"
        )
    else:
        print(f"researcher: {agents.researcher.label} · analyzer: {agents.analyzer.label}")
    print(f"sampler: {config.sampler.name} · workers {config.workers} · steps {config.steps}")
    from engine.agents.llm import static_check

    if agents.static_checker is None and static_check.wanted(task):
        note = "static check: not available offline (needs an LLM endpoint); check stages run"
        print(note)
        store.add_event("engineer", note)
    if agents.debugger is not None and config.engineer.debug_attempts:
        print(f"debug agent: {agents.debugger.label}, {config.engineer.debug_attempts} attempts")
    # The cognition retriever runs on the event loop; its database calls go through the
    # engine's db thread once the engine exists (attach below). With cognition and the
    # novelty check both off there is none.
    retriever = None
    if plan.wants_retriever:
        retriever = cognition_setup.retriever(
            store, plan.cognition, plan.novelty, config.use_cognition
        )
        agents.retriever = retriever
    print(cognition_setup.describe(store, plan.cognition, plan.novelty, config.use_cognition))
    if retriever is not None and (retriever.retrieval or plan.novelty.threshold is not None):
        # The engine runs retriever.warm_up() beside the initial program's evaluation.
        print(
            f"cognition: the embedding model ({retriever.base.embedder.name}) loads while the "
            "initial program is evaluated"
        )
    sampler = make_sampler(config.sampler, store, task.maximize, config.seed)
    for note in ready.execution.notes:
        print(note)
        store.add_event("engineer", note)
    expired = store.expire_stale_commands(time.time())
    if expired:
        note = f"expired {expired} command(s) written while no engine was running"
        print(note)
        store.add_event("command", note)
    orphans = kill_orphans(run_dir)  # evaluators a killed engine left running
    if orphans:
        store.add_event("reaper", f"killed {orphans} evaluator process(es) of an earlier engine")
    engine = Engine(
        store=store,
        task=task,
        run_dir=run_dir,
        agents=agents,
        sampler=sampler,
        engineer=ready.execution.engineer,
        pool=ready.execution.pool,
        debug_attempts=config.engineer.debug_attempts,
        reuse_evaluations=config.engineer.reuse_evaluations,
        backups=Backups(run_dir, every=config.backup_every, seconds=config.backup_seconds),
        steps_total=config.steps,
        workers=config.workers,
        use_analyzer=config.use_analyzer,
        novelty_retries=plan.novelty.max_retries,
        # Summing the run's LLM calls costs a scan per step: only a set budget pays it.
        can_start=(lambda db: plan.budget.reason(db.llm_totals()))
        if plan.budget.limited
        else (lambda db: None),
        log=(lambda line: None) if quiet else _LinePrinter(),
    )
    # During the run LLM calls are recorded through the engine's db thread, queued in order
    # and never awaited by the loop; before and after it, on this thread's store.
    ready.attach(engine.db.deferred())
    if ready.recorder is not None:  # what a model refuses is said on the console too
        ready.recorder.say = engine.say
    if retriever is not None:
        retriever.attach(engine.db)
    log_handler = start_log(run_dir)
    interrupted: list[int] = []  # the signal that stopped the run, if one did
    try:
        # Orphans of evaluators come back to us (to be killed and reaped); our memory and
        # environment (API keys) are closed to same-user processes.
        with subreaper(), private_memory():
            summary = asyncio.run(_run_with_signals(engine, interrupted))
    finally:
        ready.attach(store)
        stop_log(log_handler)
    if not engine.fatal:
        store.checkpoint()  # a clean stop leaves one self-contained database file
    best = summary.best_text
    counts = store.status_counts()
    print(
        f"run {summary.state}: {summary.steps_done}/{summary.steps_total} steps, "
        f"{counts['done']} done, {counts['failed']} failed, {counts['pruned']} pruned, "
        f"best {best}, {summary.elapsed:.1f}s"
    )
    print(f"best program: asi-evolve best {run_dir} -o best.py")
    return exit_code(interrupted[0] if interrupted else None)


def exit_code(stopped_by: int | None) -> int:
    """The exit status of a run that ended without failing (a failure raises instead).

    0 when the run finished its budget or was stopped by a ``stop`` command (``asi-evolve
    stop``, the TUI): a person asked for that ending, so it is a success. 128 + the signal
    when a signal stopped it (SIGINT 130, SIGTERM 143, SIGHUP 129), as a shell reports a
    killed command: a script or scheduler then tells an interrupted run, which has steps
    left, from a complete one. The run is still resumable either way.
    """
    return 0 if stopped_by is None else 128 + int(stopped_by)


async def _run_with_signals(engine: Engine, interrupted: list[int]):  # noqa: ANN202 - Summary
    """Run the engine with SIGINT, SIGTERM and SIGHUP as clean stops; ``interrupted`` gets
    the signal that began the stop (not one that arrives while stopping for another reason,
    e.g. a Ctrl-C after a ``stop`` command)."""
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        if not engine.stopping:
            interrupted.append(sig)
        engine.request_stop(f"interrupted by {sig.name}")

    # SIGHUP: a dropped SSH session stops the run cleanly
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, on_signal, sig)
    return await engine.run()


class _LinePrinter:
    """Per-node lines on stdout; a closed stdout (``| head``, a dropped SSH pipe) must not
    kill a run that may hold days of GPU work, so printing just stops."""

    def __init__(self) -> None:
        self.closed = False

    def __call__(self, line: str) -> None:
        if self.closed:
            return
        try:
            print(line, flush=True)
        except (BrokenPipeError, OSError):
            self.closed = True


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


def run_with_tui(argv: list[str], run_dir: Path) -> int:
    """``run --tui``: the engine in the background, the TUI attached (``tui/launch.py``)."""
    from tui.launch import run_with_tui as launch

    return launch(argv, run_dir)
