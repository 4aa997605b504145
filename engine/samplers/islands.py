"""MAP-Elites islands: several populations that keep *different kinds* of good programs.

Each island keeps a grid over behaviour features (see ``features.py``); a cell holds its elite,
the fittest program that falls in it. Sampling from elites rather than from the raw
population keeps diverse stepping stones alive, and separate islands let lines of search
mature before they compete: a child lives on the island it was sampled from, and only ring
migration of each island's top elites mixes them.

State that must survive a restart lives in the store: a node's home island (``node.island``),
migrants (``island_members``), the round-robin cursor and the count of the last migration
(meta). Grids are rebuilt from those, and elites are chosen by an order-independent rule,
so a fresh sampler over the same store has the same cells and elites.
"""

from __future__ import annotations

import json

import numpy as np

from engine.samplers.base import Sampler
from engine.samplers.features import FeatureGrid, jaccard_distance, tokens
from engine.samplers.pool import top_by_fitness
from engine.samplers.settings import SamplerSettings
from engine.store.records import Node, Selection
from engine.store.run_store import RunStore

Cell = tuple[int, ...]
CURSOR_KEY = "island_cursor"
MIGRATION_KEY = "last_migration_at"


class IslandSampler(Sampler):
    """Round-robin over islands; within one, parent and context from the cell elites.

    Parent: with ``exploration_ratio`` a uniformly random occupied cell's elite, with
    ``exploitation_ratio`` the island's best elite, otherwise a linear rank-weighted choice
    among the elites. Context: the parent, then the island's best other elites. An island
    without elites is seeded: the parent is the global best and the child joins that island.
    """

    name = "island"

    def __init__(
        self,
        settings: SamplerSettings,
        store: RunStore,
        maximize: bool = True,
        seed: int | None = None,
    ) -> None:
        super().__init__(settings, store, maximize, seed)
        self.n = settings.num_islands
        self.grid = FeatureGrid(
            settings.feature_dimensions, settings.feature_bins, dict(settings.feature_ranges)
        )
        self._root_tokens: frozenset[str] | None = None
        self._cell: dict[int, Cell] = {}  # row -> cell, for eligible rows
        self._migrants: dict[int, set[int]] = {}  # row -> islands it migrated to
        self._members: list[dict[Cell, set[int]]] = [{} for _ in range(self.n)]
        self._elite: list[dict[Cell, int]] = [{} for _ in range(self.n)]
        self._cursor = int(store.get_meta(CURSOR_KEY, 0))
        self._last_migration = int(store.get_meta(MIGRATION_KEY, 0))
        for node_id, island in store.island_members():
            row = self.pop.row(node_id)
            if row is not None:
                self._migrants.setdefault(row, set()).add(island % self.n)
        self._load_cells()
        self._maybe_migrate()  # one that was due when the previous process stopped

    # ------------------------------------------------------------------ engine API
    def observe(self, node: Node) -> None:
        row = self.pop.row(node.id) if node.id is not None else None
        if row is not None:
            self._unplace(row)
        super().observe(node)
        row = self.pop.row(node.id)
        if node.step == 0 and self.grid.needs_code:
            self._root_tokens = tokens(node.code)
        if self.pop.eligible[row]:
            diversity = None
            if self.grid.needs_code:
                diversity = jaccard_distance(tokens(node.code), self._root())
                self._save_diversity([(node.id, diversity)])
            cell = self.grid.cell(len(node.code), None, node.results, self._root(), diversity)
            self._place(row, cell)
        self._maybe_migrate()

    def prune(self, node_id: int) -> None:
        row = self.pop.row(node_id)
        if row is not None:
            self._unplace(row)
        super().prune(node_id)
        self._maybe_migrate()

    def _select(self) -> Selection:
        if self.pop.n_eligible == 0:
            raise LookupError("no eligible node to sample (no done node with a score)")
        island = self._cursor % self.n
        self._cursor += 1
        self.store.set_meta(CURSOR_KEY, self._cursor)
        elites = self._ranked_elites(island)
        if elites.size == 0:  # seed the island from the global best
            chosen = top_by_fitness(self.pop, self.pop.all_rows(), self.settings.n_context)
        else:
            parent = self._pick_parent(elites)
            others = elites[elites != parent][: self.settings.n_context - 1]
            chosen = np.concatenate([[parent], others])
        ids = [int(i) for i in self.pop.ids[chosen]]
        return Selection(parent_id=ids[0], context_ids=ids, island=island)

    # ------------------------------------------------------------------ inspection
    def elites(self, island: int) -> dict[Cell, int]:
        """Cell -> id of its elite, for one island."""
        return {cell: int(self.pop.ids[row]) for cell, row in self._elite[island].items()}

    def members(self, island: int) -> set[int]:
        """Ids of the nodes that live on ``island`` (home or migrated), any status."""
        return {
            int(self.pop.ids[row]) for row in range(self.pop.size) if island in self._islands(row)
        }

    # ------------------------------------------------------------------ internals
    def _pick_parent(self, elites: np.ndarray) -> int:
        r = self.rng.random()
        if r < self.settings.exploration_ratio:
            return int(elites[self.rng.integers(elites.size)])
        if r < self.settings.exploration_ratio + self.settings.exploitation_ratio:
            return int(elites[0])
        weights = np.arange(elites.size, 0, -1, dtype=float)
        return int(elites[self.rng.choice(elites.size, p=weights / weights.sum())])

    def _ranked_elites(self, island: int) -> np.ndarray:
        rows = np.fromiter(self._elite[island].values(), dtype=np.int64)
        return top_by_fitness(self.pop, rows, rows.size)

    def _islands(self, row: int) -> set[int]:
        home = int(self.pop.island[row])
        islands = set(self._migrants.get(row, ()))
        if home >= 0:
            islands.add(home % self.n)
        return islands

    def _better(self, a: int, b: int) -> bool:
        fa, fb = self.pop.fitness[a], self.pop.fitness[b]
        return bool(fa > fb or (fa == fb and self.pop.ids[a] < self.pop.ids[b]))

    def _place(self, row: int, cell: Cell, islands: set[int] | None = None) -> None:
        self._cell[row] = cell
        for island in self._islands(row) if islands is None else islands:
            self._members[island].setdefault(cell, set()).add(row)
            elite = self._elite[island].get(cell)
            if elite is None or self._better(row, elite):
                self._elite[island][cell] = row

    def _unplace(self, row: int) -> None:
        cell = self._cell.pop(row, None)
        if cell is None:
            return
        for island in self._islands(row):
            members = self._members[island].get(cell, set())
            members.discard(row)
            if self._elite[island].get(cell) != row:
                continue
            if members:
                best = next(iter(members))
                for other in members:
                    best = other if self._better(other, best) else best
                self._elite[island][cell] = best
            else:
                del self._elite[island][cell]
                self._members[island].pop(cell, None)

    def _root(self) -> frozenset[str]:
        """Tokens of the root program (step 0), the fixed reference of ``diversity``."""
        if self._root_tokens is None and self.grid.needs_code:
            code = self.store.root_code()
            if code is not None:
                self._root_tokens = tokens(code)
        return self._root_tokens or frozenset()

    def _load_cells(self) -> None:
        """One pass at start-up: cells of every eligible node.

        Diversity needs the code, so each node's value is cached in ``node_diversity`` when
        it is first computed; a restart then reads code only for nodes without one (at
        100,000 nodes of 10 KB that is the difference between seconds and half a minute).
        """
        needs_code = self.grid.needs_code
        root = self._root()
        for batch in self.store.cell_rows(needs_code, self.grid.needs_metrics):
            computed: list[tuple[int, float]] = []
            for node_id, diversity, code, results in batch:
                row = self.pop.row(node_id)
                if row is None or not self.pop.eligible[row]:
                    continue
                if needs_code and diversity is None:
                    diversity = jaccard_distance(tokens(code or ""), root)
                    computed.append((node_id, diversity))
                cell = self.grid.cell(
                    int(self.pop.code_len[row]), None, _json(results), root, diversity
                )
                self._place(row, cell)
            self._save_diversity(computed)

    def _save_diversity(self, values: list[tuple[int, float]]) -> None:
        if values:
            self.store.save_diversity(values)

    def _maybe_migrate(self) -> None:
        """Ring migration each time the finished count crosses a multiple of the interval."""
        every = self.settings.migration_interval
        count = self.pop.n_finished
        if every <= 0 or self.n < 2 or count // every <= self._last_migration // every:
            return
        moves: list[tuple[int, int, int]] = []  # (row, from, to), decided before any move
        for src in range(self.n):
            ranked = self._ranked_elites(src)
            if ranked.size == 0:
                continue
            k = max(1, round(self.settings.migration_rate * ranked.size))
            dst = (src + 1) % self.n
            moves += [(int(r), src, dst) for r in ranked[:k] if dst not in self._islands(int(r))]
        for row, _, dst in moves:
            self._migrants.setdefault(row, set()).add(dst)
            self._place(row, self._cell[row], {dst})
        ids = [(int(self.pop.ids[row]), src, dst) for row, src, dst in moves]
        self.store.add_island_members([(node_id, dst) for node_id, _, dst in ids])
        self._last_migration = count
        self.store.set_meta(MIGRATION_KEY, count)
        self.store.add_event(
            "migration",
            f"ring migration after {count} finished nodes: {len(ids)} elites copied",
            data={"at": count, "moves": [list(m) for m in ids]},
        )


def _json(text: str | None) -> dict | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
