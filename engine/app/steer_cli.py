"""``asi-evolve stop|pause|resume RUN_DIR``: steer a running engine from a shell or a script.

The TUI's keys, without the TUI: each command writes one row into the run's ``commands``
table through the same code the TUI uses (``engine.store.steer.send_command``), then waits
for the engine's answer on that row (``engine.store.reader.RunReader.command``), so a
script knows whether the engine obeyed. Exit codes, so that a script can branch on them:

* 0: the engine handled the command (its answer is printed: ``engine: stopping``);
* 1: the engine rejected it, or gave no answer within ``--wait`` seconds (the row stays
  queued: a live engine applies it when it next polls, a later engine expires it), or no
  engine holds the run (then nothing is written: a command left for a future engine
  would be obeyed days later by surprise);
* 2: bad input (not a run directory, a negative ``--wait``): one line, nothing written.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

from engine.app.usage import UsageError
from engine.store.lock import engine_alive
from engine.store.reader import RunReader
from engine.store.schema import COMMAND_HANDLED, COMMAND_NEW
from engine.store.steer import SteerError, send_command
from engine.text import command_help

log = logging.getLogger(__name__)

DEFAULT_WAIT_S = 15.0
POLL_S = 0.1  # the engine polls every 0.25 s: an answer shows within one of its polls
EXIT_OK, EXIT_NOT_APPLIED = 0, 1

# kind -> (one-line help, what the engine does: the description's first paragraph)
STEER_COMMANDS: dict[str, tuple[str, str]] = {
    "stop": (
        "stop a running engine cleanly (like Ctrl-C in its terminal)",
        "Ask the engine working on RUN_DIR to stop: no new candidate starts, candidates in "
        "flight are interrupted (they re-run on resume) and the engine exits 0 after its "
        "summary line. Resume later with 'asi-evolve run TASK --run-dir RUN_DIR'.",
    ),
    "pause": (
        "pause a running engine (no new candidates start)",
        "Ask the engine working on RUN_DIR to pause: no new candidate starts, running ones "
        "finish. The engine keeps its lock and answers commands; 'asi-evolve resume "
        "RUN_DIR' lets it go on.",
    ),
    "resume": (
        "let a paused engine start candidates again",
        "Ask the engine working on RUN_DIR, paused by 'asi-evolve pause' or the TUI's 'p' "
        "key, to start candidates again. (To restart a run no engine works on, use "
        "'asi-evolve run TASK --run-dir RUN_DIR'.)",
    ),
}

_COMMON = (
    "The command is written only when an engine holds the run; then the engine's answer is "
    "awaited (--wait seconds) and printed. Exit status: 0 handled; 1 rejected, no answer in "
    "time (the command stays queued) or no engine running (nothing written); 2 bad input."
)


def register(sub: Any) -> None:
    """``stop``, ``pause`` and ``resume`` on the top-level parser."""
    for kind, (help_text, what) in STEER_COMMANDS.items():
        parser = sub.add_parser(
            kind,
            help=help_text,
            **command_help(
                f"{what}\n\n{_COMMON}",
                f"asi-evolve {kind} runs/circle_packing",
                f"asi-evolve {kind} runs/circle_packing --wait 60   # a busy engine",
            ),
        )
        parser.add_argument("run_dir", type=Path, metavar="RUN_DIR")
        parser.add_argument(
            "--wait",
            type=float,
            default=DEFAULT_WAIT_S,
            metavar="SECONDS",
            help=f"how long to wait for the engine's answer (default {DEFAULT_WAIT_S:g})",
        )
        parser.set_defaults(func=cmd_steer, steer_kind=kind)


def cmd_steer(args: argparse.Namespace) -> int:
    """Send ``args.steer_kind`` to the engine of ``args.run_dir`` and report its answer."""
    kind: str = args.steer_kind
    run_dir: Path = args.run_dir
    wait: float = args.wait
    if not wait >= 0:  # also refuses nan
        raise UsageError(f"--wait must be >= 0 seconds, got {wait}")
    reader = RunReader(run_dir)  # not a run: RunNotFound, one line and exit 2
    try:
        if not engine_alive(run_dir):
            task = reader.meta().get("task") or "TASK"
            _fail(
                f"no engine is running on {run_dir}: nothing sent (start it again with "
                f"'asi-evolve run {task} --run-dir {run_dir}')"
            )
            return EXIT_NOT_APPLIED
        try:
            command_id = send_command(run_dir, kind)
        except SteerError as exc:
            _fail(str(exc))
            return EXIT_NOT_APPLIED
        log.info("sent %s to %s as command #%d", kind, run_dir, command_id)
        return _await_answer(reader, run_dir, kind, command_id, wait)
    finally:
        reader.close()


def _await_answer(reader: RunReader, run_dir: Path, kind: str, command_id: int, wait: float) -> int:
    """Poll the command row until the engine marks it, the engine exits, or ``wait`` ends."""
    deadline = time.monotonic() + wait
    while True:
        alive = engine_alive(run_dir)  # probed before the read: an answer then exit is seen
        found = reader.command(command_id)
        if found is not None and found[0] != COMMAND_NEW:
            status, result = found
            if status == COMMAND_HANDLED:
                print(f"engine: {result}")
                return EXIT_OK
            _fail(f"the engine rejected {kind}: {result}")
            return EXIT_NOT_APPLIED
        if not alive:  # it ended before polling the row: never applied
            _fail(
                f"the engine of {run_dir} exited before answering {kind} (command "
                f"#{command_id}); nothing was applied and the next engine expires it"
            )
            return EXIT_NOT_APPLIED
        if time.monotonic() >= deadline:
            _fail(
                f"no answer from the engine within {wait:g}s: {kind} (command #{command_id}) "
                "stays queued; the engine applies it when it next polls"
            )
            return EXIT_NOT_APPLIED
        time.sleep(POLL_S)


def _fail(line: str) -> None:
    print(f"asi-evolve: {line}", file=sys.stderr)
