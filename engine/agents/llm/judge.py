"""The optional LLM Judge: a 0-1 rating on criteria the task names, on the eval's scale.

The loop blends it as ``(1 - ratio) * eval + ratio * judge``; for that the rating is
mapped onto the evaluation's scale ``[lo, hi]``. A reply without a usable rating gets one
follow-up turn, then fails the node - a silent default would skew the search.
"""

from __future__ import annotations

import re

from engine.agents.base import AgentError, AnalysisInput
from engine.agents.diff import extract_tag
from engine.agents.llm.client import LLMClient
from engine.agents.llm.prompts import Templates, analysis_variables, lang_for, node_view

JUDGE_TEMPLATE = "judge template"
FOLLOW_UP = "Give only the rating, a number between 0 and 1, as <score>x</score>."


class LLMJudge:
    def __init__(
        self,
        client: LLMClient,
        templates: Templates,
        scale: tuple[float, float] = (0.0, 1.0),
        template: str = JUDGE_TEMPLATE,
        program_name: str = "program.py",
    ) -> None:
        self.client = client
        self.templates = templates
        self.scale = scale
        self.template = template
        self.lang = lang_for(program_name)
        self.label = f"LLM judge ({client.label})"

    async def judge(self, inp: AnalysisInput) -> float:
        def view(node):  # noqa: ANN001, ANN202 - Node | None -> dict | None
            return None if node is None else node_view(node, lang=self.lang)

        variables = analysis_variables(inp, view)
        messages = [
            {"role": "system", "content": self.templates.render("judge_system.j2", **variables)},
            {"role": "user", "content": self.templates.render(self.template, **variables)},
        ]
        for turn in range(2):
            completion = await self.client.complete(messages, node_id=inp.node.id)
            rating = parse_rating(completion.text)
            if rating is not None:
                lo, hi = self.scale
                return lo + rating * (hi - lo)
            if turn == 0:
                messages.append({"role": "assistant", "content": completion.text})
                messages.append({"role": "user", "content": FOLLOW_UP})
        reply = " ".join(completion.text.split())[:120]
        raise AgentError(f"the judge gave no rating in [0, 1] (reply: {reply!r})")


def parse_rating(text: str) -> float | None:
    """The ``<score>`` value (or a bare number reply) when it lies in [0, 1]."""
    raw = extract_tag(text, "score")
    if raw is None and re.fullmatch(r"\s*[0-9.]+\s*", text):
        raw = text
    if raw is None:
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        return None
    return value if 0.0 <= value <= 1.0 else None
