"""The built-in Analyzer used when no LLM is configured: a rule-based report.

Later rounds read reports, not raw logs, so even without a model each node gets a
short decision-oriented summary: how the score and metrics moved against the parent
and the best context node, why a node failed, and which of the Researcher's changes
(``metadata["changes"]``) helped or hurt. It proposes knowledge only for a clear new
best, so that the cognition base grows slowly and a person can review each proposal.
"""

from __future__ import annotations

import math
from typing import Any

from engine.agents.base import AnalysisInput, Report
from engine.records import DONE, Node

PROPOSE_MARGIN = 0.01  # relative gain over the best context node that earns a proposal
MAX_METRICS = 6


class OfflineAnalyzer:
    label = "offline"

    async def analyze(self, inp: AnalysisInput) -> Report:
        node, parent, best = inp.node, inp.parent, inp.best
        lines: list[str] = []
        changes = _changes_text(node)
        if node.status != DONE or node.score is None:
            lines.append(f"**Failed**: {node.error or 'no score'}.")
            if changes:
                lines.append(f"Changes tried: {changes}. Avoid repeating them as they are.")
            return Report(analysis="\n".join(lines))

        sign = 1.0 if inp.maximize else -1.0
        delta_parent = _delta(node, parent)
        same = best is not None and parent is not None and best.id == parent.id
        delta_best = None if best is None or same else _delta(node, best)
        verdict = "no parent to compare"
        if delta_parent is not None:
            gain = sign * delta_parent
            verdict = "improved" if gain > 0 else "no change" if gain == 0 else "worse"
            lines.append(
                f"**Score** {node.score:.6g} ({delta_parent:+.4g} vs parent #{parent.id}: "
                f"{verdict})."
            )
        else:
            lines.append(f"**Score** {node.score:.6g}.")
        if delta_best is not None:
            lines.append(f"Against the best context node #{best.id}: {delta_best:+.4g}.")
        metric_moves = _metric_moves(node, parent)
        if metric_moves:
            lines.append("Metrics vs parent: " + ", ".join(metric_moves) + ".")
        if changes:
            if verdict == "improved":
                lines.append(f"Helped: {changes}. Keep exploring in this direction.")
            elif verdict == "worse":
                lines.append(f"Hurt: {changes}. Revert or try the opposite direction.")
            else:
                lines.append(f"Neutral: {changes}.")
        return Report(analysis="\n".join(lines), knowledge_proposals=_proposals(inp, changes))


def _delta(node: Node, other: Node | None) -> float | None:
    if other is None or other.score is None or node.score is None:
        return None
    return node.score - other.score


def _changes_text(node: Node) -> str:
    changes: list[dict[str, Any]] = node.metadata.get("changes") or []
    return "; ".join(
        f"line {c.get('line', '?')} `{c.get('old', '?')}` -> `{c.get('new', '?')}`"
        for c in changes[:5]
    )


def _metric_moves(node: Node, parent: Node | None) -> list[str]:
    if parent is None:
        return []
    now = node.results.get("metrics") or {}
    before = parent.results.get("metrics") or {}
    moves = []
    for key, value in now.items():
        old = before.get(key)
        if _number(value) and _number(old) and value != old:
            moves.append(f"{key} {old:.4g} -> {value:.4g}")
        if len(moves) == MAX_METRICS:
            break
    return moves


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _proposals(inp: AnalysisInput, changes: str) -> list[dict[str, str]]:
    """One proposal when the node beats the best context node by a clear margin."""
    best, node = inp.best, inp.node
    if not changes or best is None or best.score is None or node.score is None:
        return []
    gain = (node.score - best.score) * (1.0 if inp.maximize else -1.0)
    if gain <= PROPOSE_MARGIN * max(abs(best.score), 1e-9):
        return []
    return [
        {
            "title": f"{inp.task_name}: constant change that set a new best",
            "content": (
                f"Node #{node.id} reached {node.score:.6g} (from {best.score:.6g}, node "
                f"#{best.id}) by changing {changes}. Constants in this region matter; "
                "further moves in the same direction are worth trying."
            ),
        }
    ]
