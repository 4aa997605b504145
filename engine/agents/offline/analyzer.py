"""The built-in Analyzer used when no LLM is configured: a rule-based report.

Without a model the useful thing to say about a node is what moved and which way: the
score and each numeric metric against the parent and against the best context node,
the failure reason when it failed, and a verdict on the literal changes the Researcher
recorded in ``metadata["changes"]``. The next round reads it, so it is kept to a few
decision-oriented Markdown lines.

Knowledge is proposed only for patterns across the run (``change_effects``): a move of
one constant seen on several nodes, most of them moving the score the same way, stated
with its mean effect, the number of nodes and how many agreed. One lucky node is not a
lesson, and the cognition base is not flooded with every small step. Uncovered issue
types of a task's breakdown table are the other kind of proposal.
"""

from __future__ import annotations

import math

from engine import direction
from engine.agents.base import AnalysisInput, Report
from engine.agents.offline.change_effects import ChangeEffects
from engine.store.records import DONE, Node

MAX_METRICS = 8  # metric lines per report
MAX_CHANGES = 4  # changes quoted per report
UNCOVERED = 0.5  # a breakdown row whose "removed" share is below this is an uncovered issue
MAX_ROWS = 6  # breakdown rows quoted per report (worst first)


class OfflineAnalyzer:
    """States how the node moved against its parent and the best context node."""

    label = "offline"

    def __init__(self) -> None:
        self.effects = ChangeEffects()  # moves and their score changes seen this run
        self.flagged: set[str] = set()  # breakdown issue types already proposed this run

    async def analyze(self, inp: AnalysisInput) -> Report:
        node, parent, best = inp.node, inp.parent, inp.best
        changes = _changes(node)
        moved = self.effects.observe(node, parent, inp.maximize)
        proposals = self.effects.proposals(moved, inp.task_name)
        lines: list[str] = []
        if node.status != DONE or node.score is None:
            reason = node.error or "no score was produced"
            lines.append(f"- **Failed**: {reason}")
            if changes:
                lines.append(
                    f"- Cause to avoid: {changes} broke the program"
                    f"{_vs(parent)}; do not repeat this change, move other literals instead."
                )
            return Report(
                analysis="\n".join(lines),
                knowledge_proposals=proposals,
                metadata={"verdict": "failed"},
            )

        lines.append(f"- Score {node.score:.6g}{_delta(node, parent, inp.maximize, 'parent')}")
        if best is not None and best.id != node.id and (parent is None or best.id != parent.id):
            lines.append(f"- Against the best context node{_delta(node, best, inp.maximize, '')}")
        lines += _metric_lines(node, parent)
        lines += _breakdown_lines(node)
        verdict = _verdict(node, parent, inp.maximize)
        if changes and parent is not None and parent.score is not None:
            lines.append(_change_line(changes, verdict, node.score - parent.score, parent))
        proposals += _issue_proposals(inp, self.flagged)
        return Report(
            analysis="\n".join(lines),
            knowledge_proposals=proposals,
            metadata={"verdict": verdict},
        )


def _delta(node: Node, other: Node | None, maximize: bool, label: str) -> str:
    """`` (+0.041 vs parent #3 at 0.96: better)`` or an empty string."""
    if other is None or other.score is None or node.score is None:
        return ""
    diff = node.score - other.score
    word = {"better": "better", "worse": "worse", "same": "unchanged"}[
        _direction(diff, other.score, maximize)
    ]
    who = f"{label} #{other.id}".strip()
    return f" ({diff:+.4g} vs {who} at {other.score:.6g}: {word})"


def _direction(diff: float, reference: float, maximize: bool) -> str:
    if abs(diff) <= 1e-12 * max(1.0, abs(reference)):
        return "same"
    return "better" if direction.improved(diff, maximize) else "worse"


def _verdict(node: Node, parent: Node | None, maximize: bool) -> str:
    if parent is None or parent.score is None or node.score is None:
        return "new"
    return {"better": "improved", "worse": "regressed", "same": "neutral"}[
        _direction(node.score - parent.score, parent.score, maximize)
    ]


def _metric_lines(node: Node, parent: Node | None) -> list[str]:
    """One line per numeric metric: value, and its move against the parent."""
    mine = _numeric_metrics(node)
    theirs = _numeric_metrics(parent) if parent is not None else {}
    parts = []
    for name, value in list(mine.items())[:MAX_METRICS]:
        old = theirs.get(name)
        if old is None:
            parts.append(f"{name} {value:.4g}")
        elif value == old:
            parts.append(f"{name} {value:.4g} (=)")
        else:
            parts.append(f"{name} {old:.4g} -> {value:.4g} ({value - old:+.3g})")
    return [f"- Metrics: {'; '.join(parts)}"] if parts else []


def _numeric_metrics(node: Node | None) -> dict[str, float]:
    metrics = (node.results or {}).get("metrics") if node is not None else None
    if not isinstance(metrics, dict):
        return {}
    out = {}
    for name, value in metrics.items():
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            out[str(name)] = float(value)
    return out


def _change_line(changes: str, verdict: str, diff: float, parent: Node) -> str:
    if verdict == "improved":
        return (
            f"- {changes} moved the score by {diff:+.4g} vs parent #{parent.id}: "
            "keep exploring in this direction."
        )
    if verdict == "regressed":
        return (
            f"- {changes} moved the score by {diff:+.4g} vs parent #{parent.id}: "
            "revert it or try the opposite direction."
        )
    return f"- {changes} left the score unchanged: these literals look inert here."


def _changes(node: Node) -> str:
    """``Change line 14 `0.3`->`0.27``` (or ``Changes ...``), or "" without records."""
    changes = node.metadata.get("changes") if isinstance(node.metadata, dict) else None
    if not isinstance(changes, list) or not changes:
        return ""
    shown = [
        f"line {c.get('line')} `{c.get('old')}`->`{c.get('new')}`"
        for c in changes[:MAX_CHANGES]
        if isinstance(c, dict)
    ]
    if not shown:
        return ""
    more = f" (+{len(changes) - MAX_CHANGES} more)" if len(changes) > MAX_CHANGES else ""
    return f"{'Change' if len(changes) == 1 else 'Changes'} {', '.join(shown)}{more}"


def _breakdown(node: Node) -> dict[str, dict]:
    """A task's per-issue-type table: ``results["breakdown"]`` = {type: {"removed": share,
    "kept": share, "docs": n, ...}} (e.g. the data curation evaluator's noise types)."""
    table = (node.results or {}).get("breakdown")
    if not isinstance(table, dict):
        return {}
    return {str(k): v for k, v in table.items() if isinstance(v, dict)}


def _breakdown_lines(node: Node) -> list[str]:
    """``- Per type (worst first): html removed 0.04 kept 0.83; ...`` and the uncovered ones."""
    rows = [(k, v) for k, v in _breakdown(node).items() if _share(v.get("removed")) is not None]
    if not rows:
        return []
    rows.sort(key=lambda kv: _share(kv[1]["removed"]))
    parts = []
    for label, row in rows[:MAX_ROWS]:
        kept = _share(row.get("kept"))
        kept_text = "" if kept is None else f" kept {kept:.2f}"
        parts.append(f"{label} removed {row['removed']:.2f}{kept_text}")
    lines = [f"- Per type (worst first): {'; '.join(parts)}"]
    weak = [label for label, row in rows if _share(row["removed"]) < UNCOVERED]
    if weak:
        lines.append(f"- Uncovered issues (under {UNCOVERED:.0%} removed): {', '.join(weak)}")
    return lines


def _issue_proposals(inp: AnalysisInput, flagged: set[str]) -> list[dict[str, str]]:
    """One pending knowledge item per uncovered issue type, the first time it is seen."""
    node = inp.node
    samples = (node.results or {}).get("samples")
    out = []
    for label, row in _breakdown(node).items():
        removed = _share(row.get("removed"))
        if removed is None or removed >= UNCOVERED or label in flagged or len(out) == 2:
            continue
        flagged.add(label)
        left = []
        for sample in samples if isinstance(samples, list) else []:
            if isinstance(sample, dict) and sample.get("noise") == label:
                left += [str(w) for w in sample.get("leftover_words") or []][:4]
        example = f" Surviving words such as {', '.join(left[:6])}." if left else ""
        out.append(
            {
                "title": f"{inp.task_name}: uncovered issue type '{label}'",
                "content": (
                    f"Node #{node.id} removed only {removed:.0%} of the '{label}' noise.{example} "
                    "A rule aimed at this kind of defect is missing from the candidates so far."
                ),
            }
        )
    return out


def _share(value: object) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def _vs(parent: Node | None) -> str:
    return f" of parent #{parent.id}" if parent is not None else ""
