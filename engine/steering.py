"""Steering: the commands a person writes into the run database.

The TUI and ``asi-evolve`` subcommands never talk to the engine directly; they insert
rows into ``commands`` and read ``meta``. This module polls those rows. It must never
die while the engine works: a malformed row is refused with a reason and an error in
one command is logged and answered. (The heartbeat has its own thread:
``engine/heartbeat.py``; the poller only tells it that the event loop is alive.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from engine.records import DONE, FAILED, PRUNED

log = logging.getLogger(__name__)

POLL_SECONDS = 0.25


class Steerable(Protocol):
    """What the commands act on (``engine.loop.Engine``)."""

    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def request_stop(self, reason: str = "stop requested") -> None: ...
    def prune(self, node_id: int) -> None: ...
    def in_flight(self, node_id: int) -> bool: ...


class Steering:
    def __init__(self, store: Any, engine: Steerable, tick: Callable[[], None]) -> None:
        self.store = store
        self.engine = engine
        self.tick = tick  # "the event loop is alive" (engine.heartbeat.Heartbeat.tick)

    async def poll_forever(self) -> None:
        while True:
            self.tick()
            try:
                self.poll_once()
            except Exception:  # noqa: BLE001 - the poller outlives any one bad command
                log.exception("command poll failed")
            await asyncio.sleep(POLL_SECONDS)

    def poll_once(self) -> None:
        for command in self.store.new_commands():
            try:
                ok, result = self.handle(command.kind, command.arg)
            except Exception as exc:  # noqa: BLE001 - answer it, keep polling
                log.exception("command %s failed", command.id)
                ok, result = False, f"engine error: {type(exc).__name__}: {exc}"[:300]
            self.store.finish_command(command.id, result, ok)
            arg = command.arg if len(command.arg) <= 80 else command.arg[:77] + "..."
            self.store.add_event("command", f"{command.kind} {arg}: {result}".strip())

    def handle(self, kind: str, arg: str) -> tuple[bool, str]:
        if kind == "pause":
            self.engine.pause()
            return True, "paused: no new candidates start; running ones finish"
        if kind == "resume":
            self.engine.resume()
            return True, "resumed"
        if kind == "stop":
            self.engine.request_stop("stop command")
            return True, "stopping"
        if kind == "prune":
            return self.prune(arg)
        return False, f"unknown command {kind!r}"

    def prune(self, arg: str) -> tuple[bool, str]:
        try:
            node_id = int(str(arg).strip().lstrip("#"))
        except ValueError:
            return False, f"prune needs a node id, got {arg[:40]!r}"
        if not 0 < node_id < 2**63:
            return False, f"no node #{node_id}"
        node = self.store.get_node(node_id)
        if node is None:
            return False, f"no node #{node_id}"
        if node.step == 0:
            return False, "the initial program cannot be pruned"
        if node.status == PRUNED:
            return True, f"node #{node_id} was already pruned"
        self.engine.prune(node_id)
        if node.status in (DONE, FAILED) and not self.engine.in_flight(node_id):
            self.store.update_node(node_id, status=PRUNED)
        return True, f"pruned node #{node_id}"
