"""Static checks of a candidate's source: run in the evaluator itself, before any candidate code.

Only a few numeric modules may be imported and a few builtins (file access, exec, dynamic
imports) may not appear: the candidate runs inside the training process and should change
the algorithm, not the harness, the data or the score. This is a guard against shortcuts,
not a security sandbox (the engine's sandbox is that).
"""

from __future__ import annotations

import ast

ALLOWED_IMPORTS = frozenset({"torch", "math", "numpy", "typing", "dataclasses", "functools"})
BANNED_NAMES = frozenset(
    {"open", "exec", "eval", "compile", "__import__", "breakpoint", "globals", "input"}
)
FUNCTIONS = ("compute_advantages", "policy_loss")


def static_problems(source: str) -> list[str]:
    """Problems visible in the source alone (syntax, imports, banned builtins, functions)."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        return [f"syntax error at line {exc.lineno}: {exc.msg}"]
    problems = []
    defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    for name in FUNCTIONS:
        if name not in defined:
            problems.append(f"program defines no top-level function {name}()")
    for node in ast.walk(tree):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            modules = [node.module or "."]
        for module in modules:
            if module.split(".")[0] not in ALLOWED_IMPORTS:
                problems.append(
                    f"line {node.lineno}: import of {module!r} is not allowed "
                    f"(allowed: {', '.join(sorted(ALLOWED_IMPORTS))})"
                )
        if isinstance(node, ast.Name) and node.id in BANNED_NAMES:
            problems.append(f"line {node.lineno}: use of {node.id!r} is not allowed")
    return problems
