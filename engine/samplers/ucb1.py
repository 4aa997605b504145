"""UCB1: build on nodes that are good, but keep revisiting the ones seldom built on.

Treating each node as an arm of a bandit balances exploiting the best programs against
starving promising ones that were evaluated once and never looked at again.
"""

from __future__ import annotations

import numpy as np

from engine.samplers.base import Sampler
from engine.samplers.population import Rows, rank_desc, take


class UCB1Sampler(Sampler):
    """Rank candidates by ``value_i = norm_fitness_i + c * sqrt(ln N / n_i)``.

    * ``norm_fitness_i``: min-max normalized fitness over the candidates (1.0 when all equal);
    * ``n_i = visits_i + 1``: a node's own evaluation counts as one visit, so a fresh node
      gets a large but finite bonus;
    * ``N = sum(n_i)`` over the candidates; ``c = settings.ucb_c``.

    The parent is the argmax; the other context nodes are the next best by the same value.
    Ties: higher fitness, then lower id. Candidates are all eligible nodes, or the top K1
    when the candidate pool is on (then min, max and N are taken over the pool).
    """

    name = "ucb1"

    def values(self, rows: Rows) -> np.ndarray:
        """UCB1 value of each of ``rows``; NaN for ineligible rows."""
        fitness = self.pop.fitness[rows]
        n = self.pop.visits[rows] + 1.0
        if isinstance(rows, slice):  # whole population: N kept up to date by the population
            total = self.pop.eligible_visits + self.pop.n_eligible
        else:  # explicit rows are all eligible
            total = n.sum()
        low, high = np.nanmin(fitness), np.nanmax(fitness)
        norm = (fitness - low) / (high - low) if high > low else fitness - low + 1.0
        bonus = np.sqrt(n)
        np.divide(self.settings.ucb_c * np.sqrt(np.log(total)), bonus, out=bonus)
        norm += bonus
        return norm

    def rank(self, rows: Rows, k: int) -> np.ndarray:
        fitness = self.pop.fitness[rows]
        return take(rows, rank_desc(self.values(rows), fitness, self.pop.ids[rows], k))
