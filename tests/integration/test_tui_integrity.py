"""Research integrity and what runs now, on screen (issue 21, items 1 and 2).

- Where the task verifies its promising nodes, the table shows the explore and verify
  scores side by side, flags a verify score below the baseline's, and the header reports the
  run's best as ``engine/store/standing.Standings.best()`` does, naming its stage.
- Every unfinished candidate shows its stage and elapsed / limit, and the clock ticks while
  the TUI is open even when nothing new is read from the database.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from tui_stages import EXPLORE_STARTED, VERIFY_S, add_stages
from tui_support import NOW, build_run, make_app, wait_for

from engine.store.reader import Cursor, RunReader
from engine.store.run_store import RunStore
from engine.store.standing import StageNames
from tui import format as fmt
from tui.app import POLL_SECONDS, EvolveApp
from tui.widgets.header import RunHeader, pack, segments
from tui.widgets.population import PopulationTable

SIZE = (100, 30)
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def header_text(app: EvolveApp) -> str:
    return "\n".join(t.plain for t in pack(segments(app.query_one(RunHeader).summary), 300))


def cell(table: PopulationTable, node_id: int, column: str) -> str:
    return table.get_cell(str(node_id), column).plain


def label(table: PopulationTable, column: str) -> str:
    return str(table.columns[column].label)  # type: ignore[index]


def finish(run_dir: Path, node_id: int, explore: float, verify: float | None) -> None:
    """The engine finishes a node: its stages in the results, its stage record gone."""
    stages = {"explore": {"ok": True, "score": explore, "error": "", "runtime": 1.0}}
    stages["verify"] = (
        {"ok": True, "score": verify, "error": "", "runtime": 9.0}
        if verify is not None
        else {"skipped": "not in the top 2"}
    )
    store = RunStore.open(run_dir)
    store.update_node(
        node_id,
        status="done",
        score=explore,
        runtime=10.0,
        results={"metrics": {}, "stages": stages},
        metadata={},
    )
    store.close()


async def test_explore_and_verify_side_by_side_with_the_reported_best(tmp_path: Path) -> None:
    app, _ = make_app(add_stages(build_run(tmp_path / "run")))
    async with app.run_test(size=SIZE):
        await app.synced()
        table = app.query_one(PopulationTable)
        shown = table.columns_shown
        assert shown.index("verify") == shown.index("score") + 1  # side by side
        assert (label(table, "score"), label(table, "verify")) == ("explore", "verify")
        verify = {i: cell(table, i, "verify") for i in range(1, 10)}
        assert verify == {
            1: "0.55",  # the baseline (the initial program)
            2: "skipped",  # not promoted to the verify stage
            3: "0.61*",  # the reported best, marked on the score it is ranked by
            4: "-",  # failed before: never verified
            5: "failed",
            6: "0.52⚠",  # the best explore score, below the baseline once verified
            7: "-",
            8: "…",  # still running
            9: "…",
        }
        assert cell(table, 6, "score") == "0.97"  # no best mark on the lucky draw
        assert "red" in str(table.get_cell("6", "verify").style)
        text = header_text(app)
        assert "best 0.61 (#3, verify; explore 0.9)" in text
        assert "⚠ 1 verify below baseline" in text


async def test_verification_arriving_moves_the_best_and_the_flags(tmp_path: Path) -> None:
    run_dir = add_stages(build_run(tmp_path / "run"))
    app, _ = make_app(run_dir)
    async with app.run_test(size=SIZE):
        await app.synced()
        table = app.query_one(PopulationTable)
        finish(run_dir, 8, 0.8, 0.4)  # verified below the baseline (0.55)
        await app.synced()
        assert cell(table, 8, "verify") == "0.4⚠" and cell(table, 8, "status") == "done"
        assert "⚠ 2 verify below baseline" in header_text(app)
        finish(run_dir, 9, 0.7, 0.66)  # the new reported best
        await app.synced()
        assert "best 0.66 (#9, verify; explore 0.7)" in header_text(app)
        assert cell(table, 9, "verify") == "0.66*" and cell(table, 3, "verify") == "0.61"


async def test_a_run_without_verify_stage_keeps_its_table(tmp_path: Path) -> None:
    app, _ = make_app(build_run(tmp_path / "run"))
    async with app.run_test(size=SIZE):
        await app.synced()
        table = app.query_one(PopulationTable)
        assert "verify" not in table.columns_shown and label(table, "score") == "score"
        assert [label(table, c) for c in table.columns_shown] == [
            *("id", "step", "name", "parent", "score", "Δ", "status", "time", "isl")
        ]
        assert cell(table, 6, "score") == "0.97*"
        assert "best 0.97 (#6)" in header_text(app) and "baseline" not in header_text(app)


async def test_every_unfinished_candidate_shows_its_stage_and_clock(tmp_path: Path) -> None:
    now = [NOW]
    app, _ = make_app(add_stages(build_run(tmp_path / "run")), clock=lambda: now[0])
    async with app.run_test(size=SIZE):
        await app.synced()
        table = app.query_one(PopulationTable)
        assert (cell(table, 8, "status"), cell(table, 8, "runtime")) == ("explore", "3:05/10:00")
        # a pending node: the Researcher writes it, since its creation (T0 + 8)
        assert (cell(table, 9, "status"), cell(table, 9, "runtime")) == ("research", "9:52")
        assert cell(table, 7, "status") == "pruned"  # finished rows are unchanged
        now[0] += 2  # nothing new in the database: only the clock moves
        await wait_for(lambda: cell(table, 8, "runtime") == "3:07/10:00")  # the poll loop
        assert cell(table, 9, "runtime") == "9:54"
        now[0] = EXPLORE_STARTED + 601  # past its limit: shown in red
        await wait_for(lambda: cell(table, 8, "runtime") == "10:01/10:00")
        assert "red" in str(table.get_cell("8", "runtime").style)
    assert POLL_SECONDS <= 2  # the clocks move at least every second or two


async def test_stage_changes_are_read(tmp_path: Path) -> None:
    run_dir = add_stages(build_run(tmp_path / "run"))
    app, _ = make_app(run_dir)
    async with app.run_test(size=SIZE):
        await app.synced()
        table = app.query_one(PopulationTable)
        record = {"name": "verify", "started_at": NOW - 3700, "timeout": VERIFY_S * 2}
        store = RunStore.open(run_dir)
        store.update_node(8, metadata={"running_stage": record})
        store.close()
        await app.synced()
        assert cell(table, 8, "status") == "verify"
        assert cell(table, 8, "runtime") == "1h01m/2h00m"


def test_stage_clock_format() -> None:
    assert fmt.stage_clock(185, 600) == "3:05/10:00"
    assert fmt.stage_clock(42, None) == "0:42"
    assert fmt.stage_clock(3780, 7200) == "1h03m/2h00m"
    assert fmt.stage_clock(float("nan"), 600) == "-"


def test_reader_reads_stage_records_and_verify_outcomes(tmp_path: Path) -> None:
    run_dir = add_stages(build_run(tmp_path / "run"))
    with closing(sqlite3.connect(run_dir / "evolve.db")) as conn, conn:
        conn.execute("UPDATE nodes SET results = '{not json' WHERE id = 2")
        conn.execute("UPDATE nodes SET metadata = 'oops', status = 'running' WHERE id = 7")
    reader = RunReader(run_dir)
    names = StageNames.from_meta(reader.meta()["stages"])
    assert names == StageNames("explore", "verify")
    rows = {r.id: r for r in reader.changed_nodes(Cursor(), names.verify)}
    assert rows[3].verify == (True, 0.61, None) and rows[5].verify == (False, None, None)
    assert rows[2].verify is None and rows[4].verify is None  # bad JSON, no record
    assert rows[8].stage == {"name": "explore", "started_at": EXPLORE_STARTED, "timeout": 600}
    assert rows[6].stage is None and rows[7].stage is None  # finished; bad JSON
    running = rows[8].running(NOW)
    assert running is not None and running.describe() == "#8 explore 3:05 / 10:00"
    assert rows[7].running(NOW).stage == "starting"  # type: ignore[union-attr]
    plain = {r.id: r for r in reader.changed_nodes(Cursor())}  # no verify stage asked
    assert plain[3].verify is None and plain[8].stage is not None
    odd = {r.id: r for r in reader.changed_nodes(Cursor(), 'x"; DROP')}  # not a stage name
    assert odd[3].verify is None
    json.dumps([r.verify for r in rows.values()])  # plain data
    reader.close()
