"""The ASI-Evolve terminal UI: watch a run and steer its engine from the keyboard.

The app meets the engine only through the run database: a background thread polls it
(``Poller``) about once a second, and actions write a row to ``commands`` and then watch
that row until the engine marks it handled, so every key gives visible feedback. Quitting
never stops the engine, unless this TUI started it (``run --tui``) and the user says so.

The screen has four panes (``tui/widgets/panes.py``): the population table, the report,
the cognition pane, the curve with the events. ``1``-``4`` go to each, ``tab`` /
``shift+tab`` round them; at 140 columns and more all four are on screen, below that the
table keeps the top and the other three take turns at the bottom. The focused pane's title
line is drawn heavy in the accent colour.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import DataTable, Footer, Input
from textual.worker import get_current_worker

from engine.store.reader import EngineState, RunNotFound, RunReader
from tui.actions import Steering
from tui.model import SORTS, View
from tui.poller import Poller, Tick
from tui.screens.details import NodeDetails
from tui.screens.lineage import LineageScreen
from tui.widgets.cognition import CognitionPane
from tui.widgets.curve import ScoreCurve
from tui.widgets.events import EventLog
from tui.widgets.filter import FILTER_HINT, FilterBox
from tui.widgets.header import RunHeader
from tui.widgets.panes import BOTTOM, COGNITION, PANES, REPORT, WIDE, BarState, PaneBar, label
from tui.widgets.population import PopulationTable
from tui.widgets.report import ReportPane

POLL_SECONDS = 1.0
# 1-4: the panes, shown in the footer as one item ("1234 panes")
PANE_KEYS = Binding.Group("panes", compact=True)
PANE_BINDINGS = [
    Binding(str(i), f"pane('{name}')", name, group=PANE_KEYS) for i, name in enumerate(PANES, 1)
]

__all__ = ["EvolveApp", "RunNotFound", "watch"]


class EvolveApp(App[str | None]):
    """Live view of one run. Returns 'stop' / 'leave' when asked about the engine on quit."""

    CSS_PATH = "app.tcss"
    TITLE = "ASI-Evolve"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (WIDE, "-wide")]
    BINDINGS = [
        Binding("p", "pause", "pause"),
        Binding("p", "resume", "resume"),  # only one of the two is active: see check_action
        Binding("x", "prune", "prune"),
        Binding("a", "decide('approve')", "approve"),
        Binding("r", "decide('reject')", "reject"),
        Binding("enter", "details('report')", "details"),
        Binding("d", "details('diff')", "diff", show=False),  # the footer fits 80 columns:
        Binding("c", "details('code')", "code", show=False),  # details screen shows m / c / d
        Binding("l", "lineage", "lineage"),
        Binding("s", "sort", "sort"),
        Binding("f", "follow", "follow", show=False),  # the table's title says "following"
        Binding("slash", "filter", "filter"),
        *PANE_BINDINGS,
        Binding("q", "quit_app", "quit"),
        Binding("escape", "clear_filter", "clear filter"),  # shown with a filter (last: 80 cols)
        Binding("tab", "cycle_pane(1)", "next pane", show=False, priority=True),
        Binding("shift+tab", "cycle_pane(-1)", "previous pane", show=False, priority=True),
    ]

    def __init__(
        self,
        run_dir: Path,
        *,
        ask_stop_on_quit: bool = False,
        clock: Callable[[], float] = time.time,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.reader = RunReader(self.run_dir)  # raises RunNotFound before any screen
        self.poller = Poller(self.reader, clock=clock)
        self.ask_stop_on_quit = ask_stop_on_quit
        self.poll_seconds = poll_seconds
        self.engine = EngineState(False, "not running")
        self.maximize = True
        self.applied_seq = 0
        self.has_cognition = False
        self._wake = threading.Event()
        self.closing = False
        self.steering = Steering(self)  # the keys that write: p, x, a, r, q
        self._read_error = ""
        self._display_error = ""
        self._view_shown: View | None = None  # the view the table shows (a new one: top)
        self.pane = REPORT  # the pane at the bottom of a narrow screen
        self._pending_count = 0

    # ---------------------------------------------------------------- layout
    def compose(self) -> ComposeResult:
        yield RunHeader(id="header")
        with Horizontal(id="main", classes=f"-show-{REPORT}"):
            with Vertical(id="left"):
                yield PopulationTable(id="population", classes="pane")
                yield PaneBar(id="panebar")
                with Horizontal(id="band"):
                    yield ScoreCurve(id="curve")
                    yield EventLog(id="events", classes="pane")
            with Vertical(id="side"):
                yield ReportPane(id="report", classes="pane")
                yield CognitionPane(id="cognition", classes="pane")
        yield FilterBox(placeholder=FILTER_HINT, id="filter")
        yield Footer(compact=True, show_command_palette=False)

    @property
    def main(self) -> Screen:
        """The main screen (queries must not land in a details screen or a dialog on top)."""
        return self.screen_stack[0]

    def on_mount(self) -> None:
        if self.console.color_system in ("standard", "windows"):
            self.theme = "ansi-dark"  # 16 colours: use the terminal's own palette
        self.main.query_one("#population").border_title = label("population")
        self.main.query_one("#events").border_title = label("events")
        self.main.query_one("#report").border_title = label("report")
        self.main.query_one("#cognition").border_title = label("cognition")
        self.main.query_one("#population", PopulationTable).focus()
        self.watch(self.main, "focused", self._focus_moved, init=False)
        self._poll_loop()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The footer offers what the keys do now: resume while paused, esc with a filter."""
        if action == "pause":
            return self.engine.state != "paused"
        if action == "resume":
            return self.engine.state == "paused"
        if action == "clear_filter":
            return bool(self.poller.view.filter)
        if action in ("pane", "cycle_pane"):  # the main screen's panes, not a dialog's
            return self.screen is self.main
        return True

    def on_unmount(self) -> None:
        self.closing = True
        self._wake.set()

    # --------------------------------------------------------------- polling
    @work(thread=True, exclusive=True, group="poll")
    def _poll_loop(self) -> None:
        worker = get_current_worker()
        while not worker.is_cancelled and not self.closing:
            self._wake.clear()
            try:
                tick = self.poller.tick()
            except Exception as exc:  # noqa: BLE001 - a bad read must not kill the UI
                message = f"could not read the run database: {type(exc).__name__}: {exc}"
                if message != self._read_error:
                    self._read_error = message
                    self.from_thread(self.notify, message, severity="error", timeout=6)
            else:
                self._read_error = ""
                if not self.from_thread(self._apply, tick):
                    return
            self._wake.wait(self.poll_seconds)

    def from_thread(self, fn: Callable, *args: object, **kwargs: object) -> bool:
        if self.closing:
            return False
        try:
            self.call_from_thread(fn, *args, **kwargs)
        except RuntimeError:  # the app is not running any more
            return False
        except Exception:  # noqa: BLE001 - e.g. cancelled while the app closes
            return not self.closing
        return True

    def _apply(self, tick: Tick) -> None:
        try:
            self._show(tick)
        except Exception as exc:  # noqa: BLE001 - odd data must not stop the refreshes
            message = f"display error: {type(exc).__name__}: {exc}"
            if message != self._display_error:
                self._display_error = message
                self.notify(message, severity="error", timeout=6)
            self.poller.resend()  # the screen may have missed rows: redraw them all next time
        self.applied_seq = tick.seq

    def _show(self, tick: Tick) -> None:
        if tick.summary.engine.state != self.engine.state:
            self.refresh_bindings()  # pause <-> resume in the footer
        self.engine = tick.summary.engine
        self.maximize = tick.maximize
        self.main.query_one(RunHeader).show(tick.summary)
        table = self.main.query_one(PopulationTable)
        table.set_stages(tick.stages.score, tick.stages.verify)
        table.apply(tick.order, tick.cells, top=tick.view != self._view_shown)
        self._view_shown = tick.view
        table.set_title(self._table_title(tick))
        if tick.curve is not None:
            self.main.query_one(ScoreCurve).set_points(tick.curve, tick.maximize)
        if tick.events:
            self.main.query_one(EventLog).add(tick.events)
        self.has_cognition = tick.pending is not None
        if tick.pending_changed:
            pane = self.main.query_one(CognitionPane)
            pane.show_pending(tick.pending)
            self._pending_count = len(tick.pending) if tick.pending else 0
            pane.border_title = label(COGNITION, self._pending_count)
            self._show_bar()
        if tick.detail is not None and tick.detail.node_id == self.poller.selected:
            d = tick.detail
            self.main.query_one(ReportPane).show(d.node, d.parent_score, tick.maximize)
            self.main.query_one(CognitionPane).show_retrieved(d.node_id, d.retrieved)
        selected = table.selected_id
        if selected != self.poller.selected:
            self._select(selected)

    def _table_title(self, tick: Tick) -> str:
        shown, total = len(tick.order), len(self.poller.pop.rows)
        text = f"population · {total} nodes · sort: {tick.view.sort}"
        if tick.view.filter:
            text += f" · filter '{tick.view.filter}': {tick.matched}"
        if shown < tick.matched:
            text += f" · first {shown} shown"
        return text

    def refresh_now(self) -> None:
        self._wake.set()

    # ----------------------------------------------------------------- panes
    def pane_widget(self, name: str) -> Widget:
        """The widget that takes the focus for a pane."""
        if name == COGNITION:
            return self.main.query_one(CognitionPane).query_one("#pending")
        return self.main.query_one(f"#{name}")

    def focused_pane(self) -> str | None:
        """The pane that holds the focus (None: the filter box, or nothing)."""
        node = self.main.focused
        while node is not None and not isinstance(node, Screen):
            if node.id in PANES:
                return node.id
            node = node.parent
        return None

    def show_pane(self, name: str, focus: bool = True) -> None:
        """Bring a pane into view (on a narrow screen the bottom pane changes) and focus it."""
        if name in BOTTOM and name != self.pane:
            main = self.main.query_one("#main")
            main.remove_class(f"-show-{self.pane}")
            self.pane = name
            main.add_class(f"-show-{name}")
            self._show_bar()
        if focus:
            widget = self.pane_widget(name)
            self.call_after_refresh(widget.focus)

    def _focus_moved(self) -> None:
        pane = self.focused_pane()
        if pane in BOTTOM and pane != self.pane:  # e.g. a click into a wide screen's pane
            self.show_pane(pane, focus=False)
        self._show_bar()

    def _show_bar(self) -> None:
        state = BarState(self.pane, self.focused_pane(), self._pending_count)
        self.main.query_one(PaneBar).show(state)

    def action_pane(self, name: str) -> None:
        self.show_pane(name)

    def action_cycle_pane(self, step: int) -> None:
        current = self.focused_pane() or PANES[0]
        self.show_pane(PANES[(PANES.index(current) + step) % len(PANES)])

    async def synced(self, timeout: float = 10.0) -> None:
        """Wait until a refresh that started after this call has reached the screen."""
        target = self.poller.seq + 1
        self.refresh_now()
        deadline = time.monotonic() + timeout
        while self.applied_seq < target and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    def _select(self, node_id: int | None) -> None:
        self.poller.selected = node_id
        self.refresh_now()

    @on(DataTable.RowHighlighted, "#population")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        value = event.row_key.value
        self._select(int(value) if value is not None else None)

    @on(DataTable.RowSelected, "#population")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_details("report")

    def selected_node(self) -> int | None:
        """The node under the table's cursor (with a message when there is none)."""
        node_id = self.main.query_one(PopulationTable).selected_id
        if node_id is None:
            self.notify("No node selected.", severity="warning")
        return node_id

    # --------------------------------------------------------------- steering
    def action_pause(self) -> None:
        self.steering.pause()

    def action_resume(self) -> None:
        self.steering.resume()

    def action_prune(self) -> None:
        self.steering.prune()

    def action_decide(self, decision: str) -> None:
        self.steering.decide(decision)

    def action_quit_app(self) -> None:
        self.steering.quit()

    def action_details(self, tab: str) -> None:
        node_id = self.selected_node()
        if node_id is not None:
            self.push_screen(NodeDetails(self.reader, node_id, tab, self.maximize))

    def action_lineage(self) -> None:
        node_id = self.selected_node()
        if node_id is not None:
            self.push_screen(LineageScreen(self.reader, node_id, self.maximize))

    def action_sort(self) -> None:
        view = self.poller.view
        sort = SORTS[(SORTS.index(view.sort) + 1) % len(SORTS)]
        self.poller.view = View(sort=sort, filter=view.filter)
        self.notify(f"Sorted by {sort}.", timeout=2)
        self.refresh_now()

    def action_follow(self) -> None:
        table = self.main.query_one(PopulationTable)
        table.set_follow(not table.follow)
        top = {"step": "the newest node", "score": "the best node"}.get(
            self.poller.view.sort, "the first row"
        )
        if table.follow:
            self.notify(f"Following {top} (moving the cursor stops it).", timeout=3)
        else:
            self.notify("Stopped following: the selection stays put.", timeout=3)

    def action_clear_filter(self) -> None:
        if self.poller.view.filter:
            self._set_filter("")
            self.notify("Filter cleared.", timeout=2)

    def action_filter(self) -> None:
        box = self.main.query_one("#filter", Input)
        box.add_class("-open")
        box.value = self.poller.view.filter
        box.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self._set_filter(event.value)

    def _set_filter(self, text: str) -> None:
        had = bool(self.poller.view.filter)
        self.poller.view = View(sort=self.poller.view.sort, filter=text)
        if had != bool(text):
            self.refresh_bindings()  # esc "clear filter" comes and goes in the footer
        self.refresh_now()

    @on(Input.Submitted, "#filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        self._close_filter()

    def _close_filter(self) -> None:
        box = self.main.query_one("#filter", Input)
        box.remove_class("-open")
        self.main.query_one(PopulationTable).focus()

    @on(FilterBox.Cancelled)
    def _filter_cancelled(self) -> None:
        self._close_filter()


def watch(run_dir: Path, *, ask_stop_on_quit: bool = False) -> str | None:
    """Run the TUI on ``run_dir`` (raises RunNotFound first if it holds no run)."""
    app = EvolveApp(Path(run_dir), ask_stop_on_quit=ask_stop_on_quit)
    try:
        return app.run()
    finally:
        app.reader.close()
