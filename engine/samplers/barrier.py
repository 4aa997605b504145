"""The step barrier: what step s may see is fixed by s, not by which evaluations ended first.

With W workers, candidates finish in whatever order their evaluations take, so a sampler that
sees every finished node would hand step s a different population from run to run, and a run
could not be reproduced for a seed. ``StepBarrier`` wraps a sampler so that

* step s is sampled only when every step <= s - lag has finished (``wait_turn``; lag = W
  by default, the window a W-worker engine keeps in flight anyway) and after every lower step
  was sampled (so visit counts, the islands' cursor and the draws happen in step order);
* the wrapped sampler is shown finished nodes (``observe``) only when a step that may see
  them is sampled, in step order, so its whole state - fitness ranking, visits, island cells
  and migrations - is a function of the nodes of steps <= s - lag.

Together with draws seeded by (seed, step) in the sampler and the Researcher, a step's parent,
context and proposal then depend on the seed and the step only. The cost is idle workers when
the oldest step in flight is slow: ``benchmarks/slot_utilisation.py --jitter`` measures it.
``lag=None`` turns the barrier off (nodes visible as soon as they finish, no waiting).

Threads: ``observe``, ``sample`` and ``prune`` run in the engine's db thread (like the sampler
they wrap); ``wait_turn`` and ``sampled`` run on the event loop. Finished steps cross over as
single set insertions and membership tests (atomic under the GIL) plus a thread-safe wake-up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

from engine.samplers.base import Sampler
from engine.samplers.islands import IslandSampler
from engine.store.records import FINISHED, PENDING, Node, Selection

log = logging.getLogger(__name__)


class StepBarrier:
    """A sampler wrapper that makes step s see exactly the nodes of steps <= s - lag."""

    def __init__(self, sampler: Sampler, lag: int | None) -> None:
        if lag is not None and lag < 1:
            raise ValueError("the barrier lag must be at least 1 (or None: no barrier)")
        self.inner = sampler
        self.lag = lag
        self._held: dict[int, Node] = {}  # finished, not yet shown to the sampler (db thread)
        self._pruned: set[int] = set()
        self._done: set[int] = set()  # steps finished in this process (written in db thread)
        self._waiting: set[int] = set()  # steps reserved and not yet sampled (event loop)
        self._changed = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------- sampler interface
    @property
    def store(self) -> Any:
        return self.inner.store

    @store.setter
    def store(self, store: Any) -> None:
        self.inner.store = store

    def __getattr__(self, name: str) -> Any:  # settings, pop, rng, ...: the wrapped sampler's
        if name == "inner":  # not set yet (copy, unpickling): no endless recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    def observe(self, node: Node) -> None:
        """A node finished: held until a step that may see it is sampled."""
        if self.lag is None:
            self.inner.observe(node)
            return
        assert node.id is not None, "observe() needs a stored node"
        self._held[node.id] = node
        self._done.add(node.step)
        if self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self._changed.set)
            except RuntimeError:  # the run's loop is closed: nobody waits any more
                log.debug("step %s finished after the event loop closed", node.step)

    def prune(self, node_id: int) -> None:
        self._pruned.add(node_id)
        self.inner.prune(node_id)

    def sample(self, step: int | None = None, elite: int = 0) -> Selection:
        """Show the wrapped sampler the nodes ``step`` may see, in step order, then sample."""
        if self.lag is not None:
            limit = max(0, step - self.lag) if step is not None else None
            self.release(limit)
        return self.inner.sample(step=step, elite=elite)

    def release(self, limit: int | None) -> None:
        """Observe the held nodes of steps <= ``limit`` (all when None), ordered by (step, id)."""
        ready = [n for n in self._held.values() if limit is None or n.step <= limit]
        for node in sorted(ready, key=lambda n: (n.step, n.id)):
            del self._held[node.id]
            self.inner.observe(node)
            if node.id in self._pruned:  # a prune that came while the node was held
                self.inner.prune(node.id)

    def hold_back(self, nodes: Iterable[Node], next_step: int) -> int:
        """After a restart: hide the finished nodes an uninterrupted run would not show yet.

        The wrapped sampler loaded every node of the run; a step ``s >= next_step`` may only
        see steps <= s - lag, so nodes of later steps go back to being held (made ineligible
        in the population until released). Returns how many were held. The island sampler
        keeps migration state derived from all loaded nodes, so it is left as loaded (a
        resumed island run is not step-exact; the README says so).
        """
        if self.lag is None or isinstance(self.inner, IslandSampler):
            return 0
        limit = next_step - self.lag
        held = 0
        for node in nodes:
            if node.id is None or node.step < 1 or node.step <= limit:
                continue
            if node.status not in FINISHED:
                continue
            self.inner.pop.upsert(
                node.id,
                step=node.step,
                status=PENDING,
                fitness=None,
                island=node.island,
                code_len=len(node.code),
            )
            self._held[node.id] = node
            held += 1
        return held

    # ------------------------------------------------------------- engine scheduling
    async def wait_turn(
        self,
        step: int,
        open_steps: Callable[[], Iterable[int]],
        wake: asyncio.Event,
        stopped: Callable[[], bool],
    ) -> bool:
        """Wait until ``step`` may be sampled; False when ``stopped()`` became true first.

        ``open_steps()`` are the steps claimed or queued and not known to be finished (the
        engine's bookkeeping); ``wake`` is an event the engine sets on stop and resume.
        """
        if self.lag is None:
            return not stopped()
        self._loop = asyncio.get_running_loop()
        self._waiting.add(step)
        try:
            while not stopped():
                self._changed.clear()
                if self._ready(step, open_steps()):
                    return True
                changed = asyncio.ensure_future(self._changed.wait())
                woken = asyncio.ensure_future(wake.wait())
                try:
                    await asyncio.wait({changed, woken}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    changed.cancel()
                    woken.cancel()
            return False
        except BaseException:
            self._waiting.discard(step)
            raise

    def sampled(self, step: int) -> None:
        """``step`` has been handed to the db thread for sampling: the next step's turn."""
        self._waiting.discard(step)
        self._changed.set()

    def _ready(self, step: int, open_steps: Iterable[int]) -> bool:
        assert self.lag is not None
        if any(k < step for k in self._waiting):
            return False
        horizon = step - self.lag
        return not any(1 <= k <= horizon and k not in self._done for k in open_steps)
