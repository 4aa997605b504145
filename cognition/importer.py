"""Reading knowledge items from files: YAML, JSONL and Markdown.

* YAML: ``items: [{title, content, tags, source}, ...]`` (a task's ``cognition.yaml``), or a
  bare list of such mappings.
* JSONL: one such object per line; blank lines are skipped.
* Markdown: one item per ``## Title`` section; the section's text is the content. Lines
  ``Tags: a, b`` and ``Source: ...`` right under the heading are metadata. Text before the first
  ``##`` (a ``# Title``, an introduction) is ignored.

A file is parsed and checked as a whole before anything is stored: one bad item rejects the
file with a one-line error naming where it is.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from cognition.items import CognitionError, Draft, make_draft

FORMATS = {".yaml": "yaml", ".yml": "yaml", ".jsonl": "jsonl", ".md": "markdown"}
FORMAT_NAMES = ("yaml", "jsonl", "markdown")
_META = re.compile(r"^(tags|source)\s*:\s*(.*)$", re.IGNORECASE)


def detect_format(path: Path, requested: str | None = None) -> str:
    if requested:
        name = {"md": "markdown", "yml": "yaml"}.get(requested, requested)
        if name not in FORMAT_NAMES:
            raise CognitionError(
                f"unknown format {requested!r} (choose from yaml, jsonl, markdown)"
            )
        return name
    suffix = path.suffix.lower()
    if suffix == ".markdown":
        return "markdown"
    if suffix not in FORMATS:
        raise CognitionError(
            f"unknown format of {path.name!r}: use a .yaml, .jsonl or .md file, or --format"
        )
    return FORMATS[suffix]


def load_file(path: Path, fmt: str | None = None) -> list[Draft]:
    """All items of ``path``, checked; a CognitionError if the file is unusable."""
    fmt = detect_format(path, fmt)
    if not path.is_file():
        raise CognitionError(f"{path}: no such file")
    if fmt == "yaml":  # size, encoding, then aliases and nesting in parse_yaml
        from engine.yaml_input import read_text  # PyYAML: only when a file is read

        text = read_text(path, CognitionError, "cognition file")
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CognitionError(f"{path}: cannot read ({exc})") from None
    parse = {"yaml": parse_yaml, "jsonl": parse_jsonl, "markdown": parse_markdown}[fmt]
    drafts = parse(text, str(path))
    if not drafts:
        raise CognitionError(f"{path}: no items found")
    return drafts


def parse_yaml(text: str, where: str) -> list[Draft]:
    from engine.yaml_input import parse_yaml as load_yaml_text

    data = load_yaml_text(text, where, CognitionError)  # the engine's guarded loader
    if isinstance(data, dict):
        if set(data) - {"items"}:
            extra = ", ".join(sorted(map(str, set(data) - {"items"})))
            raise CognitionError(f"{where}: unknown top-level key(s) {extra} (expected 'items')")
        data = data.get("items")
    if not isinstance(data, list):
        raise CognitionError(f"{where}: expected 'items:' with a list of items")
    return [make_draft(raw, f"{where}: item {i + 1}") for i, raw in enumerate(data)]


def parse_jsonl(text: str, where: str) -> list[Draft]:
    drafts = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except ValueError as exc:
            raise CognitionError(f"{where}: line {number}: malformed JSON ({exc})") from None
        drafts.append(make_draft(raw, f"{where}: line {number}"))
    return drafts


def parse_markdown(text: str, where: str) -> list[Draft]:
    sections: list[tuple[int, str, list[str]]] = []
    in_fence = False
    for number, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
        if not in_fence and re.match(r"^##(?!#)\s*", line):
            sections.append((number, line[2:].strip(), []))
        elif sections:
            sections[-1][2].append(line)
    drafts = []
    for number, title, body in sections:
        meta: dict[str, str] = {}
        lines = list(body)
        while lines and (not lines[0].strip() or _META.match(lines[0].strip())):
            match = _META.match(lines.pop(0).strip())
            if match:
                meta[match.group(1).lower()] = match.group(2).strip()
        raw = {"title": title, "content": "\n".join(lines).strip(), **meta}
        drafts.append(make_draft(raw, f"{where}: line {number} ({title or 'untitled'})"))
    return drafts
