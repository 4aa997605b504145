"""The engine's heartbeat: a timer thread whose beats are written by the engine's db thread.

Watchers (the TUI, ``asi-evolve status``) decide "is the engine alive?" from the age of
the heartbeat. Written from the event loop, it would stop whenever the loop is blocked
(a model load, a long synchronous call) and a busy engine would look dead. Here a daemon
thread ticks every second whatever the loop does and hands the beat to the db thread, the
one owner of the engine's connection, so the heartbeat needs no connection of its own. It
says separately when the loop last ticked (``loop_seen``), so a stalled loop is visible as
what it is instead of as a dead engine. A beat is not queued while the previous one still
waits for the db thread (a slow disk): beats never pile up behind a stalled commit.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from engine.store.run_store import RunStore

log = logging.getLogger(__name__)

BEAT_SECONDS = 1.0


class Heartbeat:
    """``post(fn)`` queues ``fn(store)`` in the db thread (``StoreThread.post``);
    ``status()`` is called from the timer thread and must only read plain attributes."""

    def __init__(
        self, post: Callable[[Callable[[RunStore], Any]], None], status: Callable[[], dict]
    ) -> None:
        self.post = post
        self.status = status
        self.loop_seen = time.time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._queued = threading.Event()  # a beat waits for the db thread
        self._missed = 0  # beats in a row that could not be written

    def tick(self) -> None:
        """Called by the event loop whenever it runs (the command poller does, 4x a second)."""
        self.loop_seen = time.time()

    def start(self) -> None:
        self.tick()  # called from the loop: it is alive now, whatever startup cost
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def content(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "heartbeat": time.time(),
            "loop_seen": self.loop_seen,
            **self.status(),
        }

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._queued.is_set():
                self._queued.set()
                self.post(self._beat)
            self._stop.wait(BEAT_SECONDS)

    def _beat(self, store: RunStore) -> None:
        """(db thread) Write one beat, taken now, not when it was queued."""
        try:
            store.set_meta("engine", self.content())
            if self._missed:
                log.warning("heartbeat written again after %d missed beat(s)", self._missed)
            self._missed = 0
        except Exception as exc:  # noqa: BLE001 - a missed beat is retried next second
            # One line when beats start failing (e.g. the disk is full) and one when they
            # recover: a line every second would bury what matters in engine.log.
            if not self._missed:
                message = " ".join(str(exc).split())[:200]
                log.warning("heartbeat not written: %s (retrying every %.0fs)", message, 1.0)
            self._missed += 1
        finally:
            self._queued.clear()
