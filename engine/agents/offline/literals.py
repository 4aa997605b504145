"""Numeric literals of a Python program: find them, replace them, write new ones.

The offline Researcher changes a program only through its constants, so it needs them
with exact character offsets. Literals are found with ``tokenize`` (numbers inside
strings, docstrings and comments are never touched) and replaced in place, keeping the
rest of the source byte-identical. The *skeleton* (the token stream with numbers masked)
tells whether two programs differ only in their constants.

Signs are not part of a literal: a NUMBER token carries no sign, and writing ``-x`` in
its place could change how the expression parses (``-x ** 2``), so new values keep the
sign of the old ones.
"""

from __future__ import annotations

import io
import math
import re
import tokenize
from dataclasses import dataclass
from typing import Any

from engine.agents.base import AgentError
from engine.agents.evolve_block import MarkerError, layout

DIGITS = 4  # significant digits of a new float literal
_SKIP = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.ENDMARKER}


@dataclass
class Literal:
    """One NUMBER token: where it sits in the source (character offsets) and its value."""

    start: int
    end: int
    line: int
    text: str
    value: float
    is_int: bool


def find_literals(code: str) -> tuple[list[Literal], tuple]:
    """The real numeric literals of ``code`` and its skeleton (tokens, numbers masked).

    In a program with EVOLVE-BLOCK markers only literals inside the blocks count; the
    others are frozen and stay part of the skeleton.
    """
    try:
        regions = layout(code)
    except MarkerError as exc:
        raise AgentError(f"the parent program's EVOLVE-BLOCK markers are broken: {exc}") from None
    line_starts = [0] + [m.end() for m in re.finditer("\n", code)]
    literals: list[Literal] = []
    skeleton: list[tuple[int, str]] = []
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, SyntaxError) as exc:
        raise AgentError(f"cannot tokenize the parent program: {exc}") from None
    for tok in tokens:
        if tok.type in _SKIP:
            continue
        if tok.type != tokenize.NUMBER or (regions and not regions.editable(tok.start[0])):
            skeleton.append((tok.type, "" if tok.type == tokenize.INDENT else tok.string))
            continue
        skeleton.append((tok.type, "#"))
        value = parse(tok.string)
        if value is not None:
            (row, col), (end_row, end_col) = tok.start, tok.end
            start, end = line_starts[row - 1] + col, line_starts[end_row - 1] + end_col
            literals.append(Literal(start, end, row, tok.string, value, is_int(tok.string)))
    return literals, tuple(skeleton)


def replace_literals(code: str, literals: list[Literal], new_texts: dict[int, str]) -> str:
    """``code`` with literal ``k`` replaced by ``new_texts[k]``; all else untouched."""
    out, pos = [], 0
    for k in sorted(new_texts, key=lambda k: literals[k].start):
        out += [code[pos : literals[k].start], new_texts[k]]
        pos = literals[k].end
    return "".join(out) + code[pos:]


def format_float(value: float, digits: int = DIGITS) -> str:
    """A short literal that reads back as a float (``0.3``, ``1e-05``; never ``3``)."""
    text = f"{value:.{digits}g}"
    return text if any(c in text for c in ".en") else text + ".0"


def parse(text: str) -> float | None:
    """The value of a literal's text; None for complex or non-finite ones."""
    if not text or text[-1] in "jJ":
        return None
    try:
        value = float(int(text, 0)) if is_int(text) else float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def is_int(text: str) -> bool:
    lowered = text.lower()
    return lowered.startswith(("0x", "0o", "0b")) or not any(c in lowered for c in ".ej")


def groups(texts: list[str]) -> dict[str, list[int]]:
    """Literal indices by text: a constant written several times is likely one parameter."""
    found: dict[str, list[int]] = {}
    for k, text in enumerate(texts):
        found.setdefault(text, []).append(k)
    return found


def changes(
    literals: list[Literal], new_texts: dict[int, str], old_texts: list[str]
) -> list[dict[str, Any]]:
    """The ``{line, old, new}`` records of a move, in source order."""
    return [
        {"line": literals[k].line, "old": old_texts[k], "new": new_texts[k]}
        for k in sorted(new_texts)
    ]


def describe(records: list[dict[str, Any]]) -> str:
    return "; ".join(f"line {c['line']} `{c['old']}` -> `{c['new']}`" for c in records)


def locate(literals: list[Literal], moves: Any) -> dict[int, tuple[str, str]]:
    """Literal index -> (old, new) for recorded moves that still match the program."""
    found: dict[int, tuple[str, str]] = {}
    for move in moves if isinstance(moves, list) else []:
        for k, lit in enumerate(literals):
            if k not in found and lit.line == move.get("line") and lit.text == move.get("new"):
                found[k] = (str(move.get("old")), lit.text)
                break
    return found
