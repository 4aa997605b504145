"""One line of text from any message: what every error, event and console line is made of.

Errors reach people as one line (the CLI's contract: one line and an exit code), events are
one line each in the TUI, and a node's error is one line in the table. Exceptions from
SQLite, the OS, HTTP clients and evaluators carry newlines, tabs and runs of spaces, and
some carry no message at all; this is the one function that turns them into a line.
Beside it, ``command_help``: the one shape of every subcommand's ``--help`` (a wrapped
description, then examples). Standard library only (the TUI uses it too).
"""

from __future__ import annotations

import argparse
import textwrap
from typing import Any

HELP_WIDTH = 88


def one_line(value: object, limit: int = 0, mark: str = "...") -> str:
    """``value`` (an exception or any text) on one line: whitespace runs become one space,
    an exception without a message is named by its type, and with ``limit`` > 0 the line is
    cut to at most ``limit`` characters, ending with ``mark``."""
    text = " ".join(str(value).split())
    if not text and isinstance(value, BaseException):
        text = type(value).__name__
    if limit > 0 and len(text) > limit:
        text = text[: max(0, limit - len(mark))] + mark
    return text


def command_help(description: str, *examples: str) -> dict[str, Any]:
    """The ``add_parser`` keywords that give a subcommand's ``--help`` its description and
    examples. Every subcommand has both, so ``asi-evolve X --help`` alone tells a person what
    X does and how it is called (``tests/unit/test_cli_help.py`` walks them all).

    The raw formatter keeps the examples as written (argparse would re-wrap their aligned
    comments), so the description's paragraphs (split by blank lines) are wrapped here.
    """
    paragraphs = [" ".join(p.split()) for p in description.split("\n\n") if p.strip()]
    return {
        "description": "\n\n".join(
            textwrap.fill(p, HELP_WIDTH, break_on_hyphens=False) for p in paragraphs
        ),
        "epilog": "examples:\n" + "\n".join(f"  {line}" for line in examples),
        "formatter_class": argparse.RawDescriptionHelpFormatter,
    }
