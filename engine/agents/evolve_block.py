"""EVOLVE-BLOCK markers: the part of a program the search may change.

A program may fence its editable code between a line ``# EVOLVE-BLOCK-START`` and a line
``# EVOLVE-BLOCK-END`` (several such blocks are allowed, not nested). Everything else -
imports the evaluator relies on, helpers, the marker lines themselves - is *frozen*:
candidates must keep it byte for byte, so a Researcher cannot quietly rewrite the
contract the evaluator checks. Programs without markers are editable everywhere.

The rule is enforced on the result, not on the edit: a SEARCH/REPLACE block may quote a
frozen line as context as long as it leaves it as it was. Markers are recognised after
stripping whitespace, with any comment prefix (``#``, ``//``, ``--``) before the tag.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

START_TAG = "EVOLVE-BLOCK-START"
END_TAG = "EVOLVE-BLOCK-END"
_MARKER = re.compile(r"^\s*(#|//|--|;)\s*(EVOLVE-BLOCK-START|EVOLVE-BLOCK-END)\s*$")


class MarkerError(ValueError):
    """The markers are unbalanced or nested; the message says where."""


@dataclass(frozen=True)
class Layout:
    """A program split at its markers.

    frozen: the frozen segments in order (lists of lines; marker lines included), one
      more than there are blocks.
    blocks: (first, last) 1-based line numbers of each block's editable lines
      (first > last for an empty block).
    """

    frozen: tuple[tuple[str, ...], ...]
    blocks: tuple[tuple[int, int], ...]

    def editable(self, line: int) -> bool:
        """Whether 1-based ``line`` lies strictly between a START and its END marker."""
        return any(first <= line <= last for first, last in self.blocks)


def has_markers(code: str) -> bool:
    return any(_MARKER.match(line) for line in code.split("\n"))


def layout(code: str) -> Layout | None:
    """The program's frozen segments and blocks; None without markers; MarkerError if broken."""
    lines = code.split("\n")
    frozen: list[tuple[str, ...]] = []
    blocks: list[tuple[int, int]] = []
    segment: list[str] = []
    open_at = 0  # 1-based line of the open START marker, 0 when outside a block
    for number, line in enumerate(lines, start=1):
        match = _MARKER.match(line)
        tag = match.group(2) if match else None
        if tag == START_TAG:
            if open_at:
                raise MarkerError(
                    f"line {number}: {START_TAG} inside the block opened on "
                    f"line {open_at} (blocks cannot nest)"
                )
            segment.append(line)
            frozen.append(tuple(segment))
            segment, open_at = [], number
        elif tag == END_TAG:
            if not open_at:
                raise MarkerError(f"line {number}: {END_TAG} without a {START_TAG} before it")
            blocks.append((open_at + 1, number - 1))
            segment, open_at = [line], 0
        elif not open_at:
            segment.append(line)
    if open_at:
        raise MarkerError(f"line {open_at}: {START_TAG} is never closed by {END_TAG}")
    if not blocks:
        return None
    while segment and not segment[-1].strip():  # blank lines at the end of the file
        segment.pop()
    frozen.append(tuple(segment))
    return Layout(tuple(frozen), tuple(blocks))


def frozen_violation(parent: str, child: str) -> str:
    """ "" when ``child`` keeps every frozen line of ``parent``; else the reason, for the model.

    A parent without markers (or with broken ones, which no check could honour) freezes
    nothing.
    """
    try:
        before = layout(parent)
    except MarkerError:
        return ""
    if before is None:
        return ""
    rule = (
        f"only the code between the '# {START_TAG}' and '# {END_TAG}' lines may change; "
        "everything outside them, the marker lines included, must stay exactly as it is"
    )
    try:
        after = layout(child)
    except MarkerError as exc:
        return f"the EVOLVE-BLOCK markers are broken ({exc}); {rule}"
    if after is None or len(after.blocks) != len(before.blocks):
        found = 0 if after is None else len(after.blocks)
        return (
            f"the program must keep its {len(before.blocks)} EVOLVE-BLOCK region(s), "
            f"found {found}; {rule}"
        )
    for index, (old, new) in enumerate(zip(before.frozen, after.frozen, strict=True)):
        if old != new:
            return f"{_first_difference(old, new, index)}; {rule}"
    return ""


def _first_difference(old: tuple[str, ...], new: tuple[str, ...], index: int) -> str:
    where = "before the first block" if index == 0 else f"after block {index}"
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    for op, i1, _, j1, _ in matcher.get_opcodes():
        if op == "insert":
            return f"a line was added to the frozen code {where}: {new[j1].strip()!r}"
        if op == "delete":
            return f"the frozen line {old[i1].strip()!r} ({where}) was removed"
        if op == "replace":
            return (
                f"the frozen line {old[i1].strip()!r} ({where}) was changed to {new[j1].strip()!r}"
            )
    return f"the frozen code {where} was changed"  # pragma: no cover - equal tuples


PROMPT_RULE = (
    f"Only the code between the `# {START_TAG}` and `# {END_TAG}` lines may change. "
    "Everything outside those regions, and the marker lines themselves, must stay exactly "
    "as it is; a candidate that changes it is rejected."
)
