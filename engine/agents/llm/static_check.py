"""The static-check agent: an LLM reads the candidate before any experiment is spent.

Some refusals need judgement rather than a test: "is this mixer really chunk-wise and
sub-quadratic?", "does this loss still use the rewards?". A task that wants such a check
ships ``prompts/static_check.j2`` (its criteria, e.g. the paper's sub-quadratic
complexity, chunk-wise form and causal mask for linear attention); the model answers
``<verdict>pass</verdict>`` or ``<verdict>refuse</verdict>`` with a ``<reason>``. A
refusal fails the node with that reason and no evaluation runs. Without an LLM endpoint
the check is not available, and the run says so once at start; the task's own ``check``
stage still runs.
"""

from __future__ import annotations

from typing import Any

from engine.agents.diff import extract_tag
from engine.agents.evolve_block import has_markers

TEMPLATE = "static_check.j2"


def wanted(task: Any) -> bool:
    """The task asks for an LLM static check (it ships the template)."""
    directory = getattr(task, "prompts_dir", None)
    return directory is not None and (directory / TEMPLATE).is_file()


class LLMStaticChecker:
    def __init__(self, client: Any, templates: Any, program_name: str = "program.py") -> None:
        from engine.agents.llm.prompts import lang_for

        self.client = client
        self.templates = templates
        self.lang = lang_for(program_name)
        self.label = f"LLM static check ({client.label})"

    async def check(self, code: str, task: Any, node_id: int | None = None) -> str | None:
        """None when the candidate passes; else the one-line reason for refusing it.
        ``node_id``: the node the call is recorded under (its cost and prompt in the run)."""
        variables = {
            "task_name": task.name,
            "task_description": task.description,
            "code": code.rstrip("\n"),
            "lang": self.lang,
            "evolve_blocks": has_markers(code),
        }
        messages = [
            {"role": "system", "content": self.templates.render("static_check_system.j2")},
            {"role": "user", "content": self.templates.render(TEMPLATE, **variables)},
        ]
        completion = await self.client.complete(messages, node_id=node_id)
        verdict = (extract_tag(completion.text, "verdict") or "").strip().lower()
        reason = " ".join((extract_tag(completion.text, "reason") or "").split())[:300]
        if verdict == "pass":
            return None
        if verdict == "refuse":
            return reason or "refused without a reason"
        # An unreadable answer is not a refusal: the task's own check stage still runs. It is
        # an event, though: otherwise the node reads "passed" as if the model had said so.
        reply = " ".join(completion.text.split())[:120]
        self.client.recorder.event(
            f"static check gave no verdict (reply: {reply!r}); left to the task's checks",
            node_id,
        )
        return None
