"""One line of text from any message: what every error, event and console line is made of.

Errors reach people as one line (the CLI's contract: one line and an exit code), events are
one line each in the TUI, and a node's error is one line in the table. Exceptions from
SQLite, the OS, HTTP clients and evaluators carry newlines, tabs and runs of spaces, and
some carry no message at all; this is the one function that turns them into a line.
Standard library only (the TUI uses it too).
"""

from __future__ import annotations


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
