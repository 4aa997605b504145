"""A scripted model behind the OpenAI-compatible test server, answering every role.

The research replay (``benchmarks/research_replay.py``) drives a real run through the real
HTTP path with this "model": it recognises the role of each request from its system prompt
and answers the way a model would - the Researcher with the next design of a script as
SEARCH/REPLACE edits of the parent shown in the prompt (and repaired answers on a repair
turn), the static-check reviewer with a verdict, the debug agent with a fix of the crash it
is shown, the Analyzer with a report and knowledge proposals, the Judge with a rating.
Every answer is computed from the request, never from the engine's internals.
"""

from __future__ import annotations

import difflib
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from scripted_server import Reply, last_user, parent_program, search_replace

Edit = tuple[str, str]  # (old text, new text) of the initial program


@dataclass(frozen=True)
class Design:
    """One idea of the script and what it should meet in the engine.

    ``expect``: explored (trained and scored), static-check / check-stage (stopped before
    training, by the LLM reviewer / by the task's check stage), repaired (crashes, the debug
    agent fixes it, then it is trained), malformed (no usable program: the node fails).
    ``malformed``: how the first answer is broken (no-diff; bad-search: a SEARCH retyped;
    frozen: it also edits ``frozen``, text outside the EVOLVE block; truncated: cut off at
    the token limit - a repair turn then gets the right edits; hopeless: every answer is
    broken). ``bug``: (correct, buggy) text: the answer has the buggy version, the debug
    agent's fix restores the correct one.
    """

    name: str
    motivation: str
    edits: tuple[Edit, ...]
    expect: str
    malformed: str = ""
    bug: Edit | None = None
    frozen: Edit | None = None

    def program(self, initial: str) -> str:
        """The design's intended program: the edits applied to the initial program."""
        code = initial
        for old, new in self.edits:
            if code.count(old) != 1:
                raise ValueError(f"design {self.name}: {old!r} is not once in the program")
            code = code.replace(old, new)
        return code

    def answered(self, initial: str) -> str:
        """The program the researcher's answer carries (with the bug, if the design has one)."""
        code = self.program(initial)
        if self.bug is not None:
            code = code.replace(self.bug[0], self.bug[1])
        return code


@dataclass(frozen=True)
class DomainScript:
    designs: tuple[Design, ...]
    # (code marker, refusal reason) the reviewer sees; an empty reason: it hedges, no verdict
    review: tuple[tuple[str, str], ...] = ()
    judge_scale: tuple[float, float] = (0.0, 1.0)  # the evaluation's score range, for a judge


def edits_between(parent: str, child: str, context: int = 1) -> str:
    """SEARCH/REPLACE blocks turning ``parent`` into ``child``, each unique in the program
    it is applied to (context lines are added until it is), as a careful model writes them."""
    a, b = parent.splitlines(keepends=True), child.splitlines(keepends=True)
    blocks, current = [], parent
    for group in difflib.SequenceMatcher(None, a, b, autojunk=False).get_grouped_opcodes(context):
        i1, i2, j1, j2 = group[0][1], group[-1][2], group[0][3], group[-1][4]
        while True:
            old, new = "".join(a[i1:i2]), "".join(b[j1:j2])
            if old and current.count(old) == 1 or (i1 == 0 and i2 == len(a)):
                break
            i1, j1 = (i1 - 1, j1 - 1) if i1 > 0 else (i1, j1)
            i2, j2 = (i2 + 1, j2 + 1) if i2 < len(a) else (i2, j2)
        current = current.replace(old, new, 1)
        blocks.append(search_replace(old.rstrip("\n"), new.rstrip("\n")))
    return "\n".join(blocks)


def role_of(request: dict[str, Any]) -> str:
    """The role a request is for, from the engine's built-in system prompts."""
    messages = request.get("messages") or []
    system = messages[0].get("content", "") if messages and messages[0]["role"] == "system" else ""
    for marker, role in (
        ("You are the Researcher", "researcher"),
        ("You are the Analyzer", "analyzer"),
        ("You are the Judge", "judge"),
        ("You are a strict reviewer", "static_check"),
        ("You fix crashing programs", "debugger"),
    ):
        if marker in system:
            return role
    return "other"


def _answer(design: Design, edits: str) -> str:
    return f"<name>{design.name}</name>\n<motivation>{design.motivation}</motivation>\n\n{edits}"


def _code_block(prompt: str) -> str:
    """The last fenced program of a prompt (static check and debug prompts show one)."""
    blocks = re.findall(r"^```[\w+-]*\n(.*?)\n```$", prompt, re.S | re.M)
    return blocks[-1] + "\n" if blocks else ""


@dataclass
class ReplayModel:
    """The handler for ``ScriptedServer``: one script, answers computed per request."""

    script: DomainScript
    initial: str  # the task's initial program, as the engine reads it
    calls: Counter = field(default_factory=Counter)
    given: list[str] = field(default_factory=list)  # design names, in the order handed out
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request: dict[str, Any]) -> Reply:
        role = role_of(request)
        with self._lock:
            self.calls[role] += 1
        answer = {
            "researcher": self.research,
            "static_check": self.review,
            "debugger": self.debug,
            "analyzer": self.analyze,
            "judge": lambda request: "Simple and causal.\n<score>0.60</score>",
        }.get(role, lambda request: "OK")(request)
        return answer if isinstance(answer, Reply) else Reply(content=answer)

    def design_named(self, name: str) -> Design | None:
        return next((d for d in self.script.designs if d.name == name), None)

    # ------------------------------------------------------------- researcher
    def research(self, request: dict[str, Any]) -> Reply | str:
        said = [m["content"] for m in request["messages"] if m["role"] == "assistant"]
        if not said:  # a new node: the next design of the script
            with self._lock:
                design = self.script.designs[len(self.given) % len(self.script.designs)]
                self.given.append(design.name)
            return self._first_answer(design, parent_program(request) + "\n")
        named = re.search(r"<name>(.*?)</name>", said[0])
        design = self.design_named(named.group(1)) if named else None
        if design is None or design.malformed == "hopeless":
            return "I would rather discuss the idea first; the edits follow in a later message."
        parent = parent_program(request) + "\n"
        if "<code>" in last_user(request):  # the fallback turn asks for the whole program
            return _answer(design, f"<code>\n{design.answered(self.initial)}</code>")
        return _answer(design, edits_between(parent, design.answered(self.initial)))

    def _first_answer(self, design: Design, parent: str) -> Reply | str:
        if design.malformed == "no-diff":  # the idea in prose, the edits forgotten
            return _answer(design, "The change is small; it only touches a few lines.")
        if design.malformed == "bad-search":  # SEARCH text retyped, not copied
            old, new = design.edits[0]
            retyped = re.sub(r"\s*=\s*", "=", old.rstrip("\n"))
            return _answer(design, search_replace(retyped, re.sub(r"\s*=\s*", "=", new)))
        if design.malformed == "hopeless":
            return "<name>rambling</name>\nLet me think about what the parent does first."
        answer = _answer(design, edits_between(parent, design.answered(self.initial)))
        if design.malformed == "frozen" and design.frozen is not None:
            old, new = design.frozen  # e.g. an import above the EVOLVE block
            return answer + "\n" + search_replace(old.rstrip("\n"), new.rstrip("\n"))
        if design.malformed == "truncated":  # the token limit hit in the middle of a block
            return Reply(content=answer[: len(answer) * 3 // 5], finish_reason="length")
        return answer

    # ---------------------------------------------------------- other roles
    def review(self, request: dict[str, Any]) -> str:
        code = _code_block(last_user(request))
        for marker, reason in self.script.review:
            if marker in code and not reason:
                return "The extra attention term may be costly; I cannot tell from the code."
            if marker in code:
                return f"<verdict>refuse</verdict>\n<reason>{reason}</reason>"
        return "<verdict>pass</verdict>\n<reason>All requirements hold.</reason>"

    def debug(self, request: dict[str, Any]) -> str:
        code = _code_block(last_user(request).split("## What went wrong")[0])
        for design in self.script.designs:
            if design.bug is not None and design.bug[1] in code:
                fixed = code.replace(design.bug[1], design.bug[0])
                return edits_between(code, fixed)
        return "The error does not point at a line I can fix."

    def analyze(self, request: dict[str, Any]) -> str:
        prompt = last_user(request)
        head = re.search(r'node #(\d+) "(.*?)".*?\nStatus: (\w+), score (\S+)', prompt, re.S)
        node, name, status, score = head.groups() if head else ("?", "?", "?", "?")
        error = re.search(r"^Error: (.*)$", prompt, re.M)
        parent = re.search(r'# Its parent: node #\d+ ".*?", score (\S+)', prompt)
        report = f"Node #{node} ({name}) is {status} with score {score}"
        report += f" against its parent's {parent.group(1)}." if parent else "."
        if error:
            report += f" It failed: {error.group(1)[:200]}"
        verdict = re.search(r"verify=passed \(score (\S+)\) \[[^\n]*?beats_baseline=(\w+)", prompt)
        if verdict:
            beats = verdict.group(2) == "True"
            report += f" Verified at {verdict.group(1)}: {'beats' if beats else 'does not beat'}"
            report += " the baseline on both metrics."
        lesson = ""
        if verdict and verdict.group(2) == "True":
            lesson = (
                f"<knowledge><title>{name} beat the baseline in verify</title><content>The "
                f"design '{name}' won on both metrics over the verify seeds (score "
                f"{verdict.group(1)}).</content></knowledge>"
            )
        elif status == "done" and parent and _beats(score, parent.group(1)):
            lesson = (
                f"<knowledge><title>{name} beat its parent</title><content>The design "
                f"'{name}' scored {score} against {parent.group(1)} for its parent; build "
                "on it.</content></knowledge>"
            )
        elif status == "failed" and error:
            lesson = (
                f"<knowledge><title>Why {name} failed</title><content>{error.group(1)[:300]}"
                "</content></knowledge>"
            )
        return f"<analysis>{report}</analysis>\n{lesson}"


def _beats(score: str, parent: str) -> bool:
    try:
        return float(score) > float(parent)
    except ValueError:
        return False
