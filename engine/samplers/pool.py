"""The candidate pool: narrow the choice to the fittest nodes before a sampler's own rule.

The paper's architecture-design runs take the parent from the top K1 nodes and the other
context nodes from the top K2: the sampler's rule (UCB1, greedy, random) then only decides
*which* strong node to build on, and the context shows a spread of other strong nodes
instead of the ones the rule would rank next.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from engine.samplers.population import Population, Rows, rank_desc, take
from engine.samplers.settings import SamplerSettings


def top_by_fitness(pop: Population, rows: Rows, k: int) -> np.ndarray:
    """The ``k`` fittest eligible rows of ``rows`` (ties: lower id first), best first."""
    fitness = pop.fitness[rows]
    return take(rows, rank_desc(fitness, fitness, pop.ids[rows], k))


def select_from_pool(
    pop: Population,
    rows: np.ndarray,
    rank: Callable[[np.ndarray, int], np.ndarray],
    settings: SamplerSettings,
    rng: np.random.Generator,
) -> np.ndarray:
    """Parent by ``rank`` within the top K1; the rest uniformly from the top K2, parent excluded."""
    assert settings.parent_top_k is not None
    k1 = settings.parent_top_k
    k2 = settings.context_top_k or k1
    parent = rank(top_by_fitness(pop, rows, k1), 1)[:1]
    others = top_by_fitness(pop, rows, k2)
    others = others[others != parent[0]]
    n_others = min(settings.n_context - 1, others.size)
    picked = rng.choice(others, size=n_others, replace=False) if n_others > 0 else others[:0]
    return np.concatenate([parent, picked])
