"""The TUI stays fluid at 100,000 nodes: refreshes read only what changed."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest
from tui_support import NOW, T0

from engine.store.reader import RunReader
from engine.store.run_store import RunStore
from tui.app import EvolveApp
from tui.poller import WINDOW, Poller
from tui.widgets.population import PopulationTable

N = 100_000
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def big_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("big") / "run"
    store = RunStore.create(run_dir)
    store.set_meta("task", "toy")
    store.set_meta("direction", "maximize")
    store.set_meta("steps_total", N)
    store.close()
    code = "X = 1.0\n" * 64
    rows = (
        (
            i,
            i - 1,
            f"node-{i}",
            i - 1 if i > 1 else None,
            code,
            (i % 997) / 997.0 if i % 13 else None,
            "done" if i % 13 else "failed",
            1.0,
            i % 5,
            T0 + i * 0.001,
            T0 + i * 0.001,
        )
        for i in range(1, N + 1)
    )
    with closing(sqlite3.connect(run_dir / "evolve.db")) as conn, conn:
        conn.executemany(
            "INSERT INTO nodes(id, step, name, parent_id, code, score, status, runtime, island,"
            " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    return run_dir


@pytest.mark.slow
def test_incremental_refresh_at_100k_nodes(big_run: Path) -> None:
    poller = Poller(RunReader(big_run), clock=lambda: NOW)
    t = time.perf_counter()
    first = poller.tick()
    full = time.perf_counter() - t
    assert len(first.order) == WINDOW and first.summary.nodes == N
    progress = first.summary.progress  # measured over all nodes, as `status` does
    assert progress is not None and progress.best_step is not None
    t = time.perf_counter()
    idle = poller.tick()
    quiet = time.perf_counter() - t
    assert idle.cells == {}  # nothing changed: nothing to redraw
    with closing(sqlite3.connect(big_run / "evolve.db")) as conn, conn:
        conn.execute(
            "UPDATE nodes SET status = 'running', score = NULL, updated_at = ? WHERE id = ?",
            (T0 + N, N),
        )
    t = time.perf_counter()
    busy = poller.tick()
    changed = time.perf_counter() - t
    assert N in busy.cells and len(busy.cells) == 1
    print(f"\nfirst load {full:.3f}s, idle tick {quiet * 1000:.1f}ms, one change {changed:.3f}s")
    assert full < 5.0
    assert quiet < 0.1
    assert changed < 0.5


@pytest.mark.slow
async def test_app_at_100k_nodes(big_run: Path) -> None:
    app = EvolveApp(big_run, clock=lambda: NOW, poll_seconds=60)
    async with app.run_test(size=(100, 30)) as pilot:
        t = time.perf_counter()
        await app.synced(timeout=30)
        first = time.perf_counter() - t
        table = app.query_one(PopulationTable)
        assert table.row_count == WINDOW
        assert "first 1000 shown" in str(table.border_title)
        assert table.selected_id == N and table.cursor_row == 0  # the newest, followed
        await pilot.press("down")  # not following: a sort change must still show the top
        t = time.perf_counter()
        await pilot.press("s")  # re-sort the whole population by score
        await app.synced(timeout=30)
        resort = time.perf_counter() - t
        best = app.poller.pop.best
        assert best is not None and table.order[0] == best.id
        assert table.selected_id == best.id and table.cursor_row == 0 and table.scroll_y == 0
        await pilot.press("s", "s", "f")  # back to newest first, following
        await app.synced(timeout=30)
        with closing(sqlite3.connect(big_run / "evolve.db")) as conn, conn:
            conn.execute(
                "INSERT INTO nodes(id, step, name, parent_id, code, status, created_at,"
                " updated_at) VALUES (?, ?, 'fresh', 1, '', 'running', ?, ?)",
                (N + 1, N, T0 + N + 1, T0 + N + 1),
            )
        t = time.perf_counter()
        await app.synced(timeout=30)
        follow = time.perf_counter() - t
        assert table.selected_id == N + 1 and table.cursor_row == 0
        print(f"\napp first screen {first:.2f}s, re-sort {resort:.2f}s, follow {follow:.2f}s")
        assert first < 10 and resort < 5 and follow < 2
