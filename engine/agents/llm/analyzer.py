"""The LLM Analyzer: turns one experiment into the short report later rounds read.

It sees the candidate's code and full results (metrics, logs tail, error) next to its
parent and the best sampled node, and may propose reusable knowledge items, which the
loop hands to the cognition base as pending proposals.
"""

from __future__ import annotations

import re

from engine.agents.base import AnalysisInput, Report
from engine.agents.diff import extract_all, extract_tag, has_open_tag
from engine.agents.llm.client import LLMClient
from engine.agents.llm.prompts import Templates, analysis_variables, lang_for, node_view

MAX_TITLE = 120
MAX_CONTENT = 1_500


class LLMAnalyzer:
    def __init__(
        self,
        client: LLMClient,
        templates: Templates,
        program_name: str = "program.py",
        max_knowledge: int = 2,
        max_chars: int = 4_000,
        logs_chars: int = 3_000,
    ) -> None:
        self.client = client
        self.templates = templates
        self.lang = lang_for(program_name)
        self.max_knowledge = max_knowledge
        self.max_chars = max_chars
        self.logs_chars = logs_chars
        self.label = f"LLM analyzer ({client.label})"

    async def analyze(self, inp: AnalysisInput) -> Report:
        def view(node):  # noqa: ANN001, ANN202 - Node | None -> dict | None
            if node is None:
                return None
            return node_view(node, code_chars=None, logs_chars=self.logs_chars, lang=self.lang)

        variables = {**analysis_variables(inp, view), "max_knowledge": self.max_knowledge}
        messages = [
            {"role": "system", "content": self.templates.render("analyzer_system.j2", **variables)},
            {"role": "user", "content": self.templates.render("analyzer.j2", **variables)},
        ]
        completion = await self.client.complete(messages, node_id=inp.node.id)
        analysis = read_analysis(completion.text)
        if completion.truncated:
            analysis += "\n[report cut off at the output token limit]"
        if len(analysis) > self.max_chars:
            analysis = analysis[: self.max_chars] + f"\n[report cut at {self.max_chars} characters]"
        return Report(
            analysis=analysis,
            knowledge_proposals=read_knowledge(completion.text)[: self.max_knowledge],
            metadata={"analyzer_model": completion.model},
        )


def read_analysis(text: str) -> str:
    """The ``<analysis>`` section; an unclosed one up to the end; else the untagged text."""
    tagged = extract_tag(text, "analysis")
    if tagged is not None:
        return tagged.strip()
    if has_open_tag(text, "analysis"):
        return text[text.lower().rfind("<analysis>") + len("<analysis>") :].strip()
    return re.sub(r"<knowledge>.*?</knowledge>", "", text, flags=re.DOTALL | re.I).strip()


def read_knowledge(text: str) -> list[dict[str, str]]:
    """``<knowledge><title>..</title><content>..</content></knowledge>`` items, complete only."""
    items = []
    for block in extract_all(text, "knowledge"):
        title = " ".join((extract_tag(block, "title") or "").split())[:MAX_TITLE]
        content = (extract_tag(block, "content") or "").strip()[:MAX_CONTENT]
        if title and content:
            items.append({"title": title, "content": content})
    return items
