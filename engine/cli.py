"""The ``asi-evolve`` command line.

Bad input ends with one line on stderr and exit code 2, before anything is written:
a run directory holds days of GPU time and is never overwritten or deleted.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from engine.app.usage import UsageError
from engine.samplers import SAMPLER_NAMES
from engine.text import command_help, one_line

# Every command builds this parser, ``--version`` included: so it imports only what the
# parser needs, and each command imports its own module when it runs (``_command``).
# ``python -X importtime -m engine.cli --version`` shows what a start costs.

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


RUN_HELP = command_help(
    """Start a run of TASK in a run directory, or resume the run already there.

    --steps N is the run's total number of evaluated candidates; the initial program (step
    0) is evaluated first and is not counted. Running again on the same run directory
    resumes the run: the same command after a crash or a stop finishes the same budget, a
    larger --steps extends it, and a --steps below the steps already done is refused.

    Ctrl-C, SIGTERM or SIGHUP stop cleanly and exit 128 + the signal (130, 143, 129); a
    run that spent its budget, or was stopped by 'asi-evolve stop', exits 0. Bad input is
    one line on stderr and exit 2, with nothing written.""",
    "asi-evolve run circle_packing --steps 60     # a new run in runs/circle_packing",
    "asi-evolve run circle_packing --steps 100    # the same run again: 40 more steps",
    "asi-evolve run ./my_task --run-dir runs/try1 --config run.yaml --workers 4",
    "asi-evolve run circle_packing --tui          # engine in the background, TUI attached",
)


def _command(target: str) -> Callable[[argparse.Namespace], int]:
    """``"module:function"`` as a command function, imported when the command runs."""
    module, name = target.split(":")

    def run(args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(module), name)(args)

    run.__name__ = name
    return run


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="asi-evolve", description="AI-driven evolutionary research loop.")
    parser.add_argument("--version", action="version", version=f"asi-evolve {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser(
        "run",
        help="start or resume a run",
        **RUN_HELP,
    )
    run.add_argument("task", help="built-in domain name (see 'asi-evolve tasks') or task dir")
    run.add_argument(
        "--steps",
        type=int,
        metavar="N",
        help="the run's TOTAL number of evaluated candidates, the initial program not counted "
        "(default: 60 for a new run, the run's own total on resume); on resume a larger N "
        "extends the run, one below the steps done is refused",
    )
    run.add_argument("--workers", type=int, help="candidates in flight at once")
    run.add_argument("--sampler", choices=list(SAMPLER_NAMES), help="parent/context sampler")
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
    run.set_defaults(func=_command("engine.app.run:cmd_run"))

    check = sub.add_parser(
        "check-llm",
        help="send one tiny request to the configured LLM",
        **command_help(
            "Send one tiny request to each distinct LLM endpoint of the configuration's api: "
            "section (its roles included) and print one line per endpoint: it answered, or why "
            "not. Exit 1 when one failed. No run is touched.",
            "asi-evolve check-llm",
            "asi-evolve check-llm --config llm.yaml",
        ),
    )
    check.add_argument("--config", type=Path, help="YAML run configuration (its api: section)")
    check.set_defaults(func=cmd_check_llm)

    status = sub.add_parser(
        "status",
        help="progress and best score of a run",
        **command_help(
            "Progress, best score, node counts, speed and ETA of a run, and whether an engine "
            "is working on it. Reads the run database read-only: safe beside a live engine.",
            "asi-evolve status runs/circle_packing",
            "asi-evolve status runs/circle_packing --json   # one JSON object, for scripts",
        ),
    )
    status.add_argument("run_dir", type=Path)
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=_command("engine.app.status:cmd_status"))

    best = sub.add_parser(
        "best",
        help="the best program of a run",
        **command_help(
            "Print the code of the best node of a run (by the task's direction), or write it "
            "to a file with -o. Reads the run database read-only.",
            "asi-evolve best runs/circle_packing",
            "asi-evolve best runs/circle_packing -o best.py",
        ),
    )
    best.add_argument("run_dir", type=Path)
    best.add_argument("-o", "--output", type=Path, help="write the code to this file")
    best.set_defaults(func=_command("engine.app.status:cmd_best"))

    tasks = sub.add_parser(
        "tasks",
        help="list the built-in domains",
        **command_help(
            "List the built-in domains (tasks) with the first line of each problem statement. "
            "Any of these names, or the path of a task directory, is a TASK for run.",
            "asi-evolve tasks",
            "asi-evolve run circle_packing --steps 60",
        ),
    )
    tasks.set_defaults(func=cmd_tasks)

    from engine.app.commands import register_commands
    from engine.app.steer_cli import register as register_steering

    register_steering(sub)  # stop, pause, resume
    register_commands(sub)  # watch; cognition import|list|add|...|search, report
    from engine.store.backup import register as register_backup

    register_backup(sub)  # backup, restore
    from engine.store.export import register as register_export

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
    except BrokenPipeError:  # output piped into e.g. `head`: not an error of ours
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        return 0
    except KeyboardInterrupt:  # Ctrl-C before a run's own handler is installed
        print("asi-evolve: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - every failure ends as one line and an exit code
        if os.environ.get("ASI_EVOLVE_DEBUG"):
            raise
        line, code = _failure(exc)
        print(line, file=sys.stderr)
        return code


# Bad input (exit 2), by "module:class". Looked up only among the modules already loaded:
# an exception of a class means its module was imported, and a failing command must not
# import the engine to say why it failed.
USAGE_ERRORS = (
    "engine.app.usage:UsageError",
    "engine.task:TaskError",
    "engine.config:ConfigError",
    "engine.store.run_store:StoreError",
    "engine.store.lock:LockedError",
    "engine.agents.base:AgentSetupError",
    "cognition.items:CognitionError",
    "engine.store.reader:RunNotFound",
    "engine.execution.sandbox:SandboxError",
)


def _loaded(names: tuple[str, ...]) -> tuple[type[BaseException], ...]:
    """The classes named ``"module:class"`` whose modules are imported already."""
    found = []
    for target in names:
        module, name = target.split(":")
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type) and issubclass(cls, BaseException):
            found.append(cls)
    return tuple(found)


def _failure(exc: BaseException) -> tuple[str, int]:
    """The one line and exit code for a failure: 2 for bad input, 1 for a run that failed.

    Errors raised together (an exception group from the engine's task group) are told by
    the first of them that is not a cancellation; a full disk is a failed run (1), not bad
    input, whatever layer met it first.
    """
    import asyncio
    import sqlite3

    from engine.store.run_store import DiskFull, disk_full

    while isinstance(exc, BaseExceptionGroup):
        leaves = [e for e in exc.exceptions if not isinstance(e, asyncio.CancelledError)]
        exc = leaves[0] if leaves else exc.exceptions[0]
    full = exc if isinstance(exc, DiskFull) else disk_full(exc, Path("the run"))
    if full is not None:
        return f"asi-evolve: {one_line(full)}", 1
    if isinstance(exc, _loaded(USAGE_ERRORS)):
        return f"asi-evolve: error: {one_line(exc)}", EXIT_USAGE
    if isinstance(exc, _loaded(("engine.loop.engine:EngineError",))):
        return f"asi-evolve: {one_line(exc)}", 1
    if isinstance(exc, sqlite3.DatabaseError):  # e.g. a corrupted page met while reading
        return (
            f"asi-evolve: error: damaged run database: {one_line(exc)} "
            "(restore from backup: asi-evolve restore RUN_DIR)",
            EXIT_USAGE,
        )
    return (
        f"asi-evolve: internal error: {type(exc).__name__}: {one_line(exc)} "
        "(run again with ASI_EVOLVE_DEBUG=1 to see the traceback)",
        1,
    )


# --------------------------------------------------------------------- run


# --------------------------------------------------------------- check-llm
def cmd_check_llm(args: argparse.Namespace) -> int:
    from engine.agents.llm.check import check_llm
    from engine.config import RunConfig, load_file

    config = load_file(args.config) if args.config else RunConfig()
    failed = False
    for result in check_llm(config.api):
        if result.error:
            failed = True
            print(f"asi-evolve: check-llm: {one_line(result.line())}", file=sys.stderr)
        else:
            print(result.line())
    return 1 if failed else 0


def cmd_tasks(args: argparse.Namespace) -> int:
    from engine.task import TaskError, builtin_tasks, load_task

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


if __name__ == "__main__":
    sys.exit(main())
