"""The researcher's prompt budget: an estimate of its tokens, and what gives way to fit.

A prompt must leave room in the model's context for the answer: the budget is
``api.context_tokens`` (per role: ``api.roles.researcher.context_tokens``; ``null``: no
limit) minus the answer's ``api.max_tokens`` (unset: DEFAULT_ANSWER_TOKENS, at most a
quarter of the context). Tokens are *estimated* from characters (CHARS_PER_TOKEN; nothing
is downloaded or tokenized), so the budget keeps a prompt from growing without bound over
a long run; it is not an exact count, and ``context_tokens`` should keep some headroom.

Over budget, the variable parts give way in this order, the prompt rendered again after
each change and the trimming stopped as soon as it fits:

1. the context nodes' long fields are cut visibly (code to SHORT_CODE_CHARS, analysis,
   motivation, error and logs to SHORT_TEXT_CHARS), least relevant node first (samplers
   list the context best first);
2. context nodes are dropped, least relevant first;
3. knowledge items are dropped, least similar first;
4. the parent's analysis, motivation and logs are cut (its program never is).

The task description, the parent program and the instructions are never cut. When even
that minimum is over budget it is sent as it is: the caller says so in one line.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from engine.agents.llm.prompts import tail

CHARS_PER_TOKEN = 3.5  # English prose is about 4 characters a token, code about 3
MESSAGE_TOKENS = 4  # a message's role and separators
DEFAULT_ANSWER_TOKENS = 4_096
SHORT_CODE_CHARS = 2_000
SHORT_TEXT_CHARS = 800
_HEAD_FIELDS = ("analysis", "motivation", "error")  # cut at the end: the start matters
_TAIL_FIELDS = ("logs", "stdout", "stderr")  # cut at the start: the end matters

Messages = list[dict[str, str]]


def estimate_tokens(messages: Messages) -> int:
    """An estimate of a chat prompt's tokens from its characters (no tokenizer)."""
    return sum(math.ceil(len(m["content"]) / CHARS_PER_TOKEN) + MESSAGE_TOKENS for m in messages)


def answer_reserve(context_tokens: int, max_tokens: int | None) -> int:
    """Tokens kept free for the answer."""
    if max_tokens is not None:
        return max_tokens
    return min(DEFAULT_ANSWER_TOKENS, context_tokens // 4)


def prompt_budget(context_tokens: int | None, max_tokens: int | None) -> int | None:
    """Estimated tokens a prompt may take; None: no limit."""
    if context_tokens is None:
        return None
    return max(1, context_tokens - answer_reserve(context_tokens, max_tokens))


@dataclass
class Fitted:
    """A prompt fitted to its budget; ``trimmed`` says what gave way (None: nothing)."""

    messages: Messages
    estimated_tokens: int
    trimmed: dict[str, Any] | None = None

    @property
    def over_budget(self) -> bool:
        return bool(self.trimmed and self.trimmed["over_budget"])


def fit(
    render: Callable[[dict[str, Any]], Messages], variables: dict[str, Any], budget: int | None
) -> Fitted:
    """``render(variables)``, trimmed in the module's order until it fits ``budget``.

    ``variables`` are the researcher's template variables; they are changed in place.
    """
    messages = render(variables)
    tokens = estimate_tokens(messages)
    if budget is None or tokens <= budget:
        return Fitted(messages, tokens)
    record: dict[str, Any] = {
        "budget": budget,
        "tokens_before": tokens,
        "shortened_nodes": 0,
        "dropped_nodes": 0,
        "dropped_knowledge": 0,
        "shortened_parent": False,
    }
    for _ in _trims(variables, record):
        messages = render(variables)
        tokens = estimate_tokens(messages)
        if tokens <= budget:
            break
    record["estimated_tokens"] = tokens
    record["over_budget"] = tokens > budget
    return Fitted(messages, tokens, record)


def _trims(variables: dict[str, Any], record: dict[str, Any]) -> Iterator[None]:
    """One change at a time, in the documented order (the caller renders after each)."""
    context: list[dict[str, Any]] = variables["context"]
    for view in reversed(context):
        if shorten(view, SHORT_CODE_CHARS):
            record["shortened_nodes"] += 1
            yield
    while context:
        context.pop()
        record["dropped_nodes"] += 1
        yield
    knowledge: list[dict[str, Any]] = variables["knowledge"]
    while knowledge:  # the least similar first; of equals, the later one
        least = min(range(len(knowledge)), key=lambda i: (knowledge[i]["score"], -i))
        del knowledge[least]
        record["dropped_knowledge"] += 1
        yield
    if shorten(variables["parent"], None):
        record["shortened_parent"] = True
        yield


def shorten(view: dict[str, Any], code_chars: int | None) -> bool:
    """Cut a node view's long texts visibly (its code too, unless ``code_chars`` is None);
    True when anything was cut."""
    changed = False
    code = view.get("code") or ""
    if code_chars is not None and len(code) > code_chars:
        view["code_omitted"] = view.get("code_omitted", 0) + len(code) - code_chars
        view["code"] = code[:code_chars]
        changed = True
    for key in _HEAD_FIELDS:
        text = view.get(key)
        if isinstance(text, str) and len(text) > SHORT_TEXT_CHARS:
            omitted = len(text) - SHORT_TEXT_CHARS
            view[key] = text[:SHORT_TEXT_CHARS] + f"\n[... {omitted} more characters omitted]"
            changed = True
    for key in _TAIL_FIELDS:
        text = view.get(key)
        if isinstance(text, str) and len(text) > SHORT_TEXT_CHARS:
            view[key] = tail(text, SHORT_TEXT_CHARS)
            changed = True
    return changed
