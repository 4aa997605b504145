"""Cache fills that may wait: done beside the loop, never on a candidate's critical path.

A candidate's motivation is embedded once it is accepted so that ``asi-evolve report``
(read-only: it cannot store what it embeds) finds the vector instead of re-embedding every
design on every call. With the novelty check off nothing in the round needs that vector,
yet awaiting it cost 10-12 ms of MiniLM per candidate, on the critical path of every
round (``benchmarks/loop_overhead.py`` with distinct motivations). ``Later`` takes such
fills and runs them in batches: when ``batch`` items are pending or ``wait`` seconds after
the first, whichever comes first. MiniLM embeds a text in 14 ms alone and 10.5 ms in a
batch of 16 (this machine), and a batch of fills is one database call. A fill that fails
is only a cache miss; the engine flushes what is pending before it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)


class Later:
    """Runs ``fill(items)`` for what ``add`` collected, one batch at a time, in the loop."""

    def __init__(
        self,
        fill: Callable[[dict[Any, Any]], Awaitable[Any]],
        batch: int = 16,
        wait: float = 30.0,
    ) -> None:
        self._fill = fill
        self.batch = batch
        self.wait = wait
        self._pending: dict[Any, Any] = {}
        self._full = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def add(self, items: dict[Any, Any]) -> None:
        self._pending.update(items)
        if len(self._pending) >= self.batch:
            self._full.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        while self._pending:
            if len(self._pending) < self.batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self.wait)
            self._full.clear()
            batch, self._pending = self._pending, {}
            try:
                await self._fill(batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a cache: a miss costs time, not data
                log.debug("deferred cache fill of %d item(s) failed: %s", len(batch), exc)

    async def flush(self) -> None:
        """Fill what is pending now and wait for it (the engine calls this before it stops)."""
        while self._task is not None and not self._task.done():
            self._full.set()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._task)
