"""What literal moves did to the score over a run: the offline Analyzer's knowledge source.

One node beating its context says little (the offline Researcher's moves are random, and a
lucky draw is not a lesson), so knowledge is proposed only for a *pattern*: the same move
(the constant on one line, raised or lowered) observed on several nodes, most of them
moving the score the same way. The proposal states what was moved, which way, the mean
score change against the parent, over how many nodes, how many of them agreed, and how many
moved that constant alone (the others changed several constants at once, so the effect is
shared).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from engine import direction
from engine.store.records import DONE, Node

MIN_NODES = 3  # observations of a move before it is called a pattern
MIN_AGREEMENT = 0.6  # share of them that moved the score the same way
MIN_MARGIN = 1e-6  # absolute floor of a mean change worth stating
RELATIVE_MARGIN = 1e-3  # ... and relative to the typical parent score

MoveKey = tuple[int, str]  # (line, "raising" | "lowering")


@dataclass
class Effect:
    """One node's evidence about a move: the score change against its parent."""

    node_id: int
    gain: float  # positive = better in the task's direction
    old: str
    new: str
    alone: bool  # the node changed only this constant
    parent_score: float


@dataclass
class MoveStats:
    """The evidence gathered for one move, and what was already said about it."""

    code: str = ""  # the source line as first seen, the moved constant shown as `…`
    effects: list[Effect] = field(default_factory=list)
    failures: int = 0  # nodes with this move whose program failed
    said: str = ""  # "helped" or "hurt" once proposed: said once per run and verdict


class ChangeEffects:
    """Gathers moves across the nodes analysed in this process and turns patterns into
    knowledge proposals."""

    def __init__(self) -> None:
        self.moves: dict[MoveKey, MoveStats] = {}

    def observe(self, node: Node, parent: Node | None, maximize: bool) -> list[MoveKey]:
        """Record the node's moves; the keys it touched."""
        records = _records(node)
        if parent is None or not records:
            return []
        lines = parent.code.splitlines()
        failed = node.status != DONE or node.score is None
        touched = []
        for record in records:
            key = _key(record)
            if key is None:
                continue
            stats = self.moves.setdefault(key, MoveStats())
            if not stats.code and 0 < key[0] <= len(lines):
                # The constant's value changes from node to node; the line around it does not,
                # so the insight (and its title, and its claim) stays the same as it grows.
                line = " ".join(lines[key[0] - 1].split())
                literal = rf"(?<![\w.]){re.escape(str(record['old']))}(?![\w.])"
                stats.code = re.sub(literal, "…", line, count=1)[:100]
            if failed:
                stats.failures += 1
            elif parent.score is not None and node.score is not None:
                gain = direction.gain(node.score, parent.score, maximize)
                stats.effects.append(
                    Effect(
                        node.id or 0,
                        gain,
                        str(record["old"]),
                        str(record["new"]),
                        len(records) == 1,
                        parent.score,
                    )
                )
            touched.append(key)
        return touched

    def proposals(self, keys: list[MoveKey], task_name: str) -> list[dict[str, str]]:
        """Knowledge for the moves in ``keys`` that now form a pattern not yet stated."""
        out = []
        for key in dict.fromkeys(keys):
            stats = self.moves[key]
            verdict = _verdict(stats.effects)
            if verdict is None or verdict == stats.said:
                continue
            stats.said = verdict
            out.append(_proposal(key, stats, verdict, task_name))
        return out


def _records(node: Node) -> list[dict]:
    changes = node.metadata.get("changes") if isinstance(node.metadata, dict) else None
    return [c for c in changes if isinstance(c, dict)] if isinstance(changes, list) else []


def _key(record: dict) -> MoveKey | None:
    line = record.get("line")
    try:
        old, new = float(str(record.get("old"))), float(str(record.get("new")))
    except ValueError:
        return None
    if not isinstance(line, int) or not (math.isfinite(old) and math.isfinite(new)) or old == new:
        return None
    return (line, "raising" if new > old else "lowering")


def _verdict(effects: list[Effect]) -> str | None:
    """ "helped" / "hurt" when enough nodes agree and the mean change is clear, else None."""
    if len(effects) < MIN_NODES:
        return None
    gains = [e.gain for e in effects]
    mean = sum(gains) / len(gains)
    scale = sum(abs(e.parent_score) for e in effects) / len(effects)
    if abs(mean) <= max(MIN_MARGIN, RELATIVE_MARGIN * scale):
        return None
    agree = sum(1 for g in gains if (g > 0) == (mean > 0) and g != 0)
    if agree / len(gains) < MIN_AGREEMENT:
        return None
    return "helped" if mean > 0 else "hurt"


def _proposal(key: MoveKey, stats: MoveStats, verdict: str, task_name: str) -> dict[str, str]:
    line, direction = key
    effects = stats.effects
    n = len(effects)
    mean = sum(e.gain for e in effects) / n
    improved = sum(1 for e in effects if e.gain > 0)
    alone = sum(1 for e in effects if e.alone)
    helped = verdict == "helped"
    best = max(effects, key=lambda e: e.gain) if helped else min(effects, key=lambda e: e.gain)
    extreme = "largest gain" if helped else "worst loss"
    # The source line leads: insights about different constants then differ in their first
    # words, which keeps their embeddings apart (a template-heavy text all looks alike).
    what = f"`{stats.code}` (line {line})" if stats.code else f"the constant on line {line}"
    failures = f" It also broke the program in {stats.failures} node(s)." if stats.failures else ""
    return {
        "title": f"{direction.capitalize()} {what} {verdict}",
        "content": (
            f"{direction.capitalize()} {what} changed the score by {mean:+.4g} on average "
            f"against the parent over {n} nodes ({improved} of {n} improved, {alone} moved it "
            f"alone); the {extreme} was {best.gain:+.4g} at #{best.node_id} "
            f"(`{best.old}` -> `{best.new}`).{failures}"
        ),
        # The claim identifies what is said, whatever the numbers: cognition/dedupe.py drops a
        # restatement, and does not mistake "raising X helped" for "lowering X helped".
        "tags": ", ".join(
            [
                *([task_name] if task_name else []),
                "run-derived",
                f"claim:line{line}-{direction}-{verdict}",
            ]
        ),
    }
