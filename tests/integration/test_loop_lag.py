"""A slow disk must not stall the event loop: the real Engine under slow store writes.

Every write of the engine's store sleeps ``SLOW`` seconds (a commit on a slow or busy disk).
A probe coroutine sleeps 10 ms at a time beside the engine and records how late it wakes
(the event-loop lag); an outside thread with its own connection reads the heartbeat. With
the engine's SQLite work in its db thread (``engine/store/writer.py``) the loop stays responsive.

Measured on the 2-core dev box (circle packing, offline agents, 2 workers, 2 steps, SLOW =
0.3 s, ~8.5 s per run): before the wiring (synchronous ``store.*`` calls on the loop, commit
8081fd0) the probe woke only 54 times, the maximum lag was 1.81 s and ``loop_seen`` was 2.5 s
old; wired, the probe wakes ~830 times, the maximum lag is 0.005-0.012 s, and the heartbeat
says the loop ticked at most 0.30 s before it (the heartbeat itself at most ~1.2 s old).
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from engine.agents.setup import build_offline_agents
from engine.execution.engineer import Engineer, Limits
from engine.loop.engine import Engine
from engine.samplers import make_sampler
from engine.samplers.settings import SamplerSettings
from engine.store.records import DONE
from engine.store.run_store import RunStore
from engine.task import load_task, resolve_task

SLOW = 0.3  # seconds per store write
MAX_LAG = 0.25  # < SLOW: the loop may be late by scheduling noise on a shared CPU, never by a write


class SlowStore(RunStore):
    """Every write takes SLOW seconds longer, as on a disk that is slow to fsync."""

    def _slow(self) -> None:
        time.sleep(SLOW)

    def add_event(self, *args: Any, **kwargs: Any) -> None:
        self._slow()
        super().add_event(*args, **kwargs)

    def set_meta(self, key: str, value: Any) -> None:
        self._slow()
        super().set_meta(key, value)

    def insert_node(self, node: Any) -> int:
        self._slow()
        return super().insert_node(node)

    def update_node(self, node_id: int, **fields: Any) -> None:
        self._slow()
        super().update_node(node_id, **fields)

    def save_node(self, node: Any) -> None:
        self._slow()
        super().save_node(node)


class HeartbeatWatch(threading.Thread):
    """Reads meta 'engine' from its own connection: the largest heartbeat and loop_seen age."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(daemon=True)
        self.run_dir = run_dir
        self.stop = threading.Event()
        self.beat_age = 0.0  # now - last heartbeat
        self.loop_behind = 0.0  # heartbeat - loop_seen: how long the loop had not ticked
        self.reads = 0

    def run(self) -> None:
        store = RunStore.open(self.run_dir, readonly=True)
        try:
            while not self.stop.wait(0.1):
                engine = store.get_meta("engine")
                if not isinstance(engine, dict) or engine.get("state") != "running":
                    continue
                now = time.time()
                self.beat_age = max(self.beat_age, now - engine["heartbeat"])
                behind = engine["heartbeat"] - engine["loop_seen"]
                self.loop_behind = max(self.loop_behind, behind)
                self.reads += 1
        finally:
            store.close()


def _engine(run_dir: Path, steps: int) -> Engine:
    task = resolve_task("circle_packing")
    store = SlowStore.create(run_dir)
    RunStore.set_meta(store, "task", task.name)  # setup, not timed: the plain write
    return Engine(
        store=store,
        task=task,
        run_dir=run_dir,
        agents=build_offline_agents(0),
        sampler=make_sampler(SamplerSettings(), store, True, 0),
        engineer=Engineer(task, Limits()),
        steps_total=steps,
        workers=2,
    )


async def _run_with_probe(engine: Engine) -> tuple[Any, float, int]:
    done = asyncio.Event()
    lags: list[float] = []

    async def probe() -> None:
        while not done.is_set():
            start = time.monotonic()
            await asyncio.sleep(0.01)
            lags.append(time.monotonic() - start - 0.01)

    task = asyncio.create_task(probe())
    try:
        summary = await engine.run()
    finally:
        done.set()
        await task
    return summary, max(lags), len(lags)


@pytest.mark.slow
def test_slow_commits_stall_neither_the_loop_nor_the_heartbeat(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    engine = _engine(run_dir, steps=2)
    watch = HeartbeatWatch(run_dir)
    watch.start()
    started = time.monotonic()
    try:
        summary, max_lag, ticks = asyncio.run(_run_with_probe(engine))
    finally:
        watch.stop.set()
        watch.join()
    elapsed = time.monotonic() - started
    print(
        f"max loop lag {max_lag:.3f}s over {ticks} ticks, run {elapsed:.1f}s; "
        f"heartbeat age <= {watch.beat_age:.2f}s, loop_seen behind <= {watch.loop_behind:.2f}s "
        f"({watch.reads} reads)"
    )
    assert summary.steps_done == 2
    nodes = list(RunStore.open(run_dir, readonly=True).nodes())
    assert len(nodes) == 3 and nodes[0].status == DONE
    # The slow writes really happened (and took their time) ...
    assert elapsed > 10 * SLOW
    # ... but never on the loop's thread.
    assert max_lag < MAX_LAG, max_lag
    assert watch.reads >= 5
    assert watch.beat_age < 2.5, watch.beat_age  # the heartbeat thread beats every second
    assert watch.loop_behind < 0.8, watch.loop_behind  # the loop ticks 4x a second


def test_the_loop_thread_runs_no_sql_during_a_run(toy_task: Path, tmp_path: Path) -> None:
    """Every statement of a run goes through the db thread's connection, none through the
    caller's (used on the loop's thread before the wiring)."""
    task = load_task(toy_task)
    store = RunStore.create(tmp_path / "run")
    store.set_meta("task", task.name)
    engine = Engine(
        store=store,
        task=task,
        run_dir=tmp_path / "run",
        agents=build_offline_agents(0),
        sampler=make_sampler(SamplerSettings(name="island"), store, True, 0),  # it writes
        engineer=Engineer(task, Limits()),
        steps_total=4,
        workers=2,
    )
    on_callers: list[str] = []
    db_threads: set[int] = set()
    store.db.conn.set_trace_callback(on_callers.append)
    engine.db.call_sync(
        lambda own: own.db.conn.set_trace_callback(
            lambda sql: db_threads.add(threading.get_ident())
        )
    )
    summary = asyncio.run(engine.run())
    store.db.conn.set_trace_callback(None)
    assert summary.steps_done == 4
    assert on_callers == []
    assert len(db_threads) == 1 and threading.get_ident() not in db_threads
    assert engine.sampler.store is store  # handed back after the run
    assert store.steps_done() == 4
