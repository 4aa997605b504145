"""The ``asi-evolve`` command line.

Bad input ends with one line on stderr and exit code 2, before anything is written:
a run directory holds days of GPU time and is never overwritten or deleted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from cognition import setup as cognition_setup
from cognition.items import CognitionError
from engine import agents as agent_setup
from engine import progress, session
from engine.agents.llm_settings import redact_config
from engine.backup import Backups
from engine.config import ConfigError, RunConfig, from_dict, load_file
from engine.lock import LockedError, RunLock, engine_alive
from engine.loop import Engine, EngineError
from engine.reaper import kill_orphans, subreaper
from engine.samplers import SAMPLERS, make_sampler
from engine.sandbox import Sandbox, SandboxError, SandboxSettings, make_sandbox, private_memory
from engine.store import DB_NAME, RunStore, StoreError
from engine.task import TaskError, TaskSpec, builtin_tasks, load_task, resolve_task

EXIT_USAGE = 2
MAX_RUN_DIR_CHARS = 3000  # run dir paths far below PATH_MAX leave room for node dirs


class UsageError(Exception):
    """Bad input: reported as one line with exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="asi-evolve", description="AI-driven evolutionary research loop.")
    parser.add_argument("--version", action="version", version=f"asi-evolve {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="start or resume a run")
    run.add_argument("task", help="built-in domain name (see 'asi-evolve tasks') or task dir")
    run.add_argument("--steps", type=int, help="total evaluated candidates of the run")
    run.add_argument("--workers", type=int, help="candidates in flight at once")
    run.add_argument("--sampler", choices=list(SAMPLERS), help="parent/context sampler")
    run.add_argument("--run-dir", type=Path, help="default: runs/<task name>")
    run.add_argument("--config", type=Path, help="YAML run configuration")
    run.add_argument("--llm", choices=["offline", "openai"], help="agents to use")
    run.add_argument("--seed", type=int, help="random seed")
    run.add_argument("--quiet", action="store_true", help="no per-node lines")
    run.add_argument(
        "--no-analyzer",
        action="store_true",
        help="ablation: raw scores and logs go to the next round instead of a report",
    )
    run.add_argument("--no-cognition", action="store_true", help="ablation: no knowledge retrieval")
    run.add_argument(
        "--tui", action="store_true", help="run the engine in the background and attach the TUI"
    )
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check-llm", help="send one tiny request to the configured LLM")
    check.add_argument("--config", type=Path, help="YAML run configuration (its api: section)")
    check.set_defaults(func=cmd_check_llm)

    status = sub.add_parser("status", help="progress and best score of a run")
    status.add_argument("run_dir", type=Path)
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)

    best = sub.add_parser("best", help="the best program of a run")
    best.add_argument("run_dir", type=Path)
    best.add_argument("-o", "--output", type=Path, help="write the code to this file")
    best.set_defaults(func=cmd_best)

    tasks = sub.add_parser("tasks", help="list the built-in domains")
    tasks.set_defaults(func=cmd_tasks)

    watch = sub.add_parser("watch", help="attach the terminal UI to a run")
    watch.add_argument("run_dir", type=Path)
    watch.set_defaults(func=cmd_watch)

    from cognition.cli import register as register_cognition

    register_cognition(sub)  # cognition import|list|add|remove|show|search|..., report
    from engine.backup import register as register_backup

    register_backup(sub)  # backup, restore
    from engine.export import register as register_export

    register_export(sub)  # export
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("asi-evolve")
    except PackageNotFoundError:
        return "unknown (not installed)"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        args.argv = list(sys.argv[1:] if argv is None else argv)  # for run --tui
        return args.func(args)
    except (
        UsageError,
        TaskError,
        ConfigError,
        StoreError,
        LockedError,
        agent_setup.AgentSetupError,
        CognitionError,
        SandboxError,
    ) as exc:
        print(f"asi-evolve: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except EngineError as exc:
        print(f"asi-evolve: {_one_line(exc)}", file=sys.stderr)
        return 1
    except sqlite3.DatabaseError as exc:  # e.g. a corrupted page met while reading
        print(f"asi-evolve: error: damaged run database: {_one_line(exc)} "
              "(restore from backup: asi-evolve restore RUN_DIR)", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # output piped into e.g. `head`: not an error of ours
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        return 0
    except Exception as exc:  # a bug of ours: one line, the traceback only when asked for
        if os.environ.get("ASI_EVOLVE_DEBUG"):
            raise
        print(
            f"asi-evolve: internal error: {type(exc).__name__}: {_one_line(exc)} "
            "(run again with ASI_EVOLVE_DEBUG=1 to see the traceback)",
            file=sys.stderr,
        )
        logging.getLogger(__name__).exception("internal error")
        return 1


# --------------------------------------------------------------------- run
def cmd_run(args: argparse.Namespace) -> int:
    task = resolve_task(args.task)
    run_dir: Path = args.run_dir or Path("runs") / task.name
    flags = _flag_overrides(args)
    if args.tui:
        from tui.launch import run_with_tui

        return run_with_tui(args.argv, run_dir)
    if (run_dir / DB_NAME).exists():
        return _resume(task, run_dir, args, flags)
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise UsageError(f"{run_dir} exists and is not a run directory; choose another --run-dir")
    config = load_file(args.config) if args.config else RunConfig()
    config = from_dict(flags, config, origin="command line")
    config.validate()
    mode = agent_setup.resolve_llm_mode(config.llm, config.api)
    built, attach = _build_agents(mode, config, task)
    seeds = cognition_setup.prepare(config, task)  # checked before anything is written
    execution = _execution(config, run_dir, task)
    _make_run_dir(run_dir)
    with RunLock(run_dir):
        store = RunStore.create(run_dir)
        attach(store)
        store.set_meta("task", task.name)
        store.set_meta("task_dir", str(task.directory))
        store.set_meta("direction", task.direction)
        store.set_meta("created_at", time.time())
        store.set_meta("config", redact_config(config.to_dict()))
        store.set_meta("steps_total", config.steps)
        store.set_meta("llm_mode", mode)
        store.add_event("run", f"new run of {task.name} ({config.steps} steps)")
        cognition_setup.seed(store, config, seeds)  # a new run only, never on resume
        print(f"ASI-Evolve: new run of {task.name} in {run_dir}")
        return _execute(store, task, run_dir, config, mode, built, args.quiet, execution)


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
        return _execute(store, task, run_dir, config, mode, built, args.quiet, execution)


def _make_run_dir(run_dir: Path) -> None:
    """Create the run directory, or say in one line why it cannot be (nothing is left)."""
    if len(str(run_dir.resolve())) > MAX_RUN_DIR_CHARS:
        raise UsageError(f"--run-dir is too long (over {MAX_RUN_DIR_CHARS} characters)")
    for parent in run_dir.resolve().parents:
        if parent.exists() and not parent.is_dir():
            raise UsageError(f"--run-dir {run_dir}: {parent} is a file, not a directory")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise UsageError(f"cannot create the run directory {run_dir}: {reason}") from None


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


# --------------------------------------------------------------- check-llm
def cmd_check_llm(args: argparse.Namespace) -> int:
    from engine.agents.llm_check import check_llm

    config = load_file(args.config) if args.config else RunConfig()
    failed = False
    for result in check_llm(config.api):
        if result.error:
            failed = True
            print(f"asi-evolve: check-llm: {_one_line(result.line())}", file=sys.stderr)
        else:
            print(result.line())
    return 1 if failed else 0


def _execute(
    store: RunStore,
    task: TaskSpec,
    run_dir: Path,
    config: RunConfig,
    mode: str,
    built: agent_setup.Agents,
    quiet: bool,
    execution: session.Execution,
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
    from engine.agents import static_check

    if built.static_checker is None and static_check.wanted(task):
        note = "static check: not available offline (needs an LLM endpoint); check stages run"
        print(note)
        store.add_event("engineer", note)
    if built.debugger is not None and config.engineer.debug_attempts:
        print(f"debug agent: {built.debugger.label}, {config.engineer.debug_attempts} attempts")
    built.retriever = cognition_setup.retriever(store, config, built.retriever)
    print(cognition_setup.describe(store, config))
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
        can_start=_budget_check(store, config.budget),
        log=(lambda line: None) if quiet else _LinePrinter(),
    )
    # Orphans of evaluators come back to us (to be killed and reaped); our memory and
    # environment (API keys) are closed to same-user processes.
    log_handler = session.start_log(run_dir)
    try:
        with subreaper(), private_memory():
            summary = asyncio.run(_run_with_signals(engine))
    finally:
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


async def _run_with_signals(engine: Engine):  # noqa: ANN202 - Summary
    loop = asyncio.get_running_loop()
    signals = ((signal.SIGINT, "SIGINT"), (signal.SIGTERM, "SIGTERM"), (signal.SIGHUP, "SIGHUP"))
    for sig, name in signals:  # SIGHUP: a dropped SSH session stops the run cleanly
        loop.add_signal_handler(sig, engine.request_stop, f"interrupted by {name}")
    return await engine.run()


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


def _budget_check(store: RunStore, budget: dict[str, Any]) -> Callable[[], str | None]:
    """Reason to start no more candidates once the run's LLM budget is spent."""
    max_cost = budget.get("max_cost_usd")
    max_tokens = budget.get("max_tokens_total")

    def check() -> str | None:
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


# ----------------------------------------------------------------- readers
def open_run(run_dir: Path) -> RunStore:
    return RunStore.open(run_dir, readonly=True)


def run_status(run_dir: Path) -> dict[str, Any]:
    store = open_run(run_dir)
    try:
        meta = store.all_meta()
        maximize = meta.get("direction", "maximize") == "maximize"
        counts = store.status_counts()
        best = store.best_node(maximize)
        config = meta.get("config", {})
        alive = engine_alive(run_dir)
        state = meta.get("state", "unknown") if alive else "not running"
        info = {
            "run_dir": str(run_dir),
            "task": meta.get("task"),
            "nodes": sum(counts.values()),
            **counts,
            "steps_done": store.steps_done(),
            "steps_total": meta.get("steps_total"),
            "best_score": best.score if best else None,
            "best_node": best.id if best else None,
            "best_name": best.name if best else None,
            "sampler": config.get("sampler", {}).get("name"),
            "llm_mode": meta.get("llm_mode"),
            "engine": state,
            "last_state": meta.get("state"),
            "llm": store.llm_totals(),
        }
        rows = list(store.db.execute("SELECT step, finished_at, score, status FROM nodes"))
        info["progress"] = progress.measure(rows, meta.get("steps_total"), maximize).to_dict()
        engine_meta = meta.get("engine") or {}
        if alive and isinstance(engine_meta, dict) and engine_meta.get("slots"):
            info["slots"] = engine_meta["slots"]
        return info
    finally:
        store.close()


def cmd_status(args: argparse.Namespace) -> int:
    info = run_status(args.run_dir)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    best = "-" if info["best_score"] is None else f"{info['best_score']:.6g} (#{info['best_node']})"
    llm = info["llm"]
    print(f"run:      {info['run_dir']}  (task {info['task']})")
    print(f"engine:   {info['engine']}  (last state: {info['last_state']})")
    print(f"steps:    {info['steps_done']}/{info['steps_total']}")
    print(
        f"nodes:    {info['nodes']}  done {info['done']}  failed {info['failed']}  "
        f"pruned {info['pruned']}  running {info['running']}  pending {info['pending']}"
    )
    print(f"best:     {best}")
    p = info["progress"]
    rate = "-" if p["per_minute"] is None else f"{p['per_minute']:.2f}/min"
    stall = "  STALLED: no improvement in a while" if p["stalled"] else ""
    print(
        f"progress: {rate}  eta {progress.format_eta(p['eta_seconds'])}  "
        f"{p['since_improvement']} since the last improvement (step {p['best_step']}){stall}"
    )
    if "slots" in info:
        gpus, cpus = info["slots"].get("gpus", {}), info["slots"].get("cpus", {})
        print(
            f"slots:    GPUs {gpus.get('busy', 0)}/{gpus.get('total', 0)}  "
            f"CPUs {cpus.get('busy', 0)}/{cpus.get('total', 0)}"
        )
    print(f"sampler:  {info['sampler']}   llm: {info['llm_mode']}")
    print(
        f"llm use:  {llm['calls']} calls, {llm['prompt_tokens']}+{llm['completion_tokens']} "
        f"tokens, ${llm['cost_usd']:.4f}"
    )
    return 0


def cmd_best(args: argparse.Namespace) -> int:
    store = open_run(args.run_dir)
    try:
        maximize = store.get_meta("direction", "maximize") == "maximize"
        best = store.best_node(maximize)
    finally:
        store.close()
    if best is None:
        raise UsageError(f"{args.run_dir} has no successful node yet")
    if args.output:
        if args.output.is_dir():
            raise UsageError(f"-o {args.output} is a directory; give a file name")
        if not args.output.parent.is_dir():
            raise UsageError(f"-o {args.output}: directory {args.output.parent} does not exist")
        try:
            args.output.write_text(best.code, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot write {args.output}: {exc.strerror or exc}") from None
        print(f"wrote node #{best.id} (score {best.score:.6g}) to {args.output}")
    else:
        sys.stdout.write(best.code if best.code.endswith("\n") else best.code + "\n")
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    from tui.app import RunNotFound, watch

    try:
        watch(args.run_dir)
    except RunNotFound as exc:
        raise UsageError(str(exc)) from None
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    for name, directory in builtin_tasks().items():
        try:
            task = load_task(directory)
            first = next(
                (ln.strip("# ").strip() for ln in task.description.splitlines() if ln.strip()), ""
            )
        except TaskError as exc:
            first = f"(broken: {exc})"
        print(f"{name:<20} {first}")
    return 0


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
