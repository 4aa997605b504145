"""The main screen's panes (issue 21, item 3): all on screen from 140 columns, one key to
each below that, a visible focus, the footer saying how to move, and 8 rows of nodes at
80x24."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.console import Console
from tui_stages import add_stages
from tui_support import build_run, make_app

from tui.app import EvolveApp
from tui.widgets.cognition import CognitionPane
from tui.widgets.events import EventLog
from tui.widgets.panes import PaneBar
from tui.widgets.population import PopulationTable
from tui.widgets.report import ReportPane

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def screen_lines(app: EvolveApp) -> list[str]:
    """The screen as text, one string per terminal line."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), record=True)
    console.print(app.screen._compositor.render_update(full=True))
    return console.export_text(styles=False).splitlines()


def rows_in_view(app: EvolveApp) -> int:
    """Node rows the population table shows within its region on screen."""
    region = app.query_one(PopulationTable).region
    lines = screen_lines(app)[region.y : region.bottom]
    return sum(1 for line in lines if re.match(r"\s*#\d+\s", line[region.x : region.right]))


def on_screen(widget) -> bool:  # noqa: ANN001
    return widget.display and widget.region.width > 0 and widget.region.height >= 3


def panes(app: EvolveApp) -> dict[str, bool]:
    widgets = {
        "population": app.query_one(PopulationTable),
        "report": app.query_one(ReportPane),
        "cognition": app.query_one(CognitionPane),
        "events": app.query_one(EventLog),
    }
    return {name: on_screen(w) for name, w in widgets.items()}


def focused_pane(app: EvolveApp) -> str | None:
    return app.focused_pane()


@pytest.mark.parametrize("verify", [False, True])
async def test_80x24_keeps_eight_rows_of_nodes(tmp_path: Path, verify: bool) -> None:
    run_dir = build_run(tmp_path / "run")
    if verify:  # a longer header (the reported best, the flags) and a verify column
        add_stages(run_dir)
    app, _ = make_app(run_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        await app.synced()
        await pilot.pause(0.1)
        assert rows_in_view(app) >= 8
        table = app.query_one(PopulationTable)
        assert table.size.width <= 80 and table.virtual_size.width <= table.size.width
        assert {"status", "runtime"} <= set(table.columns_shown)  # what runs now: in view
        for key in ("2", "3", "4"):  # whichever pane shares the screen
            await pilot.press(key)
            await pilot.pause(0.1)
            assert rows_in_view(app) >= 8, key


@pytest.mark.parametrize("size", [(140, 40), (160, 45), (200, 60)])
async def test_wide_screens_show_report_and_cognition_at_once(tmp_path: Path, size) -> None:  # noqa: ANN001
    app, _ = make_app(build_run(tmp_path / "run"))
    async with app.run_test(size=size) as pilot:
        await app.synced()
        await pilot.pause(0.1)
        assert panes(app) == dict.fromkeys(("population", "report", "cognition", "events"), True)
        assert not app.query_one(PaneBar).display  # nothing to switch
        report, cognition = app.query_one(ReportPane), app.query_one(CognitionPane)
        assert not report.region.overlaps(cognition.region)
        await pilot.press("3")  # a key still takes the focus there, nothing moves
        await pilot.pause(0.1)
        assert focused_pane(app) == "cognition" and panes(app)["report"]


async def test_narrow_screens_reach_each_pane_with_one_key(tmp_path: Path) -> None:
    app, _ = make_app(build_run(tmp_path / "run"))
    async with app.run_test(size=(100, 30)) as pilot:
        await app.synced()
        await pilot.pause(0.1)
        assert panes(app) == {
            "population": True,
            "report": True,
            "cognition": False,
            "events": False,
        }
        bar = app.query_one(PaneBar)
        assert bar.display and bar.region.height == 1  # the narrow screen's pane switch
        text = bar.render().plain
        for name in ("1 population", "2 report", "3 cognition (2)", "4 events", "tab"):
            assert name in text
        for key, name in (("3", "cognition"), ("4", "events"), ("2", "report"), ("1", None)):
            await pilot.press(key)
            await pilot.pause(0.1)
            if name is not None:
                shown = panes(app)
                assert shown[name] and shown["population"], key
                assert [n for n in ("report", "cognition", "events") if shown[n]] == [name]
            assert focused_pane(app) == (name or "population")


async def test_tab_goes_round_the_panes(tmp_path: Path) -> None:
    app, _ = make_app(build_run(tmp_path / "run"))
    async with app.run_test(size=(100, 30)) as pilot:
        await app.synced()
        seen = [focused_pane(app)]
        for _ in range(4):
            await pilot.press("tab")
            await pilot.pause(0.05)
            seen.append(focused_pane(app))
        assert seen == ["population", "report", "cognition", "events", "population"]
        await pilot.press("shift+tab")
        await pilot.pause(0.05)
        assert focused_pane(app) == "events" and panes(app)["events"]


@pytest.mark.parametrize("size", [(100, 30), (160, 45)])
async def test_the_focused_pane_stands_out(tmp_path: Path, size) -> None:  # noqa: ANN001
    app, _ = make_app(build_run(tmp_path / "run"))
    async with app.run_test(size=size) as pilot:
        await app.synced()
        table, report = app.query_one(PopulationTable), app.query_one(ReportPane)
        cognition = app.query_one(CognitionPane)

        def edge(widget) -> str:  # noqa: ANN001
            return widget.styles.border_top[0]

        assert edge(table) == "heavy" and edge(report) == "solid"
        await pilot.press("2")
        await pilot.pause(0.1)
        assert edge(report) == "heavy" and edge(table) == "solid"
        assert report.styles.border_title_color != table.styles.border_title_color
        await pilot.press("3")
        await pilot.pause(0.1)
        assert edge(cognition) == "heavy" and edge(report) == "solid"


@pytest.mark.parametrize("width", [80, 100, 160])
async def test_the_footer_says_how_to_move_between_panes(tmp_path: Path, width: int) -> None:
    app, _ = make_app(build_run(tmp_path / "run"))
    async with app.run_test(size=(width, 30)) as pilot:
        await app.synced()
        await pilot.pause(0.1)
        active = {k: b.binding for k, b in app.active_bindings.items() if b.enabled}
        for key, name in zip("1234", ("population", "report", "cognition", "events"), strict=True):
            assert active[key].action == f"pane('{name}')" and active[key].show
            assert active[key].group is not None and active[key].group.description == "panes"
        assert active["tab"].description and active["shift+tab"].description
        for _ in range(50):  # the footer draws after its bindings, key by key, under load
            footer = screen_lines(app)[-1]
            if "1234 panes" in footer and "q quit" in footer:
                break
            await pilot.pause(0.1)
        assert "1234 panes" in footer and "q quit" in footer  # all of it fits in 80 columns
        await pilot.press("down")  # "f follow" left the footer: the table's title says it
        await pilot.pause(0.2)  # the title follows the selection on the next refresh
        assert str(app.query_one(PopulationTable).border_title).endswith("· f: follow")
