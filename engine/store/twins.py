"""Programs proposed twice: the first evaluation of a program's text is reused, not re-run.

A researcher proposes the same program again more often than one would think: an LLM
answers two similar prompts alike, a constant tuner steps back to where it was, a debug
fix restores the parent. Measured on the offline researcher, 3-11 % of a run's budget went
to programs already evaluated. An evaluation is the expensive part of a step (minutes on a
CPU, hours on a GPU), and for a deterministic evaluator running it again adds nothing; for a
noisy one, a second draw lets a lucky copy climb the ranking. So the engine looks the
program up before it runs anything and, where an earlier node evaluated the same text,
takes that node's outcome and says so (``engineer.reuse_evaluations: false`` turns it off).

The lookup is the optional table ``program_hashes`` (``engine/store/schema.py``): the
SHA-256 of the program's text, with trailing blanks of each line and trailing blank lines
dropped, to the first node that evaluated it. A run from before the table was filled is
indexed once when the engine starts. Reused: a done node, and a failed one whose evaluator
said so itself (it exited non-zero or marked the candidate invalid). Not reused: a timeout,
a killed or lost process, a failure before the evaluator ran, and a pruned node: the next
try may well differ.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from engine.store import schema
from engine.store.records import Node
from engine.store.schema import DONE, FAILED

if TYPE_CHECKING:
    from engine.store.run_store import RunStore

TWIN_KEY = "duplicate_of"  # node metadata (and results): the node whose evaluation was reused


def program_hash(code: str) -> str:
    """The hash of what runs: trailing blanks and trailing blank lines do not count."""
    text = "\n".join(line.rstrip() for line in code.rstrip().split("\n"))
    return hashlib.sha256(text.encode()).hexdigest()


def reusable(node: Node) -> bool:
    """Whether another node with this program may take ``node``'s outcome as its own."""
    if node.status == DONE:
        return node.score is not None
    if node.status != FAILED or not node.results:
        return False
    if node.results.get("timed_out") or node.results.get(TWIN_KEY) is not None:
        return False
    code = node.results.get("returncode")
    return isinstance(code, int) and code >= 0  # a signal (OOM killer, kill) may not repeat


def index(store: RunStore) -> None:
    """Create ``program_hashes`` where it is missing and fill it from the run's nodes, in
    step order (the first node that evaluated a program is the one reused)."""
    conn = store.db.conn
    present = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
        [schema.PROGRAM_HASHES.name],
    ).fetchone()
    if present:
        return
    with conn:
        schema.create_tables(conn, [schema.PROGRAM_HASHES])
        rows = []
        for node in store.nodes("status IN (?, ?)", [DONE, FAILED]):
            if reusable(node):
                rows.append((program_hash(node.code), node.id))
        rows.sort(key=lambda row: row[1])
        conn.executemany("INSERT OR IGNORE INTO program_hashes(hash, node_id) VALUES (?, ?)", rows)


def remember(store: RunStore, node: Node) -> None:
    """Book ``node``'s program once its evaluation is committed (the first one stays)."""
    if node.id is None or not reusable(node):
        return
    with store.db.conn:
        store.db.conn.execute(
            "INSERT OR IGNORE INTO program_hashes(hash, node_id) VALUES (?, ?)",
            [program_hash(node.code), node.id],
        )


def find(store: RunStore, code: str, exclude: int | None = None) -> Node | None:
    """The earlier node whose evaluation ``code`` may take, or None."""
    digest = program_hash(code)
    row = store.db.conn.execute(
        "SELECT node_id FROM program_hashes WHERE hash = ?", [digest]
    ).fetchone()
    if row is None or row[0] == exclude:
        return None
    twin = store.get_node(row[0])
    if twin is None or not reusable(twin) or program_hash(twin.code) != digest:
        return None  # pruned since, or gone: evaluate this one
    return twin


def reuse(twin: Node, analyzed: bool = True) -> dict[str, Any]:
    """The fields a copy of ``twin``'s program takes from it: its outcome, none of its time;
    a note for its analysis unless the run has none (``analyzed``: the analyzer is on)."""
    results = {**twin.results, TWIN_KEY: twin.id}
    error = f"same program as #{twin.id}: {twin.error}" if twin.error else ""
    return {
        "results": results,
        "score": twin.score if twin.status == DONE else None,
        "status": twin.status,
        "error": error,
        "runtime": 0.0,
        "analysis": f"Same program as #{twin.id}; its evaluation was reused, not run again."
        if analyzed
        else "",
    }
