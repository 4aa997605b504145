"""Clean reference documents that exist on every Python install, with no download.

The built-in corpus needs real prose whose clean form is known exactly, so that the
noise we inject later is the only thing a cleaner should remove. Two offline sources
qualify: the docstrings of the standard library (read with ``ast`` from the source files,
never imported, so no module's import side effects run) and the sections of the language
reference shipped in ``pydoc_data.topics``. Both are deterministic for a given Python
version, which is part of the corpus cache key.

The documents are split by a stable hash into three disjoint parts: ``dev`` (what the
explore stage scores), ``heldout`` (the verify stage's variant) and ``lm`` (the clean
text the n-gram and neural reference LMs are trained on).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import os
import sysconfig
from collections.abc import Iterator

MIN_CHARS = 300  # shorter docstrings are mostly one-liners with little prose
MAX_CHARS = 6000  # longer ones are cut at a paragraph boundary
SKIP_DIRS = {"test", "tests", "idlelib", "site-packages", "dist-packages", "lib2to3", "__pycache__"}
PART_SHARES = (("dev", 0.5), ("heldout", 0.3), ("lm", 0.2))


def stdlib_docstrings() -> Iterator[str]:
    """Module, class and function docstrings of the standard library, in a fixed order."""
    root = sysconfig.get_paths()["stdlib"]
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        for name in sorted(filenames):
            if not name.endswith(".py"):
                continue
            try:
                with open(os.path.join(dirpath, name), encoding="utf-8") as handle:
                    tree = ast.parse(handle.read())
            except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
                continue
            for node in ast.walk(tree):
                if isinstance(
                    node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef
                ):
                    doc = ast.get_docstring(node)
                    if doc:
                        yield doc


def pydoc_sections() -> Iterator[str]:
    """The language-reference topics, cut into chunks of whole paragraphs."""
    try:
        from pydoc_data.topics import topics
    except ImportError:  # some distributions strip pydoc_data
        return
    for key in sorted(topics):
        yield from _chunks(topics[key], target=2000)


def _chunks(text: str, target: int) -> Iterator[str]:
    """Paragraph-aligned pieces of about ``target`` characters."""
    piece: list[str] = []
    size = 0
    for para in text.split("\n\n"):
        piece.append(para)
        size += len(para) + 2
        if size >= target:
            yield "\n\n".join(piece)
            piece, size = [], 0
    if piece:
        yield "\n\n".join(piece)


def _trim(text: str) -> str:
    text = "\n".join(line.rstrip() for line in text.strip().splitlines())
    if len(text) <= MAX_CHARS:
        return text
    cut = text.rfind("\n\n", 0, MAX_CHARS)
    return text[: cut if cut > MIN_CHARS else MAX_CHARS].rstrip()


def part_of(text: str) -> str:
    """Which part (dev / heldout / lm) a document belongs to: a stable hash of its text."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    edge = 0.0
    for name, share in PART_SHARES:
        edge += share
        if u < edge:
            return name
    return PART_SHARES[-1][0]


@functools.lru_cache(maxsize=1)
def reference_documents() -> dict[str, list[str]]:
    """All clean documents (>= MIN_CHARS, de-duplicated), grouped by part, in fixed order.

    Memoised: parsing the standard library takes seconds and one evaluator may build
    several corpora from it. Callers must not modify the lists.
    """
    parts: dict[str, list[str]] = {name: [] for name, _ in PART_SHARES}
    seen: set[str] = set()
    for raw in _all_texts():
        text = _trim(raw)
        if len(text) < MIN_CHARS or text in seen:
            continue
        seen.add(text)
        parts[part_of(text)].append(text)
    return parts


def _all_texts() -> Iterator[str]:
    yield from stdlib_docstrings()
    yield from pydoc_sections()
