"""Cognition decisions several at once (issue 21, item 4): ``space`` marks proposals in the
cognition pane, ``a`` / ``r`` decide on every marked one after a single confirmation, each
written as a single decision is (``engine/store/steer.decide_item``)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from textual.widgets import DataTable, Static
from tui_support import T0, build_run, item_status, make_app, wait_for

from tui.screens.confirm import Confirm
from tui.screens.proposal import DecideProposal
from tui.widgets.cognition import MARK, CognitionPane

SIZE = (100, 30)
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def run_with_three_proposals(tmp_path: Path) -> Path:
    """``build_run``'s pending items #3 and #4, and #5."""
    run_dir = build_run(tmp_path / "run")
    with closing(sqlite3.connect(run_dir / "evolve.db")) as conn, conn:
        conn.execute(
            "INSERT INTO cognition_items(id, title, content, tags, source, status, origin, "
            "node_id, created_at, updated_at) VALUES (5, 'Smaller steps near the peak', "
            "'Halve the step once the score is above 0.9.', '[]', '', 'pending', 'analyzer', "
            "7, ?, ?)",
            (T0, T0),
        )
    return run_dir


def marks(pane: CognitionPane) -> list[str]:
    table = pane.query_one("#pending", DataTable)
    return [table.get_cell(str(p.id), "mark").plain for p in pane._pending]


async def test_mark_three_then_approve_them_with_one_confirmation(tmp_path: Path) -> None:
    run_dir = run_with_three_proposals(tmp_path)
    app, notes = make_app(run_dir)
    async with app.run_test(size=SIZE) as pilot:
        await app.synced()
        pane = app.query_one(CognitionPane)
        assert [p.id for p in pane._pending] == [3, 4, 5]
        await pilot.press("3", "space", "space", "space")  # each mark moves down a row
        assert pane.marked == {3, 4, 5} and marks(pane) == [MARK] * 3
        title = str(pane.query_one("#pending-title", Static).render())
        assert "3 marked" in title
        await pilot.press("a")
        assert type(app.screen) is Confirm  # one question for all, not one per proposal
        question = str(app.screen.query_one(".question", Static).render())
        listed = str(app.screen.query_one(".detail", Static).render())
        assert question == "Approve the 3 marked proposals?"
        assert "#3 Large X steps" in listed and "#5 Smaller steps" in listed
        await pilot.press("y")
        await wait_for(lambda: all(item_status(run_dir, i) == "active" for i in (3, 4, 5)))
        assert not isinstance(app.screen, Confirm)  # no second question came
        await app.synced()
        assert pane._pending == [] and pane.marked == set()
        await wait_for(lambda: any("3 of 3 proposals approved" in n for n in notes))


async def test_unmark_cancel_then_reject_only_the_marked(tmp_path: Path) -> None:
    run_dir = run_with_three_proposals(tmp_path)
    app, _ = make_app(run_dir)
    async with app.run_test(size=SIZE) as pilot:
        await app.synced()
        pane = app.query_one(CognitionPane)
        await pilot.press("3", "space", "space", "up", "space")  # #3, #4, then #4 unmarked
        assert pane.marked == {3} and marks(pane) == [MARK, " ", " "]
        await pilot.press("r")
        assert type(app.screen) is Confirm
        await pilot.press("n")  # cancelled: nothing written, the mark stays
        assert [item_status(run_dir, i) for i in (3, 4, 5)] == ["pending"] * 3
        assert pane.marked == {3}
        await pilot.press("up", "space")  # the cursor moved on to #5: back to #4, mark it
        assert pane.marked == {3, 4}
        await pilot.press("r", "y")
        await wait_for(lambda: item_status(run_dir, 4) == "rejected")
        await wait_for(lambda: item_status(run_dir, 3) == "rejected")
        assert item_status(run_dir, 5) == "pending"
        await app.synced()
        assert [p.id for p in pane._pending] == [5] and marks(pane) == [" "]
        await pilot.press("a")  # nothing marked: the single decision, on the full text
        assert isinstance(app.screen, DecideProposal)
