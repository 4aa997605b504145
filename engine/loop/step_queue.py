"""Which step a free worker takes next: an interrupted node first, else a new step.

The step budget is exact across stops and crashes: a step number is used once (a resumed
run fills the gaps left by nodes that were never inserted), an interrupted or lost node
runs again under its own step, and steps in flight count against the budget so that W
workers never overshoot it. A new step also waits for its turn at the step barrier
(``engine/samplers/barrier.py``), so what it sees does not depend on worker timing.

All bookkeeping lives in memory (the used steps are loaded once, never scanned per step);
the database is touched only to sample and insert the new node, in the engine's db thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from engine.samplers.barrier import StepBarrier
from engine.store.records import PENDING, Node
from engine.store.run_store import RunStore
from engine.store.writer import StoreThread


class StepQueue:
    """Hands out steps to workers within ``steps_total`` (see the module doc)."""

    def __init__(
        self,
        db: StoreThread,
        sampler: StepBarrier,
        steps_total: int,
        steps_done: Callable[[], int],
        wake: asyncio.Event,
        stopping: Callable[[], bool],
        stop: Callable[[str], None],
        elite_size: int = 0,
        paused: Callable[[], bool] = lambda: False,
    ) -> None:
        self.db = db
        self.sampler = sampler
        self.steps_total = steps_total
        self.steps_done = steps_done  # finished steps, from the engine's ledger
        self.wake = wake  # set whenever a step finishes, the run resumes or stops
        self.stopping = stopping
        self.stop = stop  # asks the engine to stop (no eligible parent left)
        self.paused = paused  # no node is inserted while the run is paused
        # Fittest nodes recorded with each new node (``metadata.elite_ids``) for a researcher
        # that models the population; fixed at sampling time, so a resume sees the same.
        self.elite_size = elite_size
        self.requeue: list[Node] = []  # interrupted or lost nodes, run again first
        self.used: set[int] = set()  # step numbers taken by a node (or reserved)
        self.claimed: set[int] = set()  # steps in flight

    def load(self, requeue: list[Node], used: set[int]) -> None:
        """What a (re)started run left: nodes to run again and the steps already used."""
        self.requeue, self.used = list(requeue), set(used)

    def again(self, node: Node) -> None:
        """Run ``node`` again under its own step (a lost evaluation)."""
        if node.step >= 1:
            self.requeue.append(node)

    def release(self, step: int) -> None:
        """The worker is done with ``step`` (finished, failed or interrupted)."""
        self.claimed.discard(step)

    async def claim(self) -> Node | None:
        """The next node to work on, or None when the budget is spent or the run stops."""
        if self.stopping():
            return None
        if self.requeue:
            node = self.requeue.pop(0)
            self.claimed.add(node.step)
            return node
        if self.steps_done() + len(self.claimed) >= self.steps_total:
            return None
        step = 1
        while step in self.used:
            step += 1
        # Reserved before the await: other workers claiming meanwhile take later steps. (A
        # cancelled claim keeps its reservation: the queued insert may still commit.)
        self.used.add(step)
        self.claimed.add(step)

        def open_steps() -> set[int]:
            return self.claimed | {n.step for n in self.requeue}

        if not await self.sampler.wait_turn(step, open_steps, self.wake, self.stopping):
            self._unreserve(step)
            return None
        # Paused while waiting for the turn: a pause is answered "no new candidates start",
        # so the node is not inserted until the run resumes (the step keeps its turn).
        while self.paused() and not self.stopping():
            self.wake.clear()
            await self.wake.wait()
        if self.stopping():
            self._unreserve(step)
            return None
        try:
            self.sampler.sampled(step)  # db calls run in order: the next step may queue now
            return await self.db.call(self._new_node, step)
        except LookupError:
            self._unreserve(step)
            self.stop("no eligible parent node left")
            return None

    def _unreserve(self, step: int) -> None:
        self.used.discard(step)
        self.claimed.discard(step)

    def _new_node(self, store: RunStore, step: int) -> Node:
        """(db thread) Sample a parent and context for ``step`` and commit the new node."""
        selection = self.sampler.sample(step=step, elite=self.elite_size)
        node = Node(
            step=step,
            parent_ids=[selection.parent_id],
            context_ids=selection.context_ids,
            island=selection.island,
            status=PENDING,
            metadata={"elite_ids": selection.elite_ids} if selection.elite_ids else {},
        )
        store.insert_node(node)
        return node
