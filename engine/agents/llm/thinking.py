"""A reasoning model's thinking, kept apart from its answer.

Reasoning models behind OpenAI-compatible endpoints show their chain of thought in one of
three ways: a separate ``reasoning_content`` (or ``reasoning``) field of the message; a
``<think>...</think>`` block at the start of ``content`` (Qwen3, DeepSeek-R1, QwQ on vLLM,
SGLang or Ollama without a reasoning parser); or only the closing ``</think>``, when the
chat template opened the block in the prompt (DeepSeek-R1's). The thinking quotes code and
drafts edits ("maybe <<<<<<< SEARCH ..."), so it must never reach the diff parser or the
analyzer's tag reader: a draft edit or a draft ``<analysis>`` would be taken as the answer.

Only *leading* blocks are thinking: that is where these models put them, and a program
that itself holds the text ``<think>`` (one that post-processes model output) keeps it. A
leading block that is never closed is all thinking: the model was cut off before answering.
"""

from __future__ import annotations

import re

_OPEN = re.compile(r"\A\s*<(think|thinking)>", re.IGNORECASE)
_CLOSE = re.compile(r"</(think|thinking)>", re.IGNORECASE)
_ANY_OPEN = re.compile(r"<(think|thinking)>", re.IGNORECASE)


def split_thinking(text: str) -> tuple[str, str]:
    """(thinking, answer) of one message's content; ("", text) when it shows none."""
    thoughts: list[str] = []
    rest = text
    while True:
        opened = _OPEN.match(rest)
        if opened is None:
            break
        body = rest[opened.end() :]
        closed = re.search(rf"</{opened.group(1)}>", body, re.IGNORECASE)
        if closed is None:  # cut off (or never closed) while thinking: no answer at all
            thoughts.append(body.strip())
            return _join(thoughts), ""
        thoughts.append(body[: closed.start()].strip())
        rest = body[closed.end() :]
    if not thoughts:
        closed = _CLOSE.search(rest)
        if closed is not None and not _ANY_OPEN.search(rest, 0, closed.start()):
            # The template opened the block in the prompt: all before the close is thinking.
            thoughts.append(rest[: closed.start()].strip())
            rest = rest[closed.end() :]
    return _join(thoughts), rest.lstrip("\n") if thoughts else rest


def _join(thoughts: list[str]) -> str:
    return "\n\n".join(t for t in thoughts if t)
