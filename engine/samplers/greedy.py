"""Greedy: always build on the best programs found so far.

The pure-exploitation baseline; useful for cheap tasks and to measure what the
exploration of the other samplers buys.
"""

from __future__ import annotations

import numpy as np

from engine.samplers.base import Sampler
from engine.samplers.pool import top_by_fitness
from engine.samplers.population import Rows


class GreedySampler(Sampler):
    """Parent and context are the top ``n_context`` nodes by fitness (ties: lower id)."""

    name = "greedy"

    def rank(self, rows: Rows, k: int) -> np.ndarray:
        return top_by_fitness(self.pop, rows, k)
