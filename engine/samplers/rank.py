"""Rank sampler (the default): a score-rank-weighted parent and an upper-confidence context.

The paper's UCB1 gives a node evaluated once an exploration bonus of ``c * sqrt(ln N)``
(about 3 at 200 nodes) against a score normalised to [0, 1], so the newest node nearly
always wins: in one offline run 199 of 200 parents were among the 3 newest nodes, the run
became a single lineage and plateaued. Here the parent is *drawn* instead, with a weight
that falls with the node's score rank and with how often it was already built on:

    weight_i = exp(-rank_i / tau) / (1 + visits_i) ** visit_power

``rank_i`` is 0 for the fittest node; ``tau`` (``rank_tau``) sets how far down the ranking
the search still looks, so a strong node is built on often but not forever, and a good
node that was tried a lot yields to the next ones. Everything is relative to the ranking,
not to score gaps, so the rule behaves the same on any score scale.

The other context nodes are the best of the rest by a UCB value with a bounded bonus:
``(1 - w) * norm_fitness + w / sqrt(n_i)`` (``w`` = ``context_explore``, ``n_i`` = visits +
1), so the context shows strong nodes and, among similar ones, the less-seen ones.
"""

from __future__ import annotations

import numpy as np

from engine.samplers.base import Sampler
from engine.samplers.population import Rows, rank_desc, take

_CUTOFF = 30.0  # ranks beyond tau * _CUTOFF have weight < 1e-13: never drawn in practice


class RankSampler(Sampler):
    """Parent drawn by rank weight and visit penalty; context by a bounded UCB value."""

    name = "rank"

    def rank(self, rows: Rows, k: int) -> np.ndarray:
        if isinstance(rows, slice):
            rows = self.pop.eligible_rows()
        if rows.size == 0:
            return rows
        parent = self._draw_parent(rows)
        rest = rows[rows != parent]
        if k <= 1 or rest.size == 0:
            return np.array([parent], dtype=np.int64)
        context = take(
            rest,
            rank_desc(self._context_value(rest), self.pop.fitness[rest], self.pop.ids[rest], k - 1),
        )
        return np.concatenate([[parent], context]).astype(np.int64)

    def parent_weights(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rows that can be drawn, their unnormalised weights); only the top ranks count."""
        tau = self.settings.rank_tau
        keep = int(min(rows.size, max(1, np.ceil(tau * _CUTOFF))))
        fitness, ids = self.pop.fitness[rows], self.pop.ids[rows]
        top = rank_desc(fitness.copy(), fitness, ids, keep) if keep <= 16 else None
        if top is None:  # partial sort: O(n) to cut, then sort the kept ranks
            cut = (
                np.argpartition(-fitness, keep - 1)[:keep]
                if keep < rows.size
                else np.arange(rows.size)
            )
            top = cut[np.lexsort((ids[cut], -fitness[cut]))]
        chosen = rows[top]
        weights = np.exp(-np.arange(top.size) / tau)
        weights /= (1.0 + self.pop.visits[chosen]) ** self.settings.visit_power
        return chosen, weights

    def _draw_parent(self, rows: np.ndarray) -> int:
        chosen, weights = self.parent_weights(rows)
        return int(self.rng.choice(chosen, p=weights / weights.sum()))

    def _context_value(self, rows: np.ndarray) -> np.ndarray:
        fitness = self.pop.fitness[rows]
        low, high = fitness.min(), fitness.max()
        norm = (fitness - low) / (high - low) if high > low else np.ones_like(fitness)
        w = self.settings.context_explore
        return (1.0 - w) * norm + w / np.sqrt(self.pop.visits[rows] + 1.0)
