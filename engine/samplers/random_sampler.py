"""Random: parent and context uniformly among eligible nodes.

The pure-exploration baseline; with the candidate pool it becomes "any of the top K".
"""

from __future__ import annotations

import numpy as np

from engine.samplers.base import Sampler
from engine.samplers.population import Rows


class RandomSampler(Sampler):
    """Uniform choice without replacement, from the sampler's seeded generator."""

    name = "random"

    def rank(self, rows: Rows, k: int) -> np.ndarray:
        if isinstance(rows, slice):
            rows = self.pop.eligible_rows()
        return self.rng.choice(rows, size=min(k, rows.size), replace=False)
