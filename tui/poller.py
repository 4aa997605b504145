"""One refresh of the screen's data: read what changed in the run database, diff it in.

``Poller.tick`` runs in the TUI's background thread about once a second. It reads only what
changed (nodes by ``updated_at``, events and LLM calls by id), keeps the population model
up to date, and hands the UI thread a ``Tick``: the header summary, the table window with
cells only for rows that need redrawing, new events, and the selected node's details when
they changed. The UI thread never queries the database for the main screen.

Unfinished rows are redrawn on every tick, read or not: their stage clocks tick. The run's
reported best is ``engine/store/standing.Standings.best()`` (the best verified node where
the task verifies), computed over the window and the model's few best rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.store.progress import IDLE_KEY, Progress, measure
from engine.store.reader import Cursor, LlmTotals, RunReader
from engine.store.schema import PENDING, RUNNING
from engine.store.standing import META_KEY, StageNames, Standings
from tui.knowledge import KnowledgeReader, Proposal, Retrieved
from tui.model import Population, View
from tui.widgets.header import RunSummary
from tui.widgets.population import Cells, row_cells

WINDOW = 1000  # rows the table holds at most: the first ones of the current sort/filter
# Progress is re-measured over every node after a change, but never with more than this
# share of the poller's time (about 70 ms at 100,000 nodes: at most every 0.7 s there).
PROGRESS_SHARE = 0.1


@dataclass
class Detail:
    """The selected node, in full, with its parent's score and what it retrieved."""

    node_id: int
    node: dict[str, Any] | None
    parent_score: float | None
    retrieved: list[Retrieved] | None  # None: no cognition base in this run


@dataclass
class Tick:
    seq: int
    summary: RunSummary
    maximize: bool
    view: View
    order: list[int]
    matched: int
    cells: dict[int, Cells]
    events: list[tuple[int, float, str, str]]
    curve: list[tuple[int, float]] | None = None  # None: unchanged
    pending: list[Proposal] | None = None
    pending_changed: bool = False
    detail: Detail | None = None  # None: unchanged
    meta: dict[str, Any] = field(default_factory=dict)
    stages: StageNames = field(default_factory=StageNames)  # the score and verify stages


class Poller:
    """Incremental reader of one run; ``view`` and ``selected`` are set by the UI thread."""

    def __init__(
        self, reader: RunReader, clock: Callable[[], float] = time.time, window: int = WINDOW
    ) -> None:
        self.reader = reader
        self.knowledge = KnowledgeReader(reader)
        self.clock = clock
        self.window = window
        self.view = View()
        self.selected: int | None = None
        self.seq = 0
        self.stages = StageNames()
        self._start_over()

    def _start_over(self) -> None:
        """Forget what was read: the next tick reads the whole run again."""
        self._generation = self.reader.generation
        self.cursor = Cursor()
        self.pop = Population(names=self.stages)
        self._baseline: float | None = None
        self._standings: Standings | None = None
        self._shown: set[int] = set()
        self._last_view: View | None = None
        self._order: list[int] = []
        self._matched = 0
        self._curve_version = -1
        self._best_id: int | None = None
        self._pending: list[Proposal] | None | bool = False  # False: never sent
        self._detail_key: tuple | None = None
        self._progress: Progress | None = None
        self._progress_key: tuple | None = None
        self._progress_next = 0.0  # monotonic time before which it is not re-measured

    def tick(self) -> Tick:
        self.seq += 1
        now = self.clock()
        meta = self.reader.meta()
        stages = StageNames.from_meta(meta.get(META_KEY))
        if self.reader.generation != self._generation or stages != self.stages:
            self.stages = stages  # restored from a backup, or the stages recorded meanwhile
            self._start_over()
        self.pop.maximize = meta.get("direction", "maximize") != "minimize"
        changed = self.pop.apply(self.reader.changed_nodes(self.cursor, stages.verify))
        view = self.view
        unranked = stages.verify is not None and self._standings is None
        if changed or view != self._last_view or unranked:
            self._order, self._matched = self.pop.window(view, self.window)
            self._last_view = view
            if stages.verify is not None:  # re-ranked only when something changed
                self._standings = self.pop.standings(self._order)
        standings = self._standings if stages.verify is not None else None
        best = standings.best() if standings is not None else None
        if standings is None:
            best_id = self.pop.best.id if self.pop.best else None
        else:
            best_id = best.node_id if best else None
        if best_id != self._best_id:  # the best marker moves: redraw both rows
            changed |= {i for i in (best_id, self._best_id) if i is not None}
            self._best_id = best_id
        baseline = standings.baseline if standings is not None else None
        if baseline != self._baseline:  # every flag may change
            self._baseline, self._shown = baseline, set()
        cells: dict[int, Cells] = {}
        for node_id in self._order:
            row = self.pop.rows[node_id]
            in_flight = row.status in (PENDING, RUNNING)  # its clock ticks
            if node_id not in self._shown or node_id in changed or in_flight:
                cells[node_id] = row_cells(row, self.pop, now, standings, best)
        self._shown = set(self._order)
        tick = Tick(
            seq=self.seq,
            summary=self._summary(meta, now),
            maximize=self.pop.maximize,
            view=view,
            order=list(self._order),
            matched=self._matched,
            cells=cells,
            events=self.reader.events(self.cursor),
            meta=meta,
            stages=stages,
        )
        if self.pop.version != self._curve_version:
            self._curve_version = self.pop.version
            tick.curve = self.pop.curve()
        pending = self.knowledge.pending() if self.knowledge.available() else None
        if pending != self._pending:
            self._pending = pending
            tick.pending, tick.pending_changed = pending, True
        else:
            tick.pending = pending
        tick.summary.pending_items = None if pending is None else len(pending)
        if standings is not None:
            tick.summary.verify_stage = stages.verify
            tick.summary.reported = best
            tick.summary.flagged = self.pop.flagged()
        tick.detail = self._detail()
        return tick

    def _summary(self, meta: dict[str, Any], now: float) -> RunSummary:
        engine = self.reader.engine_state(meta, now)
        elapsed = None
        if engine.started is not None:
            end = now if engine.live else (engine.heartbeat or now)
            elapsed = max(0.0, end - engine.started)
        totals = self.reader.llm_totals(self.cursor)
        steps_total = meta.get("steps_total")
        return RunSummary(
            task=str(meta.get("task") or "?"),
            run_dir=str(self.reader.run_dir),
            engine=engine,
            steps_done=self.pop.steps_done,
            steps_total=steps_total if isinstance(steps_total, int) else None,
            nodes=len(self.pop.rows),
            counts=dict(self.pop.counts),
            best=self.pop.best,
            llm_mode=str(meta.get("llm_mode") or "?"),
            llm=LlmTotals(totals.calls, totals.tokens, totals.cost, totals.last_id),
            elapsed=elapsed,
            progress=self._measure(
                steps_total if isinstance(steps_total, int) else None,
                meta.get(IDLE_KEY),  # paused and down time leave the rate alone
                engine.live and engine.state == "running",  # no ETA otherwise
            ),
        )

    def _measure(self, steps_total: int | None, idle: Any, working: bool) -> Progress | None:
        """Speed, ETA and stall (``engine.store.progress``, as ``status`` has them), when
        changed."""
        key = (self.pop.version, steps_total, self.pop.maximize, repr(idle), working)
        if key == self._progress_key or time.monotonic() < self._progress_next:
            return self._progress
        started = time.monotonic()
        rows = [(r.step, r.finished_at, r.score, r.status) for r in self.pop.rows.values()]
        self._progress = measure(rows, steps_total, self.pop.maximize, idle, working)
        self._progress_key = key
        cost = time.monotonic() - started
        self._progress_next = time.monotonic() + cost / PROGRESS_SHARE
        return self._progress

    def _detail(self) -> Detail | None:
        """The selected node's full record, re-read only when it (or the selection) changed."""
        node_id = self.selected
        row = self.pop.rows.get(node_id) if node_id is not None else None
        key = (node_id, row.updated_at if row else None, row.status if row else None)
        if key == self._detail_key or node_id is None:
            return None
        self._detail_key = key
        node = self.reader.node(node_id)
        parent = self.pop.rows.get(row.parent_id) if row and row.parent_id is not None else None
        retrieved = self.knowledge.retrieved_for(node_id) if self.knowledge.available() else None
        return Detail(node_id, node, parent.score if parent else None, retrieved)

    def resend(self) -> None:
        """Make the next tick send every row of the window and the selected node again."""
        self._shown = set()
        self._detail_key = None

    def forget_detail(self) -> None:
        """Make the next tick re-send the selected node (e.g. after a cognition decision)."""
        self._detail_key = None
