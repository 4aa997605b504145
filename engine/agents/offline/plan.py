"""A proposal of the offline Researcher in the making, and the metadata it leaves behind.

The Researcher (``researcher.py``) chooses an operator and fills ``Plan.final`` with the new
literal texts; the plan turns them into a ``Proposal``: the edited program, a slug, a
motivation naming each change, and the lineage bookkeeping its children read (``base_id``,
``base_score`` and the ``moves`` measured from the base).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from engine.agents.base import Proposal
from engine.agents.offline.literals import Literal, changes, describe, replace_literals
from engine.store.records import Node


@dataclass
class Plan:
    """A proposal in the making: literal texts of its base and of the result."""

    base: list[str]  # the literals its moves are measured from (the parent's, or undone)
    final: list[str]
    base_id: Any
    base_score: float | None
    sources: list[Any]
    operator: str = "mutate"
    note: str = ""

    def apply(self, moves: dict[int, str]) -> None:
        for k, text in moves.items():
            self.final[k] = text

    def proposal(self, parent: Node, literals: list[Literal]) -> Proposal:
        new_texts = {k: t for k, t in enumerate(self.final) if t != literals[k].text}
        records = changes(literals, new_texts, [lit.text for lit in literals])
        moved = {k: t for k, t in enumerate(self.final) if t != self.base[k]}
        first = records[0]
        slug = f"{self.operator}-l{first['line']}-{re.sub(r'[^0-9a-zA-Z]+', '_', first['new'])}"
        if len(records) > 1:
            slug += f"-plus{len(records) - 1}"
        note = self.note or f"Mutated #{parent.id}"
        return Proposal(
            code=replace_literals(parent.code, literals, new_texts),
            name=slug[:48],
            motivation=f"{note}: {describe(records)}.",
            metadata={
                "operator": self.operator,
                "changes": records,
                "source_ids": self.sources,
                # Lineage bookkeeping read by this node's children (see the module doc).
                "base_id": self.base_id,
                "base_score": self.base_score,
                "moves": changes(literals, moved, self.base),
            },
        )
