"""Checks of task.yaml values: each returns the checked value or raises a one-line TaskError.

They are shared by the task loader (``engine/task.py``) and its ``stages:`` parser
(``engine/task_stages.py``), so every field of a task is refused the same way: with the
file, the key and what was wrong, before a run directory exists.
"""

from __future__ import annotations

import math
from pathlib import Path, PurePosixPath
from typing import Any

PLACEHOLDERS = ("python", "evaluator", "program", "workdir", "task_dir")
MAX_NAME_CHARS = 100
# Files the engine writes next to the program (``<stage>_`` prefixed for named stages).
OUTPUT_NAMES = ("results.json", "stdout.txt", "stderr.txt")


class TaskError(Exception):
    """The task cannot be used; the message is a one-line explanation."""


def check_task_name(value: Any, where: str) -> str:
    """A task name is one plain path component (it names ``runs/<name>``)."""
    if not isinstance(value, str) or not value.strip():
        raise TaskError(f"{where}: name must be a non-empty string")
    if (
        len(value) > MAX_NAME_CHARS
        or any(c in "/\\" or ord(c) < 32 or ord(c) == 127 for c in value)
        or value.startswith((".", "-"))
        or value != value.strip()
    ):
        raise TaskError(
            f"{where}: name {value[:MAX_NAME_CHARS]!r} must be one plain directory name "
            f"(no '/', no leading '.' or '-', at most {MAX_NAME_CHARS} chars)"
        )
    return value


def check_program_name(value: Any, where: str) -> str:
    """``program_name`` is a relative path that stays inside the node's working directory."""
    if not isinstance(value, str) or not value.strip():
        raise TaskError(f"{where}: program_name must be a non-empty file name")
    if "\x00" in value or "\\" in value or len(value) > 255:
        raise TaskError(f"{where}: program_name {value[:80]!r} is not a usable file name")
    parts = value.split("/")
    if PurePosixPath(value).is_absolute() or any(p in ("", ".", "..") for p in parts):
        raise TaskError(
            f"{where}: program_name {value!r} must stay inside the working directory "
            "(a relative path without '..')"
        )
    if parts[-1].endswith(OUTPUT_NAMES):
        raise TaskError(f"{where}: program_name {value!r} clashes with the engine's output files")
    return value


def check_template(template: str, where: str) -> None:
    """Every ``{placeholder}`` is one the engine fills."""
    try:
        template.format(**{key: "" for key in PLACEHOLDERS})
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        raise TaskError(
            f"{where} has an unknown or malformed placeholder ({one_line(exc)}); "
            f"known: {', '.join('{' + k + '}' for k in PLACEHOLDERS)}"
        ) from None


def positive_number(value: Any, where: str) -> float:
    """A finite number > 0 (YAML ``.nan``, ``.inf``, booleans and strings are refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TaskError(f"{where} must be a number, got {short(value)}")
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise TaskError(f"{where} must be a finite positive number, got {short(value)}")
    return number


def read_text_file(path: Path, what: str) -> str:
    """A text file's content; binary (NUL bytes) or non-UTF-8 content is a TaskError."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TaskError(f"{path}: cannot read the {what} ({one_line(exc)})") from None
    if b"\x00" in data:
        raise TaskError(f"{path}: the {what} is a binary file (it has NUL bytes)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TaskError(
            f"{path}: the {what} is not UTF-8 text (bad byte at offset {exc.start})"
        ) from None


def integer(value: Any, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TaskError(f"{where} must be an integer, got {short(value)}")
    if value < minimum:
        raise TaskError(f"{where} must be >= {minimum}, got {value}")
    return value


def text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise TaskError(f"{where} must be a non-empty string")
    if "\x00" in value:
        raise TaskError(f"{where} must not contain NUL bytes")
    return value


def no_unknown(mapping: dict[Any, Any], known: frozenset[str], where: str) -> None:
    unknown = [k for k in mapping if k not in known]
    if unknown:
        raise TaskError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")


def is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
