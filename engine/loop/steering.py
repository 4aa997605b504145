"""Steering: the commands a person writes into the run database.

The TUI and ``asi-evolve`` subcommands never talk to the engine directly; they insert
rows into ``commands`` and read ``meta``. This module polls those rows. It must never
die while the engine works: a malformed row is refused with a reason and an error in
one command is logged and answered. (The heartbeat has its own thread:
``engine/loop/heartbeat.py``; a ticker beside the poller tells it that the event loop is alive,
apart from the polls, which wait for the db thread and may be slow when the disk is.)

The store is the engine's ``engine.store.writer.StoreThread``: every read and answer is awaited in
its db thread, so a poll never blocks the loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from engine.store.records import DONE, FAILED, PRUNED
from engine.store.run_store import RunStore, StoreError

log = logging.getLogger(__name__)

POLL_SECONDS = 0.25


class Steerable(Protocol):
    """What the commands act on (``engine.loop.engine.Engine``)."""

    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def request_stop(self, reason: str = "stop requested") -> None: ...
    def prune(self, node_id: int) -> None: ...
    def in_flight(self, node_id: int) -> bool: ...


class Steering:
    def __init__(self, db: Any, engine: Steerable, tick: Callable[[], None]) -> None:
        self.db = db  # engine.store.writer.StoreThread
        self.engine = engine
        self.tick = tick  # "the event loop is alive" (engine.loop.heartbeat.Heartbeat.tick)

    async def poll_forever(self) -> None:
        ticker = asyncio.create_task(self._tick_forever())
        failing = ""  # the last poll failure logged: a failure that repeats is logged once
        try:
            while True:
                try:
                    await self.poll_once()
                    failing = ""
                except StoreError as exc:  # e.g. the disk is full: the loop stops the run
                    if str(exc) != failing:
                        log.warning("command poll failed: %s", exc)
                    failing = str(exc)
                except Exception:  # noqa: BLE001 - the poller outlives any one bad command
                    log.exception("command poll failed")
                await asyncio.sleep(POLL_SECONDS)
        finally:
            ticker.cancel()

    async def _tick_forever(self) -> None:
        while True:
            self.tick()
            await asyncio.sleep(POLL_SECONDS)

    async def poll_once(self) -> None:
        for command in await self.db.new_commands():
            try:
                ok, result = await self.handle(command.kind, command.arg)
            except Exception as exc:  # noqa: BLE001 - answer it, keep polling
                log.exception("command %s failed", command.id)
                ok, result = False, f"engine error: {type(exc).__name__}: {exc}"[:300]
            arg = command.arg if len(command.arg) <= 80 else command.arg[:77] + "..."
            event = f"{command.kind} {arg}: {result}".strip()
            await self.db.call(_answer, command.id, result, ok, event)

    async def handle(self, kind: str, arg: str) -> tuple[bool, str]:
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
            return await self.prune(arg)
        return False, f"unknown command {kind!r}"

    async def prune(self, arg: str) -> tuple[bool, str]:
        try:
            node_id = int(str(arg).strip().lstrip("#"))
        except ValueError:
            return False, f"prune needs a node id, got {arg[:40]!r}"
        if not 0 < node_id < 2**63:
            return False, f"no node #{node_id}"
        node = await self.db.get_node(node_id)
        if node is None:
            return False, f"no node #{node_id}"
        if node.step == 0:
            return False, "the initial program cannot be pruned"
        if node.status == PRUNED:
            return True, f"node #{node_id} was already pruned"
        self.engine.prune(node_id)
        # Committed before it is answered, so that a kill -9 right after cannot run it again
        # (re-read in the db thread: the node may have finished since it was read above).
        await self.db.call(_mark_pruned, node_id, self.engine.in_flight(node_id))
        return True, f"pruned node #{node_id}"


def _answer(store: RunStore, command_id: int, result: str, ok: bool, event: str) -> None:
    """(db thread) Mark the command handled and log it, one after the other."""
    store.finish_command(command_id, result, ok)
    store.add_event("command", event)


def _mark_pruned(store: RunStore, node_id: int, in_flight: bool) -> None:
    """(db thread) The node becomes pruned: a finished one at once; one in flight too (its
    task, cancelled, books it when it unwinds), so that a resume never runs it again."""
    node = store.get_node(node_id)
    if node is not None and (node.status in (DONE, FAILED) or in_flight):
        store.update_node(node_id, status=PRUNED)
