"""Pilot tests of the terminal UI against run databases built by the tests."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest
from textual.widgets import RichLog, Static, TextArea
from tui_support import T0, build_run, commands, item_status, make_app, wait_for

from engine.store.lock import RunLock
from engine.store.records import Node
from engine.store.run_store import RunStore
from tui.app import EvolveApp
from tui.screens.confirm import Confirm
from tui.screens.details import NodeDetails
from tui.screens.proposal import DecideProposal
from tui.widgets.cognition import CognitionPane
from tui.widgets.header import RunHeader, pack, segments
from tui.widgets.population import PopulationTable

SIZE = (100, 30)
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def header_text(app: EvolveApp) -> str:
    return "\n".join(t.plain for t in pack(segments(app.query_one(RunHeader).summary), 200))


def live_engine(run_dir: Path) -> RunLock:
    """Pretend an engine holds the run: the lock, and a fresh heartbeat."""
    lock = RunLock(run_dir)
    lock.acquire()
    store = RunStore.open(run_dir)
    store.set_meta(
        "engine",
        {"pid": 1, "heartbeat": time.time(), "state": "running", "busy": 1, "workers": 2},
    )
    store.set_meta("state", "running")
    store.close()
    return lock


def answer_commands(run_dir: Path, result: str = "done") -> None:
    """Play the engine: mark every new command handled."""
    store = RunStore.open(run_dir)
    for command in store.new_commands():
        store.finish_command(command.id, f"{command.kind}: {result}")
    store.close()


async def test_population_table_and_header(tmp_path: Path) -> None:
    app, _ = make_app(build_run(tmp_path / "run"))
    async with app.run_test(size=SIZE):
        await app.synced()
        table = app.query_one(PopulationTable)
        assert table.row_count == 9
        assert table.order[:3] == [9, 8, 7]  # newest first
        text = header_text(app)
        assert "toy" in text and "not running" in text  # no engine holds the lock
        assert "steps 6/40" in text and "best 0.97 (#6)" in text
        assert "1500 tok" in text and "$0.01" in text
        running = table.get_row("8")  # running for 42 s, no stage recorded yet
        assert running[6].plain == "starting" and running[7].plain == "0:42"


async def test_table_updates_in_place_while_rows_are_added(tmp_path: Path) -> None:
    run_dir = build_run(tmp_path / "run")
    app, _ = make_app(run_dir)
    async with app.run_test(size=SIZE) as pilot:
        await app.synced()
        table = app.query_one(PopulationTable)
        await pilot.press("down", "down")  # cursor on node #7
        await app.synced()
        assert table.selected_id == 7
        store = RunStore.open(run_dir)
        store.update_node(8, status="done", score=0.99, runtime=3.0)
        new_id = store.insert_node(Node(step=9, name="fresh", parent_ids=[8], status="running"))
        store.close()
        await app.synced()
        assert table.row_count == 10
        assert table.order[0] == new_id
        assert table.get_row("8")[6].plain == "done"
        assert table.get_row("8")[4].plain == "0.99*"  # the new best is marked
        assert table.get_row("6")[4].plain == "0.97"  # ... and the old one no longer
        assert table.selected_id == 7  # the cursor stayed on its node
        assert "best 0.99 (#8)" in header_text(app)


async def test_refreshes_go_on_under_the_details_screen(tmp_path: Path) -> None:
    run_dir = build_run(tmp_path / "run")
    app, notes = make_app(run_dir)
    async with app.run_test(size=SIZE) as pilot:
        await app.synced()
        await pilot.press("enter")
        assert isinstance(app.screen, NodeDetails)
        store = RunStore.open(run_dir)
        store.insert_node(Node(step=9, name="fresh", parent_ids=[8], status="running"))
        store.close()
        await app.synced()
        await app.synced()
        await pilot.press("escape")
        assert app.query_one(PopulationTable).row_count == 10
        assert not [n for n in notes if "error" in n]


async def test_pause_writes_a_command_and_reports_the_engine_answer(tmp_path: Path) -> None:
    run_dir = build_run(tmp_path / "run")
    lock = live_engine(run_dir)
    try:
        app, notes = make_app(run_dir, clock=time.time)
        async with app.run_test(size=SIZE) as pilot:
            await app.synced()
            assert "● running" in header_text(app)
            await pilot.press("p")
            assert commands(run_dir) == [("pause", "", "new")]
            answer_commands(run_dir, "paused")
            await wait_for(lambda: any("handled 'pause'" in n for n in notes))
    finally:
        lock.release()


async def test_pause_without_engine_says_so_and_writes_nothing(tmp_path: Path) -> None:
    run_dir = build_run(tmp_path / "run")
    app, notes = make_app(run_dir)
    async with app.run_test(size=SIZE) as pilot:
        await app.synced()
        await pilot.press("p")
        assert commands(run_dir) == []
        assert any("No engine is running" in n for n in notes)


@pytest.mark.slow
async def test_prune_asks_about_the_shown_node_and_refuses_finished_ones(tmp_path: Path) -> None:
    run_dir = build_run(tmp_path / "run")
    lock = live_engine(run_dir)
    try:
        app, notes = make_app(run_dir, clock=time.time)
        async with app.run_test(size=SIZE) as pilot:
            await app.synced()
            await pilot.press("down")
            for status in ("pruned", "done"):  # nodes #7, #6: finished
                await pilot.press("down", "x")  # a clear message, no question, no command
                assert not isinstance(app.screen, Confirm)
                assert f"already finished ({status})" in notes[-1]
            assert commands(run_dir) == []
            await pilot.press("up", "up")  # node #8, running
            await app.synced()
            await pilot.press("x")
            assert isinstance(app.screen, Confirm)
            assert (
                app.screen.question == "Prune node #8 · step 7 · mutate-x-7 · running · parent #6?"
            )
            await pilot.press("n")
            assert not isinstance(app.screen, Confirm)
            assert commands(run_dir) == []
            await pilot.press("x")
            await pilot.press("y")
            assert commands(run_dir) == [("prune", "8", "new")]
            await pilot.press("up", "x")  # node #9 (pending) finishes while the question is open
            assert isinstance(app.screen, Confirm)
            store = RunStore.open(run_dir)
            store.update_node(9, status="failed")
            store.close()
            await app.synced()
            await pilot.press("y")
            assert "already finished (failed)" in notes[-1]
            assert commands(run_dir) == [("prune", "8", "new")]  # nothing more sent
            answer_commands(run_dir, "pruned node #8")
            await wait_for(lambda: any("pruned node #8" in n for n in notes))
    finally:
        lock.release()


@pytest.mark.slow
async def test_approve_and_reject_move_proposals(tmp_path: Path) -> None:
    run_dir = build_run(tmp_path / "run")
    app, notes = make_app(run_dir)
    async with app.run_test(size=SIZE) as pilot:
        await app.synced()
        pane = app.query_one(CognitionPane)
        assert [p.id for p in pane._pending] == [3, 4]
        await pilot.press("a")  # every press shows the whole proposal and asks
        assert app.pane == "cognition"  # the cognition pane comes into view
        assert isinstance(app.screen, DecideProposal)
        full = str(app.screen.query_one("#proposal-full", Static).render())
        assert "Large X steps overshoot the peak." in full and "from node #6" in full
        await pilot.press("n")
        assert not isinstance(app.screen, DecideProposal)
        assert item_status(run_dir, 3) == "pending"
        await pilot.press("a", "y")
        await wait_for(lambda: item_status(run_dir, 3) == "active")
        await app.synced()
        assert [p.id for p in pane._pending] == [4]
        await pilot.press("r")
        assert isinstance(app.screen, DecideProposal)
        assert "Reject proposal #4?" in str(app.screen.query_one(".question", Static).render())
        await pilot.press("y")
        await wait_for(lambda: item_status(run_dir, 4) == "rejected")
        await app.synced()
        assert pane._pending == []
        assert any("approved" in n for n in notes) and any("rejected" in n for n in notes)
        await pilot.press("a")
        assert notes[-1] == "No pending cognition proposal."


async def test_run_without_cognition_tables(tmp_path: Path) -> None:
    run_dir = build_run(tmp_path / "run", cognition=False)
    app, notes = make_app(run_dir)
    async with app.run_test(size=SIZE) as pilot:
        await app.synced()
        await pilot.press("a")
        assert notes[-1] == "This run has no cognition base."


async def test_retrieved_items_of_the_selected_node(tmp_path: Path) -> None:
    app, _ = make_app(build_run(tmp_path / "run"))
    async with app.run_test(size=SIZE) as pilot:
        await app.synced()
        await pilot.press("down", "down", "down")  # node #6 retrieved items 1 and 2
        await app.synced()
        text = str(app.query_one("#retrieved").render())
        assert "Retrieved for #6" in text and "0.810" in text and "Hexagonal" in text


@pytest.mark.slow
async def test_sort_and_filter(tmp_path: Path) -> None:
    app, _ = make_app(build_run(tmp_path / "run"))
    async with app.run_test(size=SIZE) as pilot:
        await app.synced()
        table = app.query_one(PopulationTable)
        await pilot.press("s")
        await app.synced()
        assert table.order[:3] == [6, 3, 5]  # best first
        await pilot.press("s")
        await app.synced()
        assert table.order[0] == 8  # running first
        await pilot.press("slash", *"failed")
        await app.synced()
        assert table.order == [4]
        await pilot.press("escape")
        await app.synced()
        assert table.row_count == 9
        await pilot.press("slash", *"mutate-x-2", "enter")
        await app.synced()
        assert table.order == [3]


@pytest.mark.slow
async def test_details_code_and_diff(tmp_path: Path) -> None:
    app, _ = make_app(build_run(tmp_path / "run"))
    async with app.run_test(size=SIZE) as pilot:
        await app.synced()
        await pilot.press("down", "down", "down", "d")  # node #6, diff against #3
        assert isinstance(app.screen, NodeDetails)
        log = app.screen.query_one("#diff", RichLog)
        await wait_for(lambda: len(log.lines) > 3)
        await pilot.press("c")
        code = app.screen.query_one("#code", TextArea)
        assert "X = 2.25" in code.text
        await pilot.press("escape")
        assert not isinstance(app.screen, NodeDetails)
        await pilot.press("enter")
        assert isinstance(app.screen, NodeDetails)


async def test_empty_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    RunStore.create(run_dir).close()
    app, notes = make_app(run_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        await app.synced()
        await pilot.press("enter", "d", "c", "x", "s", "p", "a")
        assert app.query_one(PopulationTable).row_count == 0
        assert "No node selected." in notes


@pytest.mark.slow
async def test_odd_data_does_not_crash(tmp_path: Path) -> None:
    run_dir = build_run(tmp_path / "run")
    with closing(sqlite3.connect(run_dir / "evolve.db")) as conn, conn:
        huge = "X = 1\n" + "# filler line of a huge program\n" * 80_000
        conn.execute("UPDATE nodes SET code = ? WHERE id = 6", (huge,))
        bad = b"name \xff\xfe [red]not markup[/red] \x1b[31m"
        conn.execute("UPDATE nodes SET name = CAST(? AS TEXT) WHERE id = 5", (bad,))
        conn.execute("UPDATE nodes SET analysis = CAST(? AS TEXT) WHERE id = 5", (b"\xc3\x28 ok",))
        conn.execute("UPDATE nodes SET score = 'abc', results = '{not json' WHERE id = 3")
        conn.execute("UPDATE nodes SET parent_id = 999, island = 'x' WHERE id = 2")
        conn.execute("UPDATE meta SET value = 'not json' WHERE key = 'engine'")
        conn.execute(
            "INSERT INTO events(ts, kind, node_id, message, data) VALUES (NULL, NULL, NULL, "
            "CAST(? AS TEXT), NULL)",
            (b"\xff event",),
        )
    app, _ = make_app(run_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        await app.synced()
        table = app.query_one(PopulationTable)
        assert table.row_count == 9
        assert "\ufffd" in table.get_row("5")[2].plain
        for keys in (["down"] * 3, ["up"]):
            await pilot.press(*keys, "enter")
            await pilot.press("c", "d", "m")
            await pilot.pause(0.5)
            await pilot.press("escape")
        await app.synced()


def test_not_a_run_is_refused(tmp_path: Path) -> None:
    from engine.store.reader import RunNotFound, RunReader

    with pytest.raises(RunNotFound):
        RunReader(tmp_path)
    (tmp_path / "evolve.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(RunNotFound):
        RunReader(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    with closing(sqlite3.connect(other / "evolve.db")) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(RunNotFound):
        RunReader(other)


def test_cognition_schema_of_the_cognition_base_is_read(tmp_path: Path) -> None:
    """The TUI reads the tables the real cognition base creates."""
    items = pytest.importorskip("cognition.items")
    run_dir = build_run(tmp_path / "run", cognition=False)
    store = RunStore.open(run_dir)
    items.ensure_schema(store.db)
    with store.db.conn:
        store.db.execute(
            "INSERT INTO cognition_items(title, content, status, origin, created_at) "
            "VALUES ('t', 'c', 'pending', 'analyzer', ?)",
            [T0],
        )
    store.close()
    from engine.store.reader import RunReader
    from engine.store.steer import decide_item
    from tui.knowledge import KnowledgeReader

    knowledge = KnowledgeReader(RunReader(run_dir))
    assert [p.title for p in knowledge.pending()] == ["t"]
    assert "approved" in decide_item(run_dir, knowledge.pending()[0].id, "approve")
    assert knowledge.pending() == []
