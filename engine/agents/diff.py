"""Reading a model's answer: SEARCH/REPLACE edit blocks and ``<tag>`` sections.

Edits are applied *exactly*: a SEARCH text must equal whole lines of the current
program, once. A near miss is never guessed at - it is reported back (which block, and
the closest lines of the program) so the model can correct itself; a silently
misapplied edit would evaluate a program nobody wrote.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from engine.agents.evolve_block import frozen_violation, has_markers

SEARCH = re.compile(r"^\s*<{5,}\s*SEARCH\s*$")
DIVIDER = re.compile(r"^\s*={5,}\s*$")
REPLACE = re.compile(r"^\s*>{5,}\s*REPLACE\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")


class DiffError(Exception):
    """The edits cannot be used; the message is written for the model to act on."""


@dataclass
class Block:
    number: int  # 1-based, in the order the model wrote them
    search: list[str]
    replace: list[str]


def parse_blocks(text: str) -> list[Block]:
    """All SEARCH/REPLACE blocks in ``text`` (code fences around them are ignored)."""
    lines = text.replace("\r\n", "\n").split("\n")
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        if not SEARCH.match(lines[i]):
            i += 1
            continue
        number = len(blocks) + 1
        search, i = _until(lines, i + 1, DIVIDER, number, "=======")
        replace, i = _until(lines, i + 1, REPLACE, number, ">>>>>>> REPLACE")
        blocks.append(Block(number, search, replace))
        i += 1
    return blocks


def _until(
    lines: list[str], start: int, end: re.Pattern, number: int, marker: str
) -> tuple[list[str], int]:
    """Lines from ``start`` up to the ``end`` marker, and the marker's index."""
    for j in range(start, len(lines)):
        if end.match(lines[j]):
            section = lines[start:j]
            if len(section) >= 2 and FENCE.match(section[0]) and FENCE.match(section[-1]):
                section = section[1:-1]  # a fence written inside the block
            return section, j
        if SEARCH.match(lines[j]):
            break
    raise DiffError(f"block {number} is incomplete: no '{marker}' line (was the answer cut off?)")


def apply_blocks(code: str, blocks: list[Block]) -> str:
    """``code`` with every block applied in order; DiffError naming each block that failed."""
    if not blocks:
        raise DiffError("no SEARCH/REPLACE blocks found")
    lines = code.split("\n")
    problems: list[str] = []
    guarded = has_markers(code)  # EVOLVE-BLOCK markers: text outside them is frozen
    for block in blocks:
        try:
            changed = _apply(lines, block)
        except DiffError as exc:
            problems.append(str(exc))
            continue
        violation = frozen_violation(code, "\n".join(changed)) if guarded else ""
        if violation:
            problems.append(f"block {block.number}: refused, {violation}")
        else:
            lines = changed
    if problems:
        return_hint = (
            "\nCopy SEARCH text exactly from the current program (whitespace included); "
            "every block is applied to the program as changed by the blocks before it."
        )
        raise DiffError("\n\n".join(problems) + return_hint)
    return "\n".join(lines)


def _apply(lines: list[str], block: Block) -> list[str]:
    search = _trim_blank_edges(block.search)
    if not search:
        raise DiffError(f"block {block.number}: the SEARCH section is empty")
    n = len(search)
    hits = [i for i in range(len(lines) - n + 1) if lines[i : i + n] == search]
    if len(hits) > 1:
        where = ", ".join(str(h + 1) for h in hits[:5])
        raise DiffError(
            f"block {block.number}: the SEARCH text matches {len(hits)} places (lines {where}); "
            "include more surrounding lines so it matches exactly one"
        )
    if not hits:
        raise DiffError(
            f"block {block.number}: the SEARCH text does not match the program.\n"
            + closest_lines(lines, search)
        )
    at = hits[0]
    # Blank lines trimmed from the edges of SEARCH are trimmed from REPLACE as well.
    lead = _blank_run(block.search)
    trail = _blank_run(block.search[::-1]) if lead < len(block.search) else 0
    replace = block.replace[min(lead, _blank_run(block.replace)) :]
    cut = min(trail, _blank_run(replace[::-1]))
    replace = replace[: len(replace) - cut]
    return lines[:at] + replace + lines[at + n :]


def _blank_run(lines: list[str]) -> int:
    count = 0
    while count < len(lines) and not lines[count].strip():
        count += 1
    return count


def _trim_blank_edges(lines: list[str]) -> list[str]:
    start, end = 0, len(lines)
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return lines[start:end]


def closest_lines(lines: list[str], search: list[str]) -> str:
    """The window of the program most similar to ``search``, with line numbers."""
    n = len(search)
    if not lines:
        return "The program is empty."
    target = "\n".join(search)
    best_at, best_ratio = 0, -1.0
    for i in range(max(1, len(lines) - n + 1)):
        ratio = difflib.SequenceMatcher(None, "\n".join(lines[i : i + n]), target).ratio()
        if ratio > best_ratio:
            best_at, best_ratio = i, ratio
    window = lines[best_at : best_at + n]
    numbered = "\n".join(f"{best_at + k + 1:>5}| {text}" for k, text in enumerate(window))
    hint = ""
    if [w.rstrip() for w in window] == [s.rstrip() for s in search]:
        hint = "\n(they differ only in trailing whitespace)"
    elif [w.strip() for w in window] == [s.strip() for s in search]:
        hint = "\n(they differ only in indentation)"
    return f"Closest lines of the program ({best_ratio:.0%} similar):\n{numbered}{hint}"


# ------------------------------------------------------------------- tags
def extract_tag(text: str, name: str) -> str | None:
    """The content of the last complete ``<name>...</name>``, fences stripped; else None."""
    matches = re.findall(rf"<{name}>(.*?)</{name}>", text, flags=re.DOTALL | re.IGNORECASE)
    if not matches:
        return None
    return strip_fences(matches[-1])


def extract_all(text: str, name: str) -> list[str]:
    pattern = rf"<{name}>(.*?)</{name}>"
    return [m.strip() for m in re.findall(pattern, text, flags=re.DOTALL | re.IGNORECASE)]


def has_open_tag(text: str, name: str) -> bool:
    """``<name>`` opened but never closed: the answer was most likely cut off."""
    lower = text.lower()
    return lower.rfind(f"<{name}>") > lower.rfind(f"</{name}>")


def strip_fences(text: str) -> str:
    """Drop a Markdown code fence around ``text`` (```python ... ```), if there is one."""
    lines = text.strip("\n").split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    if len(lines) >= 2 and FENCE.match(lines[0]) and FENCE.match(lines[-1]):
        lines = lines[1:-1]
    return "\n".join(lines)


def strip_blocks(text: str) -> str:
    """``text`` without its SEARCH/REPLACE blocks (for reading the prose around them)."""
    pattern = r"<{5,}\s*SEARCH.*?>{5,}\s*REPLACE"
    return re.sub(pattern, "", text, flags=re.DOTALL)
