"""``asi-evolve run``: from a task, flags and a configuration to a running engine.

Everything is checked before the run directory or its database is created (bad input is
one line and exit 2; a run directory is never overwritten), then a new run is seeded or an
existing one resumed, the execution plan (``engine/app/session.py``) is printed, and the
engine runs under signal handlers until its budget is spent or it is stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cognition import setup as cognition_setup
from cognition.retriever_thread import RetrieverThread
from engine.agents import setup as agent_setup
from engine.agents.llm.settings import redact_config
from engine.app import session
from engine.config import RunConfig, from_dict, load_file
from engine.execution.reaper import kill_orphans, subreaper
from engine.execution.sandbox import Sandbox, SandboxSettings, make_sandbox, private_memory
from engine.loop.engine import Engine
from engine.samplers import make_sampler
from engine.store import readonly
from engine.store.backup import Backups
from engine.store.lock import LOCK_NAME, RunLock
from engine.store.run_store import BUILDING_NAME, DB_NAME, RunStore, StoreError
from engine.task import TaskSpec, resolve_task

# What a kill -9 during the creation of a run can leave; such a directory starts afresh.
CREATION_LEFTOVERS = {LOCK_NAME, BUILDING_NAME, f"{BUILDING_NAME}-journal", ".write-test"}
UNSTARTED_FILES = {DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm"}


class UsageError(Exception):
    """Bad input: reported as one line with exit code 2."""


def cmd_run(args: argparse.Namespace) -> int:
    task = resolve_task(args.task)
    run_dir: Path = args.run_dir or Path("runs") / task.name
    flags = _flag_overrides(args)
    if args.tui:
        from tui.launch import run_with_tui

        return run_with_tui(args.argv, run_dir)
    unstarted = (run_dir / DB_NAME).exists() and _never_started(run_dir)
    if (run_dir / DB_NAME).exists() and not unstarted:
        return _resume(task, run_dir, args, flags)
    if run_dir.exists() and (not run_dir.is_dir() or not _fresh(run_dir, unstarted)):
        raise UsageError(f"{run_dir} exists and is not a run directory; choose another --run-dir")
    config = load_file(args.config) if args.config else RunConfig()
    config = from_dict(flags, config, origin="command line")
    config.validate()
    mode = agent_setup.resolve_llm_mode(config.llm, config.api)
    built, attach = _build_agents(mode, config, task)
    seeds = cognition_setup.prepare(config, task)  # checked before anything is written
    execution = _execution(config, run_dir, task)
    made = _make_run_dir(run_dir)

    def setup(store: RunStore) -> None:
        """What makes the new database a run; committed before it is named evolve.db."""
        store.set_meta("task", task.name)
        store.set_meta("task_dir", str(task.directory))
        store.set_meta("direction", task.direction)
        store.set_meta("created_at", time.time())
        store.set_meta("config", redact_config(config.to_dict()))
        store.set_meta("steps_total", config.steps)
        store.set_meta("llm_mode", mode)
        store.add_event("run", f"new run of {task.name} ({config.steps} steps)")
        cognition_setup.seed(store, config, seeds)  # a new run only, never on resume

    try:
        with RunLock(run_dir):
            _set_aside_unstarted(run_dir)
            store = RunStore.create(run_dir, setup)
            attach(store)
            print(f"ASI-Evolve: new run of {task.name} in {run_dir}")
            quiet = args.quiet
            return _execute(store, task, run_dir, config, mode, built, quiet, execution, attach)
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
        config = from_dict(flags, config, origin="command line")
        config.validate()
        cognition_setup.prepare(config, None)
        mode = agent_setup.resolve_llm_mode(flags.get("llm") or config.llm, config.api)
        built, attach = _build_agents(mode, config, task)
        execution = _execution(config, run_dir, task)
        attach(store)
        done = store.steps_done()
        stored = redact_config(config.to_dict())
        changes = _changed(store.get_meta("config", {}), stored)
        store.set_meta("config", stored)
        store.set_meta("steps_total", config.steps)
        store.set_meta("llm_mode", mode)
        store.add_event("run", "resumed" + (f" with changes: {changes}" if changes else ""))
        best = store.best_node(task.maximize)
        best_text = f", best {best.score:.6g} (#{best.id})" if best else ""
        print(
            f"ASI-Evolve: resuming the run in {run_dir}: {done}/{config.steps} steps done"
            f"{best_text}"
        )
        return _execute(store, task, run_dir, config, mode, built, args.quiet, execution, attach)


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


def _sandbox(config: RunConfig, run_dir: Path, task: TaskSpec) -> Sandbox:
    """The evaluators' sandbox, resolved before anything is written (SandboxError: exit 2)."""
    e = config.engineer
    settings = SandboxSettings(e.sandbox, e.sandbox_network, tuple(e.sandbox_writable))
    return make_sandbox(settings, run_dir, task.directory)


def _execution(config: RunConfig, run_dir: Path, task: TaskSpec) -> session.Execution:
    """Sandbox, Engineer and slots, checked before anything is written (exit 2 if unusable)."""
    sandbox = _sandbox(config, run_dir, task)
    secret_env = _secret_env_names(config.to_dict())
    execution = session.plan_execution(task, config, run_dir, sandbox, secret_env)
    execution.notes.insert(0, sandbox.describe())
    return execution


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


def _build_agents(
    mode: str, config: RunConfig, task: TaskSpec
) -> tuple[agent_setup.Agents, Callable[[RunStore], None]]:
    """The run's agents, checked before anything is written, and how to give them the store.

    A new run's database does not exist yet when the agents are built; LLM calls are
    recorded in it once ``attach(store)`` has been called.
    """
    if mode == "openai":
        built, recorder = agent_setup.build_llm_agents(config, task)
        return built, recorder.attach
    agent_setup.check_offline_config(config)
    return agent_setup.build_offline_agents(config.seed), lambda store: None


def _execute(
    store: RunStore,
    task: TaskSpec,
    run_dir: Path,
    config: RunConfig,
    mode: str,
    built: agent_setup.Agents,
    quiet: bool,
    execution: session.Execution,
    attach: Callable[[Any], None],
) -> int:
    researcher = built.researcher.label
    if mode == "offline":
        print(
            "researcher: built-in OFFLINE researcher (numeric-literal mutation; no LLM "
            "endpoint configured) · analyzer: rule-based"
        )
    else:
        print(f"researcher: {researcher} · analyzer: {built.analyzer.label}")
    print(f"sampler: {config.sampler.name} · workers {config.workers} · steps {config.steps}")
    from engine.agents.llm import static_check

    if built.static_checker is None and static_check.wanted(task):
        note = "static check: not available offline (needs an LLM endpoint); check stages run"
        print(note)
        store.add_event("engineer", note)
    if built.debugger is not None and config.engineer.debug_attempts:
        print(f"debug agent: {built.debugger.label}, {config.engineer.debug_attempts} attempts")
    # The cognition retriever works in its own thread with its own connection (never on the
    # event loop); with cognition and the novelty check both off there is none.
    inner = None
    if cognition_setup.wanted(config):
        threaded = RetrieverThread(
            run_dir, lambda own: cognition_setup.retriever(own, config, None)
        )
        built.retriever, inner = threaded, threaded.inner
        built.closers.append(threaded.aclose)
    print(cognition_setup.describe(store, config))
    # The model is loaded here, up front; the retriever's thread then only uses it.
    cognition_setup.load_model(store, inner, lambda line: print(line, flush=True))
    sampler = make_sampler(config.sampler, store, task.maximize, config.seed)
    for note in execution.notes:
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
        agents=built,
        sampler=sampler,
        engineer=execution.engineer,
        pool=execution.pool,
        debug_attempts=config.engineer.debug_attempts,
        backups=Backups(run_dir, every=config.backup_every),
        steps_total=config.steps,
        workers=config.workers,
        use_analyzer=config.use_analyzer,
        novelty_retries=int(config.novelty.get("max_retries", 3)),
        can_start=_budget_check(config.budget),
        log=(lambda line: None) if quiet else _LinePrinter(),
    )
    # Orphans of evaluators come back to us (to be killed and reaped); our memory and
    # environment (API keys) are closed to same-user processes.
    # During the run LLM calls are recorded through the engine's db thread, queued in order
    # and never awaited by the loop; before and after it, on this thread's store.
    attach(engine.db.deferred())
    log_handler = session.start_log(run_dir)
    try:
        with subreaper(), private_memory():
            summary = asyncio.run(_run_with_signals(engine))
    finally:
        attach(store)
        session.stop_log(log_handler)
    if not engine.fatal:
        store.checkpoint()  # a clean stop leaves one self-contained database file
    best = "-" if summary.best_score is None else f"{summary.best_score:.6g} (#{summary.best_node})"
    counts = store.status_counts()
    print(
        f"run {summary.state}: {summary.steps_done}/{summary.steps_total} steps, "
        f"{counts['done']} done, {counts['failed']} failed, {counts['pruned']} pruned, "
        f"best {best}, {summary.elapsed:.1f}s"
    )
    print(f"best program: asi-evolve best {run_dir} -o best.py")
    return 0


def _secret_env_names(config: dict[str, Any]) -> tuple[str, ...]:
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


def _budget_check(budget: dict[str, Any]) -> Callable[[RunStore], str | None]:
    """Reason to start no more candidates once the run's LLM budget is spent (the engine
    calls it in its db thread with its own store)."""
    max_cost = budget.get("max_cost_usd")
    max_tokens = budget.get("max_tokens_total")

    def check(store: RunStore) -> str | None:
        if not max_cost and not max_tokens:
            return None
        totals = store.llm_totals()
        if max_cost and totals["cost_usd"] >= max_cost:
            return f"budget reached: ${totals['cost_usd']:.4f} of ${max_cost}"
        used = totals["prompt_tokens"] + totals["completion_tokens"]
        if max_tokens and used >= max_tokens:
            return f"budget reached: {used} of {max_tokens} tokens"
        return None

    return check


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


async def _run_with_signals(engine: Engine):  # noqa: ANN202 - Summary
    loop = asyncio.get_running_loop()
    signals = ((signal.SIGINT, "SIGINT"), (signal.SIGTERM, "SIGTERM"), (signal.SIGHUP, "SIGHUP"))
    for sig, name in signals:  # SIGHUP: a dropped SSH session stops the run cleanly
        loop.add_signal_handler(sig, engine.request_stop, f"interrupted by {name}")
    return await engine.run()
