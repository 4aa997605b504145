"""The debug agent: a candidate that crashes gets a few chances to be fixed in place.

An idea is not refuted by a typo. When an evaluation fails with a *runtime error* (an
exception, a crash of the program), the debug agent sees the code and the error tail and
proposes a minimal fix as SEARCH/REPLACE edits; the pipeline re-runs the same node and
step with the fixed code, up to ``engineer.debug_attempts`` times, and records each
attempt in the node's metadata. Timeouts, invalid results and contract refusals (a
non-causal mixer, a loss that ignores rewards) are verdicts on the idea, not bugs, and are
never "debugged" into passing.

Offline, a rule-based debugger fixes the obvious: a ``NameError`` for a well-known module
or alias (``np``, ``math``, ``torch``, ``F``, ...) gets its import. Otherwise it says which
rule would have been needed, and the failure stands.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Any

from engine.agents.base import Proposal
from engine.agents.diff import DiffError, apply_blocks, parse_blocks
from engine.agents.evolve_block import frozen_violation, has_markers

# An exception name in an error line or a traceback: the mark of a runtime error.
_EXCEPTION = re.compile(r"\b([A-Z][A-Za-z0-9]*(?:Error|Exception))\b")
_NOT_BUGS = ("timed out", "rejected by precheck", "killed by signal")
KNOWN_IMPORTS = {
    "math": "import math",
    "random": "import random",
    "itertools": "import itertools",
    "functools": "import functools",
    "collections": "import collections",
    "time": "import time",
    "os": "import os",
    "re": "import re",
    "json": "import json",
    "np": "import numpy as np",
    "numpy": "import numpy as np",
    "torch": "import torch",
    "nn": "import torch.nn as nn",
    "F": "import torch.nn.functional as F",
    "scipy": "import scipy",
}


@dataclass
class DebugInput:
    """What the debug agent sees of one failed attempt."""

    task_name: str
    task_description: str
    code: str
    error: str
    stderr_tail: str
    attempt: int
    node_id: int | None = None  # the node the debug call is recorded under


def is_runtime_error(evaluation: Any) -> bool:
    """True when the failure is a crash worth debugging, not a verdict on the idea."""
    if evaluation.ok:
        return False
    error = evaluation.error or ""
    if any(mark in error for mark in _NOT_BUGS):
        return False
    results = evaluation.results if isinstance(evaluation.results, dict) else {}
    stderr = str(results.get("stderr_tail") or "")
    return bool(_EXCEPTION.search(error)) or "Traceback (most recent call last)" in stderr


def exception_of(inp: DebugInput) -> tuple[str, str]:
    """(exception name, its message) from the error line, else from the stderr tail."""
    for text in (inp.error, *reversed(inp.stderr_tail.splitlines())):
        match = re.search(r"\b([A-Z][A-Za-z0-9]*(?:Error|Exception))\b:?\s*(.*)", text)
        if match:
            return match.group(1), match.group(2).strip()
    return "", ""


class OfflineDebugger:
    """Rule-based fixes for obvious crashes; ``last_reason`` says why when there is none."""

    label = "rule-based debugger"

    def __init__(self) -> None:
        self.last_reason = ""

    async def fix(self, inp: DebugInput) -> Proposal | None:
        name, message = exception_of(inp)
        if name == "NameError":
            missing = re.search(r"name '([A-Za-z_][A-Za-z0-9_]*)' is not defined", message)
            symbol = missing.group(1) if missing else ""
            statement = KNOWN_IMPORTS.get(symbol)
            if statement and statement not in inp.code:
                code = add_import(inp.code, statement)
                return Proposal(
                    code=code,
                    name=f"fix-import-{symbol}",
                    motivation=f"debug: {symbol!r} was used without its import; added "
                    f"`{statement}`.",
                )
            self.last_reason = f"no rule for NameError {symbol!r}"
            return None
        self.last_reason = f"no rule applies to {name or 'this failure'}"
        return None


def add_import(code: str, statement: str) -> str:
    """``code`` with ``statement`` after its docstring and ``from __future__`` imports."""
    try:
        body = ast.parse(code).body
    except SyntaxError:
        body = []
    position, i = 0, 0
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        position, i = body[0].end_lineno or 0, 1
    while i < len(body) and isinstance(body[i], ast.ImportFrom) and body[i].module == "__future__":
        position, i = body[i].end_lineno or position, i + 1
    lines = code.split("\n")
    return "\n".join(lines[:position] + [statement] + lines[position:])


class LLMDebugger:
    """Asks the model for a minimal SEARCH/REPLACE fix of the crash."""

    def __init__(self, client: Any, templates: Any, program_name: str = "program.py") -> None:
        from engine.agents.llm.prompts import lang_for

        self.client = client
        self.templates = templates
        self.lang = lang_for(program_name)
        self.label = f"LLM debugger ({client.label})"
        self.last_reason = ""

    async def fix(self, inp: DebugInput) -> Proposal | None:
        variables = {
            "task_name": inp.task_name,
            "task_description": inp.task_description,
            "code": inp.code.rstrip("\n"),
            "error": inp.error,
            "stderr": inp.stderr_tail[-3000:],
            "attempt": inp.attempt,
            "lang": self.lang,
            "evolve_blocks": has_markers(inp.code),
        }
        messages = [
            {"role": "system", "content": self.templates.render("debug_system.j2", **variables)},
            {"role": "user", "content": self.templates.render("debug.j2", **variables)},
        ]
        completion = await self.client.complete(messages, node_id=inp.node_id)
        try:
            code = apply_blocks(inp.code, parse_blocks(completion.text))
        except DiffError as exc:
            self.last_reason = f"unusable fix: {' '.join(str(exc).split())[:200]}"
            return None
        violation = frozen_violation(inp.code, code) if has_markers(inp.code) else ""
        if violation or code == inp.code:
            self.last_reason = violation or "the fix changed nothing"
            return None
        return Proposal(
            code=code,
            name=f"debug-{inp.attempt}",
            motivation=f"debug attempt {inp.attempt}: fix for {inp.error[:200]}",
        )
