"""The one way the engine reads YAML that a user hands it: run configs, task.yaml, cognition.

``yaml.safe_load`` is safe from code execution but not from input built to hurt: an alias
bomb ("billion laughs") composes cheaply but expands into billions of objects as soon as
anything walks, copies or dumps it; an alias to its own ancestor makes a cyclic structure;
nesting a few thousand levels deep overflows the recursion of the composer and of every
later walk. This loader refuses those up front, each as a one-line error of the caller's
type (``ConfigError``, ``TaskError``, ``CognitionError``):

* a file over ``MAX_BYTES``, not a regular file, unreadable, with NUL bytes or not UTF-8;
* more than ``MAX_NODES`` nodes once aliases are expanded, or an alias inside its own anchor;
* collections nested deeper than ``MAX_DEPTH`` levels (aliases expanded);
* a key given twice in one mapping (YAML silently keeps the last one; merge keys are fine);
* tags beyond plain data (``!!binary``, ``!!set``, ``!!timestamp``, ...), and integers too
  long to convert. An unquoted date stays a string rather than becoming a ``datetime``, so
  everything loaded is JSON data, as the run database stores it.

The limits are checked on the parser's event stream before any node is composed: the scan
is iterative and keeps one count per open collection and one per anchor, so a bomb costs
what its text costs.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml
from yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    DocumentStartEvent,
    ScalarEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_BYTES = 1_000_000  # configs and task files are a few KB; cognition seeds a few hundred
MAX_NODES = 100_000  # after alias expansion; the largest shipped file has a few thousand
MAX_DEPTH = 100  # nested collections; shipped files nest < 10, Python recursion allows ~300

_BASE: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available
_PLAIN_TAGS = {
    f"tag:yaml.org,2002:{name}" for name in ("null", "bool", "int", "float", "str", "seq", "map")
}
_INT = "tag:yaml.org,2002:int"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
MAX_INT_CHARS = 100  # far beyond any 64-bit setting; huge ints break str(), JSON, SQLite
_MERGE = "tag:yaml.org,2002:merge"


class _Loader(_BASE):  # type: ignore[misc, valid-type]
    """Safe loading of plain data only: no timestamps, sets, binary or ordered maps."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP]
    for first, resolvers in _BASE.yaml_implicit_resolvers.items()
}
_Loader.yaml_constructors = {
    tag: constructor
    for tag, constructor in _BASE.yaml_constructors.items()
    if tag in _PLAIN_TAGS or tag is None  # None: the "unknown tag" error
}


def _construct_int(loader: Any, node: ScalarNode) -> int:
    if len(node.value) > MAX_INT_CHARS:
        raise yaml.constructor.ConstructorError(
            None,
            None,
            f"integer {node.value[:20]}... is too long (limit {MAX_INT_CHARS} characters)",
            node.start_mark,
        )
    return yaml.constructor.SafeConstructor.construct_yaml_int(loader, node)


_Loader.yaml_constructors[_INT] = _construct_int


def load_yaml(path: Path, error: type[Exception], what: str = "YAML file") -> Any:
    """Read and parse the YAML file ``path``; any problem is one line of type ``error``."""
    return parse_yaml(read_text(path, error, what), str(path), error)


def read_text(path: Path, error: type[Exception], what: str = "file") -> str:
    """The UTF-8 text of a regular file of at most ``MAX_BYTES`` (a BOM is dropped)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise error(f"{what} {path} not found") from None
    except (OSError, ValueError) as exc:
        raise error(f"{what} {_short_path(path)}: cannot read ({_reason(exc)})") from None
    if stat.S_ISDIR(info.st_mode):
        raise error(f"{what} {path} is a directory, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{what} {path} is not a regular file")
    _check_size(info.st_size, path, error)
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_BYTES + 1)  # a file growing meanwhile reads no further
    except OSError as exc:
        raise error(f"{what} {path}: cannot read ({_reason(exc)})") from None
    _check_size(len(data), path, error)
    if b"\x00" in data:
        raise error(f"{path}: not a UTF-8 text file (it has NUL bytes)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not a UTF-8 text file (bad byte at offset {exc.start})") from None
    return text.removeprefix("\ufeff")


def parse_yaml(text: str, where: str, error: type[Exception]) -> Any:
    """Parse one YAML document of plain data (None for an empty one), within the limits."""
    if len(text) > MAX_BYTES:
        raise error(f"{where}: too large ({len(text)} characters; limit {MAX_BYTES})")
    try:
        _check_events(text, where, error)
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _check_duplicate_keys(node, where, error)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except error:
        raise
    except yaml.YAMLError as exc:
        reason = _one_line(exc).replace('in "<unicode string>", ', "at ")
        if "maximum nesting depth" in reason:  # libyaml's own limit met while reading ahead
            raise error(f"{where}: YAML nested too deeply (limit {MAX_DEPTH} levels)") from None
        raise error(f"{where}: malformed YAML ({reason})") from None
    except RecursionError:  # not expected within MAX_DEPTH; a last guard against a traceback
        raise error(f"{where}: YAML nested too deeply (limit {MAX_DEPTH} levels)") from None
    except (ValueError, OverflowError) as exc:  # e.g. an integer of 5,000 digits
        raise error(f"{where}: unusable YAML value ({_one_line(exc)})") from None


def _check_events(text: str, where: str, error: type[Exception]) -> None:
    """Count nodes and nesting with aliases expanded, from the event stream, iteratively."""
    nodes = 0  # expanded nodes so far, in all documents
    anchors: dict[str, tuple[int, int]] = {}  # anchor -> (expanded nodes, expanded depth)
    # Open collections: [anchor, nodes before it started, deepest child below it].
    stack: list[list[Any]] = []
    open_anchors: set[str] = set()
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, DocumentStartEvent):
            anchors.clear()
            continue
        if isinstance(event, CollectionStartEvent):
            if len(stack) >= MAX_DEPTH:
                raise error(f"{where}: YAML nested too deeply (limit {MAX_DEPTH} levels)")
            stack.append([event.anchor, nodes, 0])
            if event.anchor is not None:
                open_anchors.add(event.anchor)
            nodes += 1
            _check_count(nodes, where, error)
            continue
        if isinstance(event, CollectionEndEvent):
            anchor, before, deepest = stack.pop()
            size, depth = nodes - before, deepest + 1
            if anchor is not None:
                open_anchors.discard(anchor)
                anchors[anchor] = (size, depth)
        elif isinstance(event, ScalarEvent):
            nodes += 1
            depth = 0
            if event.anchor is not None:
                anchors[event.anchor] = (1, 0)
        elif isinstance(event, AliasEvent):
            if event.anchor in open_anchors:
                line = event.start_mark.line + 1 if event.start_mark else "?"
                raise error(
                    f"{where}: recursive YAML alias *{event.anchor} (line {line}) "
                    "refers to a collection that contains it"
                )
            if event.anchor not in anchors:
                continue  # undefined: the composer reports it with its position
            size, depth = anchors[event.anchor]
            nodes += size
        else:
            continue
        _check_count(nodes, where, error)
        if stack:
            if len(stack) + depth > MAX_DEPTH:
                raise error(f"{where}: YAML nested too deeply (limit {MAX_DEPTH} levels)")
            stack[-1][2] = max(stack[-1][2], depth)


def _check_duplicate_keys(root: Node, where: str, error: type[Exception]) -> None:
    """A scalar key twice in one mapping, checked on the composed (unmerged) nodes."""
    seen: set[int] = set()
    todo = [root]
    while todo:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, MappingNode):
            keys: set[tuple[str, str]] = set()
            for key, value in node.value:
                todo.append(key)
                todo.append(value)
                if not isinstance(key, ScalarNode) or key.tag == _MERGE:
                    continue
                if (key.tag, key.value) in keys:
                    raise error(
                        f"{where}: duplicate key {_clip(key.value)!r} "
                        f"(line {key.start_mark.line + 1})"
                    )
                keys.add((key.tag, key.value))
        elif isinstance(node, SequenceNode):
            todo.extend(node.value)


def _check_count(nodes: int, where: str, error: type[Exception]) -> None:
    if nodes > MAX_NODES:
        raise error(f"{where}: too many YAML nodes after expanding aliases (limit {MAX_NODES})")


def _check_size(size: int, path: Path, error: type[Exception]) -> None:
    if size > MAX_BYTES:
        raise error(f"{path}: file too large ({size} bytes; limit {MAX_BYTES})")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return _one_line(exc)


def _short_path(path: Path) -> str:
    text = str(path)
    return text if len(text) <= 200 else text[:197] + "..."


def _clip(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "..."


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 500 else text[:497] + "..."
