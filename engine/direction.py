"""Better or worse: the one place that knows what a task's direction means.

A task maximizes or minimizes its score (``direction:`` in task.yaml). Every comparison of
two scores - the ledger's best, the samplers' ranking, the analyzer's verdict, the TUI's
colours, the export's curve - goes through these functions, so that "higher is better" is
never spelled out a second time and no module can get another's sign wrong. Standard library
only (the TUI uses it too); the functions also work element-wise on numpy arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

T = TypeVar("T")

MAXIMIZE, MINIMIZE = "maximize", "minimize"


def maximizes(direction: str | None) -> bool:
    """What a stored ``direction`` (task.yaml, run meta) says; anything but "minimize" is
    the default, maximize."""
    return direction != MINIMIZE


def name(maximize: bool) -> str:
    return MAXIMIZE if maximize else MINIMIZE


def fitness(score: Any, maximize: bool) -> Any:
    """The score turned so that higher is always better (scalars and arrays alike)."""
    return score if maximize else -score


def gain(new: Any, old: Any, maximize: bool) -> Any:
    """How much ``new`` improves on ``old``: positive is better, whatever the direction."""
    return new - old if maximize else old - new


def improved(delta: float, maximize: bool) -> bool:
    """Whether a raw difference ``new - old`` is an improvement."""
    return delta > 0 if maximize else delta < 0


def better(a: float, b: float | None, maximize: bool) -> bool:
    """Whether score ``a`` is strictly better than ``b`` (anything beats no score)."""
    if b is None:
        return True
    return a > b if maximize else a < b


def best(items: Iterable[T], score: Callable[[T], float], maximize: bool, default: Any = None):  # noqa: ANN201
    """The item with the best score (the first one of equal bests), or ``default``."""
    return max(items, key=lambda item: fitness(score(item), maximize), default=default)


def best_value(values: Iterable[float], maximize: bool) -> float:
    """The best of some scores."""
    return max(values) if maximize else min(values)


def sql_order(maximize: bool) -> str:
    """``ORDER BY score <this>`` puts the best first."""
    return "DESC" if maximize else "ASC"
