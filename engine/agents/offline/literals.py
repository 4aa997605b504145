"""Numeric literals of a Python program: find them, replace them, write new ones.

The offline Researcher changes a program only through its constants, so it needs them
with exact character offsets. Literals are found with ``tokenize`` (numbers inside
strings, docstrings and comments are never touched) and replaced in place, keeping the
rest of the source byte-identical. The *skeleton* (the token stream with numbers masked)
tells whether two programs differ only in their constants.

A named setting may state the range it must stay in, in a comment at the end of its line:
``lr = 3e-4  # in [1e-5, 1e-2]`` (bounds included; ``inf`` allowed). The Researcher never
writes a value outside it (``literal_moves.clamp``). Other comments are ignored.

A unary minus is part of its literal (``x = -1.2`` has the literal ``-1.2``), so a
constant can change sign and cross zero, and ``x = 1.2`` and ``x = -1.2`` share a skeleton.
Writing ``-v`` where ``v`` stood is safe in every position but one: before ``**`` (``-v ** 2``
is ``-(v ** 2)``), so a literal followed by ``**`` keeps its sign (``Literal.signed``).
"""

from __future__ import annotations

import io
import keyword
import math
import re
import tokenize
from dataclasses import dataclass
from typing import Any

from engine.agents.base import AgentError
from engine.agents.evolve_block import MarkerError, layout

DIGITS = 4  # significant digits of a new float literal
_SKIP = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.ENDMARKER}
_TRIVIA = {tokenize.COMMENT, tokenize.NL}


@dataclass
class Literal:
    """One NUMBER token: where it sits in the source (character offsets) and its value."""

    start: int
    end: int
    line: int
    text: str
    value: float
    is_int: bool
    signed: bool = True  # whether a new value may have the other sign (not before ``**``)
    named: bool = False  # the whole value of a one-name assignment (``terms = 1``)
    low: float = -math.inf  # the range stated in its line's comment (``# in [0, 1]``)
    high: float = math.inf

    @property
    def fixed(self) -> bool:
        """Whether its stated range holds one value at most (``n = 26  # in [26, 26]``, an
        int in ``[4.5, 5.5]``): then it is no parameter, for no move may change it."""
        low, high = self.low, self.high
        if not self.is_int or not (math.isfinite(low) and math.isfinite(high)):
            return low == high
        return math.floor(high) - math.ceil(low) < 1


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
    absorbed = {
        i + 1
        for i in range(len(tokens))
        if _unary_minus(tokens, i) and not (regions and not regions.editable(tokens[i].start[0]))
    }  # index of a NUMBER whose minus is part of it
    for i, tok in enumerate(tokens):
        if tok.type in _SKIP or i + 1 in absorbed:
            continue
        if tok.type != tokenize.NUMBER or (regions and not regions.editable(tok.start[0])):
            skeleton.append((tok.type, "" if tok.type == tokenize.INDENT else tok.string))
            continue
        skeleton.append((tok.type, "#"))
        first = tokens[i - 1] if i in absorbed else tok
        (row, col), (end_row, end_col) = first.start, tok.end
        start, end = line_starts[row - 1] + col, line_starts[end_row - 1] + end_col
        text = code[start:end]
        value = parse(text)
        if value is not None:
            signed = _next_string(tokens, i) != "**"
            named = _named(tokens, i - 1 if i in absorbed else i, i)
            low, high = _stated_range(tokens, i) if named else (-math.inf, math.inf)
            literals.append(
                Literal(start, end, row, text, value, is_int(text), signed, named, low, high)
            )
    return literals, tuple(skeleton)


def _unary_minus(tokens: list[tokenize.TokenInfo], i: int) -> bool:
    """Whether token ``i`` is a ``-`` written against the number after it (``x = -1.2``).

    A minus is unary at the start of a statement, after an operator other than a closing
    bracket and after a keyword such as ``return``. It is not taken into the literal before
    ``**``, where it applies to the power, nor when a space separates it from the number.
    """
    tok = tokens[i]
    if tok.type != tokenize.OP or tok.string != "-" or i + 1 >= len(tokens):
        return False
    after = tokens[i + 1]
    if (
        after.type != tokenize.NUMBER
        or after.start != tok.end
        or _next_string(tokens, i + 1) == "**"
    ):
        return False
    if after.string[-1] in "jJ":  # a complex literal is never a parameter
        return False
    before = next((t for t in reversed(tokens[:i]) if t.type not in _TRIVIA), None)
    if before is None or before.type in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
        return True
    if before.type == tokenize.OP:
        return before.string not in (")", "]", "}")
    return (
        before.type == tokenize.NAME
        and keyword.iskeyword(before.string)
        and before.string not in ("True", "False", "None")
    )


def _named(tokens: list[tokenize.TokenInfo], i: int, last: int) -> bool:
    """Whether the literal of tokens ``i..last`` is all of ``NAME = literal`` on its line.

    A constant given a name is a setting someone meant to be tuned, whatever its value; a
    bare 1 or 2 inside an expression is far more often an index or an exponent.
    """
    before = [t for t in tokens[max(0, i - 4) : i] if t.type not in _TRIVIA]
    if len(before) < 2 or before[-1].string != "=" or before[-2].type != tokenize.NAME:
        return False
    start = before[-3] if len(before) >= 3 else None
    at_start = start is None or start.type in (
        tokenize.NEWLINE,
        tokenize.INDENT,
        tokenize.DEDENT,
        tokenize.ENCODING,
    )
    after = next((t for t in tokens[last + 1 :] if t.type != tokenize.COMMENT), None)
    return at_start and (after is None or after.type in (tokenize.NEWLINE, tokenize.ENDMARKER))


_RANGE = re.compile(r"(?<!not )\bin\s*\[\s*([-+.\w]+)\s*,\s*([-+.\w]+)\s*\]")


def _stated_range(tokens: list[tokenize.TokenInfo], i: int) -> tuple[float, float]:
    """The range a named setting's comment states (``x = 0.4  # in [0, 1]``), else none.

    Only a comment that ends the literal's own line counts, and only a well-formed range
    (two numbers, the first not above the second): a comment that merely mentions brackets
    leaves the setting free.
    """
    comment = tokens[i + 1] if i + 1 < len(tokens) else None  # a named one ends its line
    if comment is None or comment.type != tokenize.COMMENT:
        return -math.inf, math.inf
    found = _RANGE.search(comment.string)
    if found is None:
        return -math.inf, math.inf
    try:
        low, high = float(found.group(1)), float(found.group(2))
    except ValueError:
        return -math.inf, math.inf
    if math.isnan(low) or math.isnan(high) or low > high or (low == high and math.isinf(low)):
        return -math.inf, math.inf
    return low, high


def _next_string(tokens: list[tokenize.TokenInfo], i: int) -> str:
    """The text of the first significant token after ``i`` ('' at the end)."""
    return next((t.string for t in tokens[i + 1 :] if t.type not in _SKIP), "")


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
