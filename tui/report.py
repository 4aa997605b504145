"""The Markdown report of one node: outcome, motivation, the Analyzer's analysis, metrics.

Shared by the report pane and the details screen. Fields come straight from the run
database and may be missing, huge, or not what the schema promises; nothing here raises.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from engine import direction
from tui import format as fmt

PANE_LIMIT = 20_000
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+\-!|])")


def md_escape(text: str) -> str:
    return _MD_SPECIAL.sub(r"\\\1", text)


def _results(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw) if raw else {}
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _value(value: Any) -> str:
    if isinstance(value, float):
        return fmt.score(value)
    text = json.dumps(value) if isinstance(value, dict | list) else value
    return fmt.one_line(text, 80).replace("`", "'")


def headline(node: dict[str, Any], parent_score: float | None, maximize: bool) -> str:
    """One line: id, step, name, status, score with its change against the parent."""
    name = fmt.one_line(node.get("name") or "", 80)
    parts = [f"**#{node.get('id')}** · step {node.get('step')}"]
    if name:
        parts.append(f"**{md_escape(name)}**")
    parts.append(str(node.get("status") or "?"))
    score = node.get("score")
    if isinstance(score, int | float):
        text = f"score **{fmt.score(score)}**"
        if isinstance(parent_score, int | float) and math.isfinite(score):
            d = score - parent_score
            better = direction.improved(d, maximize)
            text += f" ({d:+.4g} vs #{node.get('parent_id')}{', better' if better else ''})"
        parts.append(text)
    runtime = node.get("runtime")
    if isinstance(runtime, int | float):
        parts.append(fmt.duration(runtime))
    if node.get("island") is not None:
        parts.append(f"island {node.get('island')}")
    return " · ".join(parts)


def node_markdown(
    node: dict[str, Any] | None,
    parent_score: float | None,
    maximize: bool,
    limit: int = PANE_LIMIT,
) -> str:
    if node is None:
        return "*No node selected.*"
    out = [headline(node, parent_score, maximize), ""]
    error = fmt.clean(node.get("error") or "", 2000).strip()
    if error:
        out += [f"> **error:** {md_escape(fmt.one_line(error, 500))}", ""]
    motivation = fmt.clean(node.get("motivation") or "", limit).strip()
    out += ["### Motivation", "", motivation or "*none recorded*", ""]
    analysis = fmt.clean(node.get("analysis") or "", limit).strip()
    if analysis:
        out += ["### Analysis", "", analysis, ""]
    elif node.get("status") in ("pending", "running"):
        out += ["### Analysis", "", "*not analyzed yet: the candidate is still in flight*", ""]
    else:
        out += ["### Analysis", "", "*no analysis for this node*", ""]
    metrics = _results(node.get("results")).get("metrics")
    if isinstance(metrics, dict) and metrics:
        out += ["### Metrics", ""]
        for key, value in list(metrics.items())[:30]:
            out.append(f"- {md_escape(fmt.one_line(key, 40))}: `{_value(value)}`")
        out.append("")
    return "\n".join(out)
