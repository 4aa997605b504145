"""The LLM Researcher: a prompt from the context nodes, a candidate back, checked.

An answer is only accepted when it yields a complete program: edits that apply exactly
(diff mode) or a whole program in ``<code>`` tags (full mode), not cut off at the token
limit, within ``max_code_chars``, and - for Python - compiling. Anything else is told to
the model as a follow-up turn, a bounded number of times; in diff mode the last resort
is to ask for the whole program. Code is never truncated or patched up silently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.agents.base import AgentError, Proposal, ResearchContext
from engine.agents.diff import (
    DiffError,
    apply_blocks,
    extract_tag,
    has_open_tag,
    parse_blocks,
    strip_blocks,
    strip_fences,
)
from engine.agents.evolve_block import frozen_violation, has_markers
from engine.agents.llm.budget import Fitted, answer_reserve, fit, prompt_budget
from engine.agents.llm.client import Completion, LLMClient
from engine.agents.llm.prompts import Templates, lang_for, node_view
from engine.agents.llm.settings import ResearcherSettings
from engine.text import one_line

MAX_NAME = 80
MAX_MOTIVATION = 4_000


class Unusable(Exception):
    """An answer that yields no program; ``kind`` decides whether a rewrite may help."""

    def __init__(self, problem: str, kind: str) -> None:
        super().__init__(problem)
        self.kind = kind  # diff | format | truncated | too_long | syntax


@dataclass
class Attempt:
    mode: str
    answers: int = 0
    repairs: int = 0
    fallback: bool = False
    blocks: int = 0
    trimmed: dict | None = None  # what the prompt budget cut (budget.fit), if anything


class LLMResearcher:
    def __init__(
        self,
        client: LLMClient,
        templates: Templates,
        settings: ResearcherSettings,
        use_analyzer: bool = True,
        program_name: str = "program.py",
    ) -> None:
        self.client = client
        self.templates = templates
        self.settings = settings
        self.use_analyzer = use_analyzer
        self.program_name = program_name
        self.lang = lang_for(program_name)
        self.label = f"LLM researcher ({client.label}, {settings.mode} mode)"
        self._said_over_budget = False

    async def propose(self, ctx: ResearchContext) -> Proposal:
        fitted = self.prompt(ctx)
        messages = fitted.messages
        attempt = Attempt(mode=self.settings.mode, trimmed=fitted.trimmed)
        while True:
            completion = await self.client.complete(messages, node_id=ctx.node_id)
            attempt.answers += 1
            try:
                return self._proposal(completion, ctx, attempt)
            except Unusable as exc:
                problem = exc
            messages.append({"role": "assistant", "content": completion.text})
            if attempt.repairs < self.settings.max_repair_turns:
                attempt.repairs += 1
                follow_up = self.templates.render(
                    "researcher_repair.j2",
                    problem=str(problem),
                    mode=attempt.mode,
                    truncated=problem.kind == "truncated",
                )
            elif attempt.mode == "diff" and problem.kind in ("diff", "format"):
                attempt.mode, attempt.fallback = "full", True
                follow_up = self.templates.render("researcher_fallback.j2", problem=str(problem))
            else:
                raise AgentError(
                    f"no usable program after {attempt.answers} answers: {_first_line(problem)}"
                )
            messages.append({"role": "user", "content": follow_up})

    def prompt(self, ctx: ResearchContext) -> Fitted:
        """The first turn's messages, fitted to the prompt budget (see budget.py)."""
        api = self.client.settings
        context_tokens = api.context_tokens
        budget = prompt_budget(context_tokens, api.max_tokens)
        fitted = fit(self._messages, self._variables(ctx), budget)
        if fitted.over_budget and context_tokens is not None:
            reserve = answer_reserve(context_tokens, api.max_tokens)
            message = (
                f"researcher prompt over budget: about {fitted.estimated_tokens} tokens "
                f"(estimated) with every context node and knowledge item dropped, over the "
                f"{budget} that api.context_tokens {context_tokens} leaves after {reserve} for "
                "the answer; sending the task and the parent program anyway"
            )
            if self._said_over_budget:
                self.client.recorder.event(message, ctx.node_id)
            else:  # the console hears it once a run, the events every time
                self._said_over_budget = True
                self.client.recorder.note(message, ctx.node_id)
        return fitted

    def _messages(self, variables: dict) -> list[dict[str, str]]:
        return [
            {
                "role": "system",
                "content": self.templates.render("researcher_system.j2", **variables),
            },
            {"role": "user", "content": self.templates.render("researcher.j2", **variables)},
        ]

    def _variables(self, ctx: ResearchContext) -> dict:
        s = self.settings
        parent = node_view(ctx.parent, logs_chars=s.logs_chars, lang=self.lang)
        others = [
            node_view(n, code_chars=s.context_code_chars, logs_chars=s.logs_chars, lang=self.lang)
            for n in ctx.context
            if n.id != ctx.parent.id
        ]
        return {
            "task": {
                "name": ctx.task_name,
                "description": ctx.task_description.strip(),
                "maximize": ctx.maximize,
            },
            "parent": parent,
            "context": others,
            "knowledge": [
                {"id": k.id, "title": k.title, "content": k.content, "score": k.score}
                for k in ctx.knowledge
            ],
            "mode": self.settings.mode,
            "evolve_blocks": has_markers(ctx.parent.code),
            "use_analyzer": bool(ctx.extras.get("use_analyzer", self.use_analyzer)),
            "step": ctx.step,
            "node_id": ctx.node_id,
            "extras": ctx.extras,
        }

    def _proposal(self, completion: Completion, ctx: ResearchContext, attempt: Attempt) -> Proposal:
        text = completion.text.replace("\r\n", "\n")
        code = self._code(text, ctx.parent.code, attempt)
        if code.strip() == ctx.parent.code.strip():
            raise Unusable("the program is identical to its parent: change something", "diff")
        if completion.truncated:
            raise Unusable(
                "the answer was cut off at the output token limit (finish_reason=length), "
                "so the program may be incomplete",
                "truncated",
            )
        limit = self.settings.max_code_chars
        if len(code) > limit:
            raise Unusable(
                f"the program has {len(code)} characters, over the limit of {limit}; "
                "write a shorter program",
                "too_long",
            )
        if self.lang == "python":
            _check_python(code, self.program_name)
        name = " ".join((extract_tag(text, "name") or "").split())[:MAX_NAME]
        motivation = (extract_tag(text, "motivation") or _prose(text)).strip()[:MAX_MOTIVATION]
        return Proposal(
            code=code if code.endswith("\n") else code + "\n",
            name=name or f"step-{ctx.step}",
            motivation=motivation or "(the model gave no motivation)",
            metadata={
                "researcher": {
                    "mode": self.settings.mode,
                    "answers": attempt.answers,
                    "repairs": attempt.repairs,
                    "fallback": attempt.fallback,
                    "blocks": attempt.blocks,
                    "model": completion.model,
                }
                | ({"prompt_trimmed": attempt.trimmed} if attempt.trimmed else {})
            },
        )

    def _code(self, text: str, parent_code: str, attempt: Attempt) -> str:
        """The candidate's program from one answer, or Unusable saying why not."""
        whole = extract_tag(text, "code")
        if attempt.mode == "diff" and whole is None:
            try:
                blocks = parse_blocks(text)
                attempt.blocks = len(blocks)
                if not blocks:
                    kind = "truncated" if _cut(text) else "format"
                    raise Unusable(
                        "no SEARCH/REPLACE blocks found (expected '<<<<<<< SEARCH' ... "
                        "'=======' ... '>>>>>>> REPLACE')",
                        kind,
                    )
                code = apply_blocks(parent_code, blocks)
            except DiffError as exc:
                kind = "truncated" if "incomplete" in str(exc) else "diff"
                raise Unusable(str(exc), kind) from None
            return code
        if whole is None:
            if has_open_tag(text, "code"):
                raise Unusable("the <code> section is not closed (cut off?)", "truncated")
            raise Unusable("no <code>...</code> section with the complete program found", "format")
        if not whole.strip():
            raise Unusable("the <code> section is empty", "format")
        violation = frozen_violation(parent_code, whole)
        if violation:
            raise Unusable(f"the program was refused: {violation}", "format")
        return whole


def _check_python(code: str, filename: str) -> None:
    try:
        compile(code, filename, "exec", dont_inherit=True)
    except SyntaxError as exc:
        line = (exc.text or "").rstrip()
        where = f"line {exc.lineno}" + (f": {line.strip()}" if line else "")
        problem = f"the resulting program does not compile: {exc.msg} ({where})"
        raise Unusable(problem, "syntax") from None
    except (ValueError, OverflowError) as exc:  # e.g. null bytes
        raise Unusable(f"the resulting program does not compile: {exc}", "syntax") from None


def _cut(text: str) -> bool:
    return has_open_tag(text, "motivation") or has_open_tag(text, "name")


def _prose(text: str) -> str:
    """Text outside tags and edit blocks: a motivation the model forgot to tag."""
    rest = re.sub(r"<(name|code)>.*?</\1>", "", strip_blocks(text), flags=re.DOTALL)
    return strip_fences(rest).strip()


def _first_line(exc: Exception) -> str:
    return one_line(str(exc).split("\n")[0])
