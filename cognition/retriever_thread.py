"""The cognition retriever in its own thread, with its own event loop and SQLite connection.

Why: the retriever (``cognition/retriever.py``) interleaves SQLite reads and writes (items,
cached vectors, retrieval records, events) with awaited embedding; its database work ran on
the engine's event loop and a slow disk stalled the loop with it. Its coroutines cannot be
split into "db" and "not db" halves from outside, so the whole retriever moves: it is built
inside a dedicated thread from a store opened there (sqlite3 objects are bound to the thread
that made them) and each call runs as a coroutine on that thread's private event loop. Its
internal awaits (``asyncio.to_thread`` embedding, its novelty lock) work unchanged there.

Cancelling an awaiting round cancels the call in the retriever's loop, as before.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from engine.agents.base import Knowledge
from engine.store.records import Node
from engine.store.run_store import RunStore

log = logging.getLogger(__name__)


class RetrieverThread:
    """``factory(store)`` builds the retriever in the thread; None means "no retriever".

    Implements the engine's Retriever protocol (retrieve, propose, novelty) by running each
    call on the inner retriever in its thread.
    """

    def __init__(
        self,
        run_dir: Path,
        factory: Callable[[RunStore], Any],
        opener: Callable[[Path], RunStore] = RunStore.open,
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._serve, name="asi-evolve-cognition", daemon=True
        )
        self._thread.start()
        self._store: RunStore | None = None
        try:
            self.inner = self._sync(self._build(Path(run_dir), factory, opener))
        except BaseException:
            self.close()
            raise

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    async def _build(
        self, run_dir: Path, factory: Callable[[RunStore], Any], opener: Callable[[Path], RunStore]
    ) -> Any:
        self._store = opener(run_dir)
        return factory(self._store)

    def _sync(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def _call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        future: concurrent.futures.Future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return await asyncio.wrap_future(future)  # cancelling this cancels the inner task

    # ------------------------------------------------------------- Retriever
    async def retrieve(self, node_id: int, context: list[Node]) -> list[Knowledge]:
        return await self._call(self.inner.retrieve(node_id, context))

    async def propose(self, node_id: int, proposals: list[dict[str, str]]) -> None:
        return await self._call(self.inner.propose(node_id, proposals))

    async def novelty(self, node_id: int, motivation: str) -> str | None:
        return await self._call(self.inner.novelty(node_id, motivation))

    # --------------------------------------------------------------- closing
    async def aclose(self) -> None:
        """Close from the engine's loop without blocking it (an ``Agents`` closer)."""
        await asyncio.to_thread(self.close)

    def close(self) -> None:
        """Close the connection in its thread, stop the thread's loop, wait for it."""
        if self._loop.is_closed():
            return
        if self._store is not None:
            store, self._store = self._store, None

            async def close_store() -> None:
                store.close()

            try:
                self._sync(close_store())
            except Exception:  # noqa: BLE001 - closing must finish
                log.exception("closing the retriever's store failed")
        try:
            self._sync(self._loop.shutdown_default_executor())  # its embedding threads
        except Exception:  # noqa: BLE001
            log.exception("stopping the retriever's embedding threads failed")
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
