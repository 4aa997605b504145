"""What the engine made of each design of a research replay, read from the run database.

A design is found by the name its researcher answer gave (the first researcher call of a
node, ``llm_calls``), so a design whose program never existed (malformed answers) is
still matched to its failed node. Its fate is derived only from what the run recorded:
the static-check verdict, the stages under ``results["stages"]``, the debug attempts and
the researcher's repair turns in the node's metadata.
"""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from replay_model import DomainScript


@dataclass
class Fate:
    design: str
    expect: str
    outcome: str = "not proposed"  # explored | repaired | static-check | check-stage | ...
    step: int | None = None
    checked: str = "-"
    repaired: str = "-"
    explored: str = "-"
    versus: str = "-"  # the explore stage's own comparison with the baseline, where it has one
    promoted: str = "-"
    verified: str = "-"
    beats: str = "-"
    why: str = ""  # the refusal or error, in full

    @property
    def as_expected(self) -> bool:
        return self.outcome == self.expect


def _rows(db: sqlite3.Connection, sql: str) -> list[sqlite3.Row]:
    try:
        return list(db.execute(sql))
    except sqlite3.OperationalError:  # a table the run never created
        return []


def fates(run_dir: Path, script: DomainScript) -> tuple[list[Fate], dict[str, int], list[str]]:
    """(fate per design, LLM calls per role, titles of pending Analyzer proposals)."""
    db = sqlite3.connect(f"file:{run_dir / 'evolve.db'}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        named: dict[int, str] = {}
        for call in _rows(db, "SELECT node_id, response FROM llm_calls WHERE role = "
                              "'researcher' AND ok = 1 ORDER BY id"):  # fmt: skip
            found = re.search(r"<name>(.*?)</name>", call["response"] or "")
            if call["node_id"] is not None and found:
                named.setdefault(call["node_id"], found.group(1).strip())
        nodes = {n["id"]: n for n in _rows(db, "SELECT * FROM nodes WHERE step >= 1")}
        calls = {
            r[0]: r[1] for r in _rows(db, "SELECT role, COUNT(*) FROM llm_calls GROUP BY role")
        }
        pending = [
            r["title"]
            for r in _rows(
                db,
                "SELECT title FROM cognition_items WHERE status = 'pending' "
                "AND origin = 'analyzer' ORDER BY id",
            )
        ]
    finally:
        db.close()
    by_design = {name: node_id for node_id, name in sorted(named.items(), reverse=True)}
    out = []
    for design in script.designs:
        fate = Fate(design.name, design.expect)
        node_id = by_design.get(design.name)
        if node_id is not None and node_id in nodes:
            _read(fate, nodes[node_id])
        out.append(fate)
    return out, calls, pending


def _read(fate: Fate, node: sqlite3.Row) -> None:
    meta: dict[str, Any] = json.loads(node["metadata"] or "{}")
    results: dict[str, Any] = json.loads(node["results"] or "{}")
    # committed stages of an unfinished node (a stopped run) are still in its metadata
    stages: dict[str, Any] = results.get("stages") or meta.get("stages") or {}
    error = node["error"] or ""
    fate.step = node["step"]
    research = meta.get("researcher") or {}
    fixes = [a for a in meta.get("debug_attempts") or [] if a.get("outcome") == "fixed"]
    repairs = []
    if research.get("repairs"):
        repairs.append(f"answer x{research['repairs']}")
    if research.get("fallback"):
        repairs.append("full rewrite")
    if meta.get("debug_attempts"):
        repairs.append(f"debug {len(fixes)}/{len(meta['debug_attempts'])} fixed")
    fate.repaired = ", ".join(repairs) or "-"
    check = stages.get("check") or {}
    if error.startswith("researcher:"):
        fate.outcome, fate.checked, fate.why = "malformed", "no program", error
    elif error.startswith("static check:"):
        fate.outcome, fate.checked, fate.why = "static-check", "refused: LLM review", error
    elif check and not check.get("ok"):
        fate.outcome, fate.checked, fate.why = "check-stage", "refused: check", check["error"]
    elif check.get("ok"):
        fate.checked = "passed"
        if meta.get("static_check") == "passed":
            fate.checked = "passed (+LLM review)"
    explore = stages.get("explore") or {}
    if explore:
        fate.explored = _score(explore) if explore.get("ok") else "failed"
        deltas = [_metric(explore, key) for key in ("delta_bpb", "delta_mqar")]
        if all(isinstance(d, int | float) for d in deltas):  # linear_attention reports them
            fate.versus = f"bpb {deltas[0]:+.4f} mqar {deltas[1]:+.4f}"
    verify = stages.get("verify") or {}
    if verify.get("skipped"):
        fate.promoted, fate.why = "no", fate.why or f"verify skipped: {verify['skipped']}"
    elif verify:
        fate.promoted = "yes"
        fate.verified = _score(verify) if verify.get("ok") else "failed"
        beats = _metric(verify, "beats_baseline")
        fate.beats = "-" if beats is None else ("yes" if beats else "no")
    if node["status"] == "done":
        fate.outcome = "repaired" if fixes else "explored"
    elif node["status"] in ("pending", "running"):  # the run stopped before it finished
        fate.outcome = f"unfinished ({node['status']})"
    elif fate.outcome == "not proposed":
        fate.outcome, fate.why = f"failed ({node['status']})", error


def _score(stage: dict[str, Any]) -> str:
    score = stage.get("score")
    return "-" if score is None else f"{score:.4g}"


def _metric(stage: dict[str, Any], key: str) -> Any:
    results = stage.get("results") or {}
    return results.get(key, (results.get("metrics") or {}).get(key))


COLUMNS = (
    ("design", "design"),
    ("step", "step"),
    ("expected", "expect"),
    ("fate", "outcome"),
    ("checked", "checked"),
    ("repaired", "repaired"),
    ("explore", "explored"),
    ("explore vs baseline", "versus"),
    ("promoted", "promoted"),
    ("verify", "verified"),
    ("beats baseline", "beats"),
)


def table(found: list[Fate]) -> str:
    """A fixed-width table of the fates, then the reason behind every refusal or error."""
    cells = [[str(getattr(f, attr) if getattr(f, attr) is not None else "-") for _, attr in COLUMNS]
             for f in found]  # fmt: skip
    head = [title for title, _ in COLUMNS]
    widths = [max(len(row[i]) for row in [head, *cells]) for i in range(len(head))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [head, *cells]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    mismatched = [f.design for f in found if not f.as_expected]
    lines.append(f"\n{len(found) - len(mismatched)}/{len(found)} designs met their expected fate"
                 + (f"; not: {', '.join(mismatched)}" if mismatched else ""))  # fmt: skip
    lines += [f"  {f.design}: {' '.join(f.why.split())[:300]}" for f in found if f.why]
    return "\n".join(lines)
