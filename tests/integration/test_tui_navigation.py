"""Pilot tests: the table follows the action, keys to move, the filter, lineage, the footer."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from textual.widgets import Static
from tui_support import build_run, commands, make_app

from engine.store.lock import RunLock
from engine.store.reader import RunReader
from engine.store.records import Node
from engine.store.run_store import RunStore
from tui.app import EvolveApp
from tui.lineage import read_lineage
from tui.screens.lineage import LineageScreen
from tui.widgets.population import PopulationTable

SIZE = (100, 30)
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def add_node(run_dir: Path, step: int, parent: int) -> int:
    store = RunStore.open(run_dir)
    node_id = store.insert_node(Node(step=step, name=f"new-{step}", parent_ids=[parent]))
    store.close()
    return node_id


def footer_keys(app: EvolveApp) -> dict[str, str]:
    """The app's active bindings as the footer shows them: key -> action."""
    return {key: b.binding.action for key, b in app.active_bindings.items() if b.enabled}


async def test_starts_on_the_newest_and_follows_it_until_the_user_moves(tmp_path: Path) -> None:
    run_dir = build_run(tmp_path / "run")
    app, notes = make_app(run_dir)
    async with app.run_test(size=SIZE) as pilot:
        await app.synced()
        table = app.query_one(PopulationTable)
        assert table.selected_id == 9 and table.cursor_row == 0  # the newest node
        assert "following" in str(table.border_title)
        newest = add_node(run_dir, 9, 6)
        await app.synced()
        assert table.selected_id == newest and table.cursor_row == 0
        assert app.poller.selected == newest  # the side pane shows it too
        await pilot.press("down")  # studying a row: following stops
        assert not table.follow and "following" not in str(table.border_title)
        studied = table.selected_id
        add_node(run_dir, 10, 6)
        await app.synced()
        assert table.selected_id == studied and table.cursor_row == 2
        await pilot.press("f")
        assert table.follow and table.cursor_row == 0
        assert notes[-1].startswith("Following the newest node")
        await app.synced()
        assert table.selected_id == table.order[0] and "following" in str(table.border_title)


@pytest.mark.slow
async def test_a_sort_change_shows_the_top(tmp_path: Path) -> None:
    app, _ = make_app(build_run(tmp_path / "run"))
    async with app.run_test(size=SIZE) as pilot:
        await app.synced()
        table = app.query_one(PopulationTable)
        await pilot.press("down", "down", "down", "down")  # node #5, not following
        assert table.selected_id == 5 and not table.follow
        await pilot.press("s")
        await app.synced()
        assert table.order[0] == 6 and table.selected_id == 6 and table.cursor_row == 0
        assert table.scroll_y == 0
        await pilot.press("down", "s")  # status: the running node on top, selected
        await app.synced()
        assert table.selected_id == 8 and table.cursor_row == 0


@pytest.mark.slow
async def test_first_and_last_row_keys(tmp_path: Path) -> None:
    app, _ = make_app(build_run(tmp_path / "run"))
    async with app.run_test(size=SIZE) as pilot:
        await app.synced()
        table = app.query_one(PopulationTable)
        for last, first in (("G", "g"), ("end", "home")):
            await pilot.press(last)
            assert table.selected_id == 1 and table.cursor_row == 8  # the initial program
            await pilot.press(first)
            assert table.selected_id == 9 and table.cursor_row == 0
        assert not table.follow  # moving to the bottom stopped following


async def test_escape_clears_an_applied_filter(tmp_path: Path) -> None:
    app, notes = make_app(build_run(tmp_path / "run"))
    async with app.run_test(size=SIZE) as pilot:
        await app.synced()
        table = app.query_one(PopulationTable)
        assert footer_keys(app).get("escape") is None  # nothing to clear
        await pilot.press("slash", *"done", "enter")  # applied, the box closed
        await app.synced()
        assert table.row_count == 5 and table.has_focus
        assert footer_keys(app)["escape"] == "clear_filter"
        await pilot.press("escape")
        await app.synced()
        assert table.row_count == 9 and app.poller.view.filter == ""
        assert "Filter cleared." in notes and "escape" not in footer_keys(app)


@pytest.mark.slow
async def test_footer_offers_resume_while_paused(tmp_path: Path) -> None:
    run_dir = build_run(tmp_path / "run", engine_state="paused")
    store = RunStore.open(run_dir)
    store.set_meta("engine", {"pid": 1, "heartbeat": time.time(), "state": "paused"})
    store.close()
    with RunLock(run_dir):
        app, _ = make_app(run_dir, clock=time.time)
        async with app.run_test(size=SIZE) as pilot:
            await app.synced()
            assert app.engine.state == "paused"
            assert footer_keys(app)["p"] == "resume"
            await pilot.press("p")
            assert commands(run_dir) == [("resume", "", "new")]
            store = RunStore.open(run_dir)
            store.set_meta("state", "running")
            store.set_meta("engine", {"pid": 1, "heartbeat": time.time(), "state": "running"})
            store.close()
            await app.synced()
            await asyncio.sleep(0.1)
            assert footer_keys(app)["p"] == "pause"


async def test_lineage_screen(tmp_path: Path) -> None:
    app, _ = make_app(build_run(tmp_path / "run"))
    async with app.run_test(size=SIZE) as pilot:
        await app.synced()
        await pilot.press("down", "l")  # node #8 (running): #8 <- #6 <- #3 <- #2 <- #1
        assert isinstance(app.screen, LineageScreen)
        text = app.screen.query_one("#lineage-text", Static)
        deadline = time.monotonic() + 10
        while "ancestors" not in str(text.render()) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        plain = str(text.render())
        assert plain.startswith("Lineage of #8: 4 ancestors")
        heads = [line.split()[0] for line in plain.splitlines() if line.startswith("#")]
        assert heads == ["#8", "#6", "#3", "#2", "#1"]
        assert "score 0.97  Δ +0.07" in plain  # #6 against its parent #3 (0.9)
        assert "Move X from 2.00 to 2.25." in plain and "Move X from 0.75 to 1.00." in plain
        await pilot.press("escape")
        assert not isinstance(app.screen, LineageScreen)


def test_lineage_is_bounded_and_survives_a_cycle(tmp_path: Path) -> None:
    import sqlite3
    from contextlib import closing

    run_dir = build_run(tmp_path / "run")
    reader = RunReader(run_dir)
    short = read_lineage(reader, 8, max_depth=2)
    assert [a.id for a in short.chain] == [8, 6] and short.truncated
    assert short.chain[-1].delta == pytest.approx(0.07)  # its parent was read for the delta
    assert not read_lineage(reader, 8).truncated
    with closing(sqlite3.connect(run_dir / "evolve.db")) as conn, conn:
        conn.execute("UPDATE nodes SET parent_id = 6 WHERE id = 3")  # 6 -> 3 -> 6 -> ...
    looped = read_lineage(reader, 6, max_depth=50)
    assert len(looped.chain) == 50 and looped.truncated
    assert read_lineage(reader, 999).chain == []
    reader.close()
