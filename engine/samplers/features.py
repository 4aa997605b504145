"""Behaviour descriptors of a program: where it falls in an island's MAP-Elites grid.

Bins must never move during a run, or a restart would rebuild different grids; so every
feature has a fixed range: code length on a log scale over a fixed span, diversity as the
token-set distance from the root program (which never changes), and user metrics over the
ranges given in the config. Values outside a range clamp to the edge bins.
"""

from __future__ import annotations

import math
import string
from dataclasses import dataclass, field
from typing import Any

COMPLEXITY = "complexity"
DIVERSITY = "diversity"
DEFAULT_RANGES: dict[str, tuple[float, float]] = {
    COMPLEXITY: (50.0, 100_000.0),
    DIVERSITY: (0.0, 1.0),
}
METRIC_RANGE = (0.0, 1.0)

# Tokens are maximal runs of anything but ASCII whitespace and punctuation (identifiers,
# numbers, keywords). ``str.translate`` + ``split`` is ~3x faster than a regex, which
# matters when a restart re-reads 100,000 programs.
_SEPARATORS = {ord(c): " " for c in string.punctuation.replace("_", "") + string.whitespace}


def tokens(code: str) -> frozenset[str]:
    return frozenset(code.translate(_SEPARATORS).split())


def jaccard_distance(a: frozenset[str], b: frozenset[str]) -> float:
    """1 - |a & b| / |a | b|; 0.0 for two empty sets."""
    common = len(a & b)
    union = len(a) + len(b) - common
    return 1.0 - common / union if union else 0.0


@dataclass
class FeatureGrid:
    """Maps a program to its cell: one bin index per feature dimension."""

    dimensions: list[str]
    bins: int
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def needs_code(self) -> bool:
        return DIVERSITY in self.dimensions

    @property
    def needs_metrics(self) -> bool:
        return any(d not in (COMPLEXITY, DIVERSITY) for d in self.dimensions)

    def cell(
        self,
        code_len: int,
        code: str | None,
        results: dict[str, Any] | None,
        root_tokens: frozenset[str],
        diversity: float | None = None,
    ) -> tuple[int, ...]:
        """Bins of one program; ``code`` is only read for diversity (unless ``diversity``
        is already known), ``results`` for metrics."""
        metrics = (results or {}).get("metrics") or {}
        if not isinstance(metrics, dict):
            metrics = {}
        cell = []
        for dim in self.dimensions:
            low, high = self.ranges.get(dim) or DEFAULT_RANGES.get(dim, METRIC_RANGE)
            if dim == COMPLEXITY:
                value = math.log(max(code_len, 1))
                low, high = math.log(max(low, 1.0)), math.log(max(high, 1.0))
            elif dim == DIVERSITY:
                if diversity is None:
                    diversity = jaccard_distance(tokens(code or ""), root_tokens)
                value = diversity
            else:
                value = _as_float(metrics.get(dim), low)
            cell.append(self._bin(value, low, high))
        return tuple(cell)

    def _bin(self, value: float, low: float, high: float) -> int:
        if not high > low or math.isnan(value):
            return 0
        b = math.floor((value - low) / (high - low) * self.bins)
        return min(max(b, 0), self.bins - 1)


def _as_float(value: Any, default: float) -> float:
    """A metric as a float; missing or non-numeric values fall in the lowest bin."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return default
