"""What every database sampler shares: the base class.

A sampler chooses the parent and the context nodes of the next round. It has to stay fast at
100,000 nodes, so it never reads the node table per round: the population is mirrored from
the store once at start-up (``population.py``) and kept current by ``observe`` and
``prune``; a round is then a few vectorized passes over those arrays.
"""

from __future__ import annotations

import math

import numpy as np

from engine import direction
from engine.samplers.pool import select_from_pool, top_by_fitness
from engine.samplers.population import Population, Rows
from engine.samplers.settings import SamplerSettings
from engine.store.records import PRUNED, Node, Selection
from engine.store.run_store import RunStore


class Sampler:
    """Base class: loads the population, records visits, and applies the candidate pool.

    A subclass supplies ``rank`` (its preference order among candidate rows); the island
    sampler replaces ``_select`` entirely.
    """

    name = "base"

    def __init__(
        self,
        settings: SamplerSettings,
        store: RunStore,
        maximize: bool = True,
        seed: int | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.maximize = maximize
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.pop = Population()
        for row in store.node_summaries():
            self.pop.upsert(
                row["id"],
                step=row["step"],
                status=row["status"],
                fitness=self.fitness(row["score"]),
                island=row["island"],
                code_len=row["code_len"] or 0,
                visits=row["visits"],
            )

    # ------------------------------------------------------------------ engine API
    def sample(self, step: int | None = None, elite: int = 0) -> Selection:
        """Choose the next parent and context, and count (in memory and store) their visit.

        With ``step`` (the step the selection is for) the random draws come from a generator
        seeded by (run seed, step), so a step's choice depends only on the population it
        sees, never on how many rounds were sampled before it (a resume, a retry, worker
        timing). See ``engine/samplers/barrier.py`` for making what it sees deterministic.
        ``elite`` > 0 also lists that many of the fittest eligible nodes (no visit counted).
        """
        if step is not None and self.seed is not None:
            self.rng = np.random.default_rng([self.seed, step])
        selection = self._select()
        if elite > 0:
            rows = top_by_fitness(self.pop, self.pop.all_rows(), elite)
            selection.elite_ids = [int(i) for i in self.pop.ids[rows]]
        self.pop.add_visits([self.pop.row(i) for i in selection.context_ids])
        self.store.add_visits(selection.context_ids)
        return selection

    def observe(self, node: Node) -> None:
        """A node finished; only ``done`` nodes with a score become eligible."""
        assert node.id is not None, "observe() needs a stored node"
        self.pop.upsert(
            node.id,
            step=node.step,
            status=node.status,
            fitness=self.fitness(node.score),
            island=node.island,
            code_len=len(node.code),
            visits=node.visits,
        )

    def prune(self, node_id: int) -> None:
        """A person pruned the node: it is never chosen again."""
        i = self.pop.row(node_id)
        if i is None:
            row = self.store.node_place(node_id)
            if row is None:
                return
            i = self.pop.upsert(
                node_id,
                step=row[0],
                status=PRUNED,
                fitness=None,
                island=row[1],
                code_len=row[2] or 0,
            )
        self.pop.prune(i)

    # --------------------------------------------------------------- subclass API
    def fitness(self, score: float | None) -> float | None:
        """Everything inside maximizes: fitness is the score, negated when minimizing.

        A non-finite score (NaN, inf) counts as no score: it would break the normalization.
        """
        if score is None or not math.isfinite(score):
            return None
        return direction.fitness(float(score), self.maximize)

    def rank(self, rows: Rows, k: int) -> np.ndarray:
        """Up to ``k`` eligible rows among ``rows`` in this sampler's order, best first.

        ``rows`` is an array of eligible rows (candidate pool) or ``pop.all_rows()``, where
        ineligible rows show as NaN fitness and must never be returned.
        """
        raise NotImplementedError

    def _select(self) -> Selection:
        if self.pop.n_eligible == 0:
            raise LookupError("no eligible node to sample (no done node with a score)")
        if self.settings.parent_top_k is not None:
            rows = self.pop.eligible_rows()
            chosen = select_from_pool(self.pop, rows, self.rank, self.settings, self.rng)
        else:
            chosen = self.rank(self.pop.all_rows(), self.settings.n_context)
        ids = [int(i) for i in self.pop.ids[chosen]]
        return Selection(parent_id=ids[0], context_ids=ids)
