"""One thread owns the engine's SQLite connection; the asyncio loop awaits its results.

Why: a commit can take long (fsync on a slow disk, a reader holding the WAL). Called from the
event loop it stalls every candidate, the command poller and stop/prune handling. As aiosqlite
does, `StoreThread` opens the `RunStore` *inside* one dedicated thread (sqlite3 objects are bound
to the thread that made them, so a stray call from another thread raises instead of mixing into
a transaction) and runs every call there, in submission order. `await writer.call(fn, ...)`
returns only after `fn` ran - and so after its commit - in that thread: ordering and durability
are those of the synchronous store, only the loop no longer blocks.

Wiring (engine/loop/engine.py): the Engine opens one StoreThread per `run()`; the pipeline,
the command poller, the sampler (rebound to the thread's store, called only inside the
thread), backups and LLM-call records all go through it. Synchronous callers that must not
wait (a signal handler's stop, pause/resume, an LLM call record) use `post`: queued in order,
not awaited.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import sqlite3
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.store.run_store import RunStore, disk_full

log = logging.getLogger(__name__)


class StoreThread:
    """A RunStore used from one single worker thread.

    ``StoreThread(run_dir, opener)`` opens (and at ``close`` closes) a store of its own in the
    thread (default ``RunStore.open``; tests pass a slow subclass's ``open``).
    ``StoreThread.adopt(store)`` takes over a store the caller opened: the engine's one
    connection, used by the caller before the run and again after ``close``, by the thread
    alone in between (its connection allows that: see ``engine/store/readonly.py``). Calls
    run one at a time in submission order.
    """

    def __init__(
        self,
        run_dir: Path | None = None,
        opener: Callable[[Path], RunStore] = RunStore.open,
        store: RunStore | None = None,
    ) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="asi-evolve-db"
        )
        self._owned = store is None  # closed with the thread when it opened it
        if store is None:
            # Open in the worker thread so the connection belongs to it; errors surface here.
            store = self._pool.submit(opener, Path(str(run_dir))).result()
        self.store: RunStore = store
        self.closed = False

    @classmethod
    def adopt(cls, store: RunStore) -> StoreThread:
        """Run every call on ``store`` in a new db thread until ``close``; the store stays
        open for its owner after that."""
        return cls(store=store)

    def _run(self, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        try:
            result = fn(self.store, *args, **kwargs)
            # Generators (e.g. RunStore.nodes) must be drained here, in the connection's thread.
            if isinstance(result, types.GeneratorType):
                result = list(result)
        except (sqlite3.OperationalError, OSError) as exc:
            full = disk_full(exc, self.store.path.parent)
            if full is not None:  # the loop stops the run on it instead of failing nodes
                raise full from exc
            raise
        return result

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run `fn(store, *args, **kwargs)` in the db thread; returns once it has finished.

        A cancelled caller (stop, prune) does not cancel the call: a commit already queued
        still runs, in order, so cancellation never loses a committed-looking write.
        """
        future = self._pool.submit(self._run, fn, args, kwargs)
        try:
            return await asyncio.shield(asyncio.wrap_future(future))
        except asyncio.CancelledError:
            future.add_done_callback(functools.partial(_log_failure, getattr(fn, "__name__", fn)))
            raise

    def call_sync(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """The same from a non-async thread (blocks that thread, never the db thread's order)."""
        return self._pool.submit(self._run, fn, args, kwargs).result()

    def post(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Queue `fn(store, ...)` without waiting: for synchronous callers on the loop.

        It runs after everything queued before it and before everything queued after it; a
        failure is logged (nobody awaits it).
        """
        if self.closed:
            log.error("store write after the db thread closed, dropped: %s", fn)
            return
        future = self._pool.submit(self._run, fn, args, kwargs)
        future.add_done_callback(functools.partial(_log_failure, getattr(fn, "__name__", fn)))

    def deferred(self) -> Deferred:
        """A RunStore-like object whose method calls are `post`ed (e.g. the LLM call recorder)."""
        return Deferred(self)

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
        """Run what is queued, close the connection if the thread opened it, stop the thread."""
        if self.closed:
            return
        self.closed = True
        try:
            if self._owned:
                self._pool.submit(RunStore.close, self.store).result()
        finally:
            self._pool.shutdown(wait=True)


class Deferred:
    """`deferred.add_llm_call(...)` queues `RunStore.add_llm_call` in the db thread, unawaited."""

    def __init__(self, writer: StoreThread) -> None:
        self._writer = writer

    def __getattr__(self, name: str) -> Callable[..., None]:
        method = getattr(type(self._writer.store), name, None)
        if name.startswith("_") or not callable(method):
            raise AttributeError(name)
        return functools.partial(self._writer.post, method)


def _log_failure(what: Any, future: concurrent.futures.Future) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("store call %s failed", what, exc_info=future.exception())
