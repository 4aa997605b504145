"""One thread owns the engine's SQLite connection; the asyncio loop awaits its results.

Why: a commit can take long (fsync on a slow disk, a reader holding the WAL). Called from the
event loop it stalls every candidate, the command poller and stop/prune handling. As aiosqlite
does, `StoreThread` opens the `RunStore` *inside* one dedicated thread (sqlite3 objects are bound
to the thread that made them) and runs every call there, in submission order. `await
writer.call(fn, ...)` returns only after `fn` ran - and so after its commit - in that thread:
ordering and durability are those of the synchronous store, only the loop no longer blocks.

Status: this module and tests/test_writer.py are the building block only. The engine
(engine/loop.py, pipeline.py, steering.py, samplers, cognition retriever) still calls the
synchronous RunStore on the loop thread; the wiring is described in the report to the lead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.store import RunStore

log = logging.getLogger(__name__)


class StoreThread:
    """A RunStore living in its own single worker thread.

    `opener(run_dir)` builds the store inside the thread (default `RunStore.open`); tests pass a
    slow subclass's `open`. Calls run one at a time in submission order.
    """

    def __init__(
        self, run_dir: Path, opener: Callable[[Path], RunStore] = RunStore.open
    ) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="asi-evolve-db"
        )
        # Open in the worker thread so the connection belongs to it; errors surface here.
        self.store: RunStore = self._pool.submit(opener, Path(run_dir)).result()

    def _run(self, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        result = fn(self.store, *args, **kwargs)
        # Generators (e.g. RunStore.nodes) must be drained here, in the connection's thread.
        if isinstance(result, types.GeneratorType):
            result = list(result)
        return result

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run `fn(store, *args, **kwargs)` in the db thread; returns once it has finished."""
        future = self._pool.submit(self._run, fn, args, kwargs)
        return await asyncio.wrap_future(future)

    def call_sync(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """The same from a non-async thread (blocks that thread, never the db thread's order)."""
        return self._pool.submit(self._run, fn, args, kwargs).result()

    def __getattr__(self, name: str) -> Callable[..., Any]:
        """`await writer.add_event(...)` awaits `RunStore.add_event` run in the db thread."""
        if name.startswith("_") or "store" not in self.__dict__:
            raise AttributeError(name)
        # The store's own class, so a subclass's overrides (e.g. a slow test store) apply.
        method = getattr(type(self.__dict__["store"]), name, None)
        if not callable(method):
            raise AttributeError(name)

        @functools.wraps(method)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            return await self.call(method, *args, **kwargs)

        return wrapper

    def close(self) -> None:
        """Close the connection in its own thread, then stop the thread."""
        try:
            self._pool.submit(RunStore.close, self.store).result()
        finally:
            self._pool.shutdown(wait=True)
