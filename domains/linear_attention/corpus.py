"""A byte-level text corpus that needs no download: the standard library's own prose.

Every docstring of at least ``min_chars`` characters found in the modules of the Python
standard library, plus the help topics in ``pydoc_data.topics``, exact duplicates
removed, split into train / validation by a hash of each document (so adding or losing
one module moves no other document between the splits). Built in seconds, then cached
as two ``.bin`` files under the cache directory, keyed by the build settings and the
Python version (whose standard library it reads), written atomically (temp file +
rename) so parallel evaluators never read half a file.
"""

from __future__ import annotations

import ast
import hashlib
import logging
import os
import sys
import sysconfig
from pathlib import Path

import numpy as np

VERSION = 1  # bump when the build changes


def cache_root(domain: str = "linear_attention") -> Path:
    """``$ASI_EVOLVE_CACHE/<domain>`` or ``~/.cache/asi-evolve/<domain>``."""
    base = os.environ.get("ASI_EVOLVE_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "asi-evolve"
    )
    return Path(base) / domain


def _docstrings(path: Path) -> list[str]:
    try:
        tree = ast.parse(path.read_bytes())
    except (SyntaxError, ValueError, OSError, RecursionError):
        return []
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                found.append(doc)
    return found


def documents(min_chars: int = 200) -> list[str]:
    """The corpus documents in a fixed order (sorted paths, then topic names)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    docs: list[str] = []
    for path in sorted(stdlib.rglob("*.py")):
        parts = set(path.relative_to(stdlib).parts)
        if parts & {"site-packages", "test", "tests", "idle_test", "__pycache__"}:
            continue
        docs.extend(_docstrings(path))
    try:
        from pydoc_data.topics import topics
    except ImportError:  # some distributions strip it
        topics = {}
    docs.extend(topics[name] for name in sorted(topics))
    seen: set[str] = set()
    unique = []
    for doc in docs:
        if len(doc) >= min_chars and doc not in seen:
            seen.add(doc)
            unique.append(doc)
    return unique


def split_of(doc: str, valid_percent: int) -> str:
    digest = hashlib.sha256(doc.encode("utf-8")).digest()
    return "valid" if int.from_bytes(digest[:4], "big") % 100 < valid_percent else "train"


def build(min_chars: int = 200, valid_percent: int = 5) -> dict[str, bytes]:
    """{"train": bytes, "valid": bytes}; documents joined by a blank line."""
    parts: dict[str, list[bytes]] = {"train": [], "valid": []}
    for doc in documents(min_chars):
        parts[split_of(doc, valid_percent)].append(doc.encode("utf-8", errors="replace"))
    return {name: b"\n\n".join(chunks) for name, chunks in parts.items()}


def load(min_chars: int = 200, valid_percent: int = 5) -> dict[str, np.ndarray]:
    """The cached corpus as uint8 arrays {"train", "valid"}, built on first use."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    key = f"corpus-v{VERSION}-py{version}-min{min_chars}-val{valid_percent}"
    folder = cache_root() / key
    paths = {name: folder / f"{name}.bin" for name in ("train", "valid")}
    if not all(p.is_file() for p in paths.values()):
        built = build(min_chars, valid_percent)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for name, data in built.items():
                tmp = paths[name].with_suffix(f".tmp{os.getpid()}")
                tmp.write_bytes(data)
                os.replace(tmp, paths[name])
        except OSError as exc:  # e.g. a sandbox without a writable cache: build every time
            logging.getLogger(__name__).warning("corpus cache not written (%s)", exc)
            return {name: np.frombuffer(data, dtype=np.uint8) for name, data in built.items()}
    return {name: np.fromfile(p, dtype=np.uint8) for name, p in paths.items()}
