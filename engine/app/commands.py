"""The subcommands the cognition base and the TUI contribute to ``asi-evolve``.

Here, in the application room, because only ``engine/app/`` may import ``cognition`` and
``tui``; and apart from the composition root so that building the parser (which every
command does, ``--version`` included) imports neither a model nor Textual: each command
imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from engine.text import command_help


def register_commands(sub: Any) -> None:
    """The subcommands the cognition base and the TUI contribute to ``asi-evolve``."""
    from cognition.cli import register as register_cognition

    register_cognition(sub)  # cognition import|list|add|remove|show|search|..., report
    watch = sub.add_parser(
        "watch",
        help="attach the terminal UI to a run",
        **command_help(
            "Attach the terminal UI to a run: live while an engine works on it (pause, prune, "
            "approve knowledge from the keyboard), browse-only once it ended. Quitting the UI "
            "never stops the engine.",
            "asi-evolve watch runs/circle_packing",
            "asi-evolve run circle_packing --tui   # start an engine and attach at once",
        ),
    )
    watch.add_argument("run_dir", type=Path)
    watch.set_defaults(func=cmd_watch)


def cmd_watch(args: argparse.Namespace) -> int:
    from tui.app import watch

    watch(args.run_dir)  # RunNotFound is an input error: one line, exit 2
    return 0
