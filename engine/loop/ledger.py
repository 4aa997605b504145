"""The engine's books on finished nodes: step count, best score, lost evaluations, backups.

Why apart from the scheduler: what happens once a node has finished is the same whichever
way it finished (done, failed, pruned, interrupted and resumed), and it is where the run's
durable side effects live - the sampler learns the node, the event log records it, and
every ``backup_every`` finished nodes an online backup is taken. Keeping it in one place
makes the order of those effects easy to read and to test.

Every method named ``record_*`` or taking a ``store`` runs in the engine's db thread
(``engine.store.writer.StoreThread``); the rest is plain in-memory bookkeeping on the loop thread.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

from engine import direction
from engine.store.records import DONE, Node
from engine.store.run_store import RunStore
from engine.store.twins import TWIN_KEY

log = logging.getLogger(__name__)

MAX_LOSSES = 3  # a node whose evaluation was lost more often than this fails


class Ledger:
    """Counts and side effects of finished nodes for one engine run.

    ``observe``: the sampler's ``observe`` (called in the db thread, before the event);
    ``backups``: an ``engine.store.backup.Backups`` (``.maybe(store, n)``, ``.now(store)``) or None.
    """

    def __init__(
        self,
        maximize: bool,
        observe: Callable[[Node], Any],
        backups: Any | None = None,
        steps_done: int = 0,
        best: float | None = None,
    ) -> None:
        self.maximize = maximize
        self.observe = observe
        self.backups = backups
        self.steps_done = steps_done  # finished steps >= 1 (the root is step 0)
        self.best = best
        self._losses: dict[int, int] = {}  # node id -> evaluations lost with their worker

    def lost(self, node_id: int) -> int:
        """Count one more lost evaluation of the node; returns how many so far."""
        self._losses[node_id] = self._losses.get(node_id, 0) + 1
        return self._losses[node_id]

    def finish(self, node: Node) -> tuple[str, str]:
        """Count the node; returns its console line and its event message."""
        if node.step >= 1:
            self.steps_done += 1
        scored = node.status == DONE and node.score is not None and math.isfinite(node.score)
        if scored and direction.better(node.score, self.best, self.maximize):
            self.best = node.score
        parent = f"#{node.parent_ids[0]}" if node.parent_ids else "-"
        best = "-" if self.best is None else f"{self.best:.6g}"
        if node.status == DONE:
            outcome = f"score {node.score:.6g}"
        else:
            outcome = f"{node.status.upper()}: {node.error}"
        twin = node.metadata.get(TWIN_KEY)
        if twin is not None and node.status == DONE:
            outcome += f" (same program as #{twin}: not run again)"
        line = f"step {node.step:>4}  #{node.id:<5} <- {parent:<6} {outcome}  | best {best}"
        return line, f"step {node.step} #{node.id} {outcome}"

    def record(self, store: RunStore, node: Node, event: str, steps_done: int) -> None:
        """(db thread) Book a finished node, in this order: sampler, event log, backup."""
        self.observe(node)
        store.add_event("node", event, node.id)
        if self.backups is not None:
            try:
                self.backups.maybe(store, steps_done)
            except Exception:  # noqa: BLE001 - a failed backup is logged, the run goes on
                log.exception("backup failed")
                store.add_event("backup", "backup failed: see engine.log")

    def final_backup(self, store: RunStore, fatal: str) -> None:
        """(db thread) The backup a clean stop leaves (none after a fatal error: the
        database may be the thing that broke, and the last good backup must survive)."""
        if self.backups is None or fatal:
            return
        try:
            self.backups.now(store)
        except Exception:  # noqa: BLE001
            log.exception("final backup failed")
