"""The engine's heartbeat, written from its own thread with its own connection.

Watchers (the TUI, ``asi-evolve status``) decide "is the engine alive?" from the age of
the heartbeat. Written from the event loop, it would stop whenever the loop is blocked
(a slow disk under a commit, a model load, a long synchronous call) and a busy engine
would look dead. Here a daemon thread beats every second whatever the loop does, and
says separately when the loop last ticked (``loop_seen``), so a stalled loop is visible
as what it is instead of as a dead engine.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

BEAT_SECONDS = 1.0


class Heartbeat:
    def __init__(self, run_dir: Path, status: Callable[[], dict[str, Any]]) -> None:
        self.run_dir = run_dir
        self.status = status  # called from the thread: must only read plain attributes
        self.loop_seen = time.time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

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
        from engine.store.run_store import RunStore

        store = None
        missed = 0  # beats in a row that could not be written
        try:
            while not self._stop.is_set():
                try:
                    if store is None:
                        store = RunStore.open(self.run_dir)
                    store.set_meta("engine", self.content())
                    if missed:
                        log.warning("heartbeat written again after %d missed beat(s)", missed)
                    missed = 0
                except Exception as exc:  # noqa: BLE001 - a missed beat is retried next second
                    # One line when beats start failing (e.g. a reader holds a long
                    # transaction, the disk is full) and one when they recover: a log line
                    # every second would bury what matters in engine.log.
                    if not missed:
                        log.warning(
                            "heartbeat not written: %s (retrying every %.0fs)",
                            " ".join(str(exc).split())[:200],
                            BEAT_SECONDS,
                        )
                    missed += 1
                    if store is not None and not isinstance(exc, sqlite3.OperationalError):
                        store.close()
                        store = None
                self._stop.wait(BEAT_SECONDS)
        finally:
            if store is not None:
                store.close()
