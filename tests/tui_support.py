"""Run databases for the TUI tests, built with the engine's own store, with fixed timestamps.

Everything the screen shows (event times, elapsed, running clocks) derives from ``T0`` and
the app's injected clock, so SVG snapshots are byte-for-byte stable.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from contextlib import closing
from pathlib import Path

from engine.store.records import Node
from engine.store.run_store import RunStore
from engine.store.schema import COGNITION_TABLES, create_tables
from tui.app import EvolveApp

T0 = 1_750_000_000.0
NOW = T0 + 600.0  # the tests' clock

CODE = "import math\n\nX = {x}\nY = 0.5\n\ndef f(v):\n    return math.sqrt(v) * {x}\n"


def _node(step: int, parent: int | None, score: float | None, status: str, **kw) -> Node:
    x = 1.0 + step * 0.25
    return Node(
        step=step,
        name=kw.pop("name", f"mutate-x-{step}" if step else "initial"),
        code=kw.pop("code", CODE.format(x=x)),
        parent_ids=[parent] if parent else [],
        motivation=kw.pop("motivation", f"Move X from {x - 0.25:.2f} to {x:.2f}."),
        analysis=kw.pop(
            "analysis",
            f"## Outcome\nScore **{score}** against the parent.\n\n- X moved up\n- keep going"
            if status == "done"
            else "",
        ),
        score=score,
        status=status,
        runtime=kw.pop("runtime", 1.5 + step if status in ("done", "failed") else None),
        island=kw.pop("island", step % 2 if step else 0),
        results={"metrics": {"x": x, "eval_time": 0.25}} if status == "done" else {},
        **kw,
    )


def build_run(run_dir: Path, *, cognition: bool = True, engine_state: str = "running") -> Path:
    """A run of 9 nodes in every status, events, LLM calls and (optionally) cognition."""
    store = RunStore.create(run_dir)
    for key, value in {
        "task": "toy",
        "task_dir": "/tasks/toy",
        "direction": "maximize",
        "steps_total": 40,
        "llm_mode": "offline",
        "state": engine_state,
        "config": {"sampler": {"name": "ucb1"}},
        "engine": {
            "pid": 1,
            "heartbeat": NOW - 1,
            "state": engine_state,
            "busy": 1,
            "workers": 2,
            "started": T0,
            "slots": {"gpus": {"total": 0, "busy": 0}, "cpus": {"total": 4, "busy": 1}},
        },
    }.items():
        store.set_meta(key, value)
    plan = [
        (0, None, 0.5, "done", {}),
        (1, 1, 0.75, "done", {}),
        (2, 2, 0.9, "done", {}),
        (3, 2, None, "failed", {"error": "evaluator exited with status 1: ValueError"}),
        (4, 3, 0.85, "done", {}),
        (5, 3, 0.97, "done", {"analysis": ""}),  # a finished node without analysis
        (6, 5, 0.6, "pruned", {}),
        (7, 6, None, "running", {"started_at": NOW - 42}),
        (8, 6, None, "pending", {"name": "", "code": "", "motivation": ""}),
    ]
    for step, parent, score, status, extra in plan:
        store.insert_node(_node(step, parent, score, status, created_at=T0 + step, **extra))
    store.add_event("run", "new run of toy (40 steps)")
    store.add_event("engine", "engine started (pid 1)")
    for step, _, score, status, _ in plan[1:7]:
        outcome = f"score {score}" if status == "done" else f"{status.upper()}: reason"
        store.add_event("node", f"step {step} #{step + 1} {outcome}", step + 1)
    store.add_event("command", "pause : paused: no new candidates start")
    store.add_llm_call(
        role="researcher",
        model="m",
        prompt_tokens=1200,
        completion_tokens=300,
        cost_usd=0.0125,
        ok=1,
    )
    store.close()
    with closing(sqlite3.connect(run_dir / "evolve.db")) as conn, conn:
        conn.execute("UPDATE nodes SET updated_at = ? + id", (T0,))
        conn.execute(  # one candidate finished every 30 s: 2 per minute
            "UPDATE nodes SET finished_at = ? + 30 * id"
            " WHERE status IN ('done', 'failed', 'pruned')",
            (T0,),
        )
        conn.execute("UPDATE events SET ts = ? + id * 7", (T0,))
        if cognition:
            add_cognition(conn)
    return run_dir


def add_cognition(conn: sqlite3.Connection) -> None:
    create_tables(conn, COGNITION_TABLES)
    items = [
        (1, "Hexagonal packings are dense", "active", "seed", None),
        (2, "Perturb one literal at a time", "active", "seed", None),
        (3, "Large X steps overshoot the peak", "pending", "analyzer", 6),
        (4, "Y barely matters near the optimum", "pending", "analyzer", 5),
    ]
    for item_id, title, status, origin, node in items:
        conn.execute(
            "INSERT INTO cognition_items(id, title, content, tags, source, status, origin, "
            "node_id, created_at, updated_at) VALUES (?, ?, ?, '[]', '', ?, ?, ?, ?, ?)",
            (item_id, title, f"{title}.", status, origin, node, T0, T0),
        )
    for node_id, item_id, score in [(6, 1, 0.81), (6, 2, 0.42), (5, 2, 0.55)]:
        conn.execute(
            "INSERT INTO retrievals(node_id, item_id, score, query_node_id, ts) "
            "VALUES (?, ?, ?, ?, ?)",
            (node_id, item_id, score, node_id - 1, T0),
        )


def item_status(run_dir: Path, item_id: int) -> str:
    with closing(sqlite3.connect(run_dir / "evolve.db")) as conn:
        return conn.execute(
            "SELECT status FROM cognition_items WHERE id = ?", (item_id,)
        ).fetchone()[0]


def commands(run_dir: Path) -> list[tuple[str, str, str]]:
    with closing(sqlite3.connect(run_dir / "evolve.db")) as conn:
        return conn.execute("SELECT kind, arg, status FROM commands ORDER BY id").fetchall()


def make_app(run_dir: Path, clock=lambda: NOW) -> tuple[EvolveApp, list[str]]:  # noqa: ANN001
    """The app with a fixed clock, and a list collecting every notification it shows."""
    app = EvolveApp(run_dir, clock=clock, poll_seconds=0.2)
    notes: list[str] = []
    original = app.notify

    def notify(message: str, **kwargs) -> None:  # noqa: ANN003
        notes.append(message)
        original(message, **kwargs)

    app.notify = notify  # type: ignore[method-assign]
    return app, notes


async def wait_for(predicate, timeout: float = 10.0) -> None:  # noqa: ANN001
    """Until ``predicate()`` holds (a pilot's app catching up with the database)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)
