"""The population table: one row per node of the current window, updated in place.

The poller sends the window's order and the cells of the rows that changed (or are new to
the window, or running: their clock ticks). When the order is unchanged only those cells
are rewritten; otherwise rows leave and enter and the table is re-sorted by the window
order, and the cursor stays on the node it was on.

Following: while ``follow`` is on the cursor sits on the first row, so the screen follows
the action (the newest node when sorted by step, the best by score). It is on at start;
moving the cursor off the first row turns it off (a row under study must not be pulled
away by the next new node), ``f`` turns it on again. A sort or filter change shows the top.

Research integrity: where the task verifies its promising nodes, the score column is the
score stage's (``explore``) and a ``verify`` column stands beside it (blank until verified,
``skipped`` / ``failed`` by state); a verify score below the baseline's (the initial
program's) is flagged ``⚠``, and ``*`` marks the reported best on the score it is ranked by.
What runs now: an unfinished node's status is the stage it is in, its time the stage's
elapsed / limit (``explore 3:05/10:00``), redrawn on every refresh.

Columns that do not fit go, least useful first (island, parent, Δ): the name keeps
``MIN_NAME`` columns and the stage and its clock stay in view at 80 columns.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.coordinate import Coordinate
from textual.widgets import DataTable

from engine.store.reader import NodeRow
from engine.store.standing import FAILED, SKIPPED, VERIFIED, Best, Standings
from tui import format as fmt
from tui.model import Population


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int  # 0: the name, which takes what is left
    drop: int = 0  # columns that do not fit go, highest first (0: never)


COLUMNS: list[Column] = [
    Column("id", "id", 6),
    Column("step", "step", 5),
    Column("name", "name", 0),
    Column("parent", "parent", 6, drop=2),
    Column("score", "score", 9),
    Column("verify", "verify", 9),  # only where the task has a verify stage
    Column("delta", "Δ", 8, drop=1),
    Column("status", "status", 8),
    Column("runtime", "time", 11),  # "59:59/59:59", "1h03m/2h00m"
    Column("island", "isl", 3, drop=3),
]
PADDING = 1
MIN_NAME, MAX_NAME = 10, 48
FLAG = "⚠"  # a verify score below the baseline's

Cells = dict[str, Text]


def name_width(columns: list[Column], width: int) -> int:
    fixed = sum(c.width for c in columns) + 2 * PADDING * len(columns) + 1  # +1: scrollbar
    return width - fixed


def columns_for(width: int, verify: bool) -> list[Column]:
    """The columns shown at this width (without ``verify`` when the task has none)."""
    shown = [c for c in COLUMNS if verify or c.key != "verify"]
    for drop in sorted({c.drop for c in shown if c.drop}, reverse=True):
        if name_width(shown, width) >= MIN_NAME:
            break
        shown = [c for c in shown if c.drop != drop]
    return shown


def row_cells(
    row: NodeRow,
    pop: Population,
    now: float,
    standings: Standings | None = None,
    best: Best | None = None,
) -> Cells:
    """The table cells of one node, by column key. ``standings`` and ``best`` (the run's
    reported best): the verify cell and the best marker; without them the best is the
    population's best score."""
    d = pop.delta(row)
    if standings is None:
        is_best = pop.best is not None and pop.best.id == row.id
        on_verify = False
    else:
        is_best = best is not None and best.node_id == row.id
        on_verify = is_best and best is not None and best.verified
    mark = "*" if is_best else ""
    running = row.running(now)
    if running is not None:
        status = Text(running.stage, style="bold cyan" if row.status == "running" else "cyan")
        late = running.timeout is not None and running.elapsed > running.timeout
        clock = fmt.stage_clock(running.elapsed, running.timeout)
        runtime = Text(clock, style="bold red" if late else "cyan")
    else:
        status, runtime = fmt.status(row.status), Text(fmt.duration(row.runtime))
    name = fmt.one_line(row.name, MAX_NAME) or ("…" if row.status == "pending" else "-")
    score_mark = mark if not on_verify else ""
    return {
        "id": Text(f"#{row.id}", style="bold" if is_best else ""),
        "step": Text(str(row.step)),
        "name": Text(name),
        "parent": Text(f"#{row.parent_id}" if row.parent_id is not None else "-"),
        "score": Text(fmt.score(row.score) + score_mark, style="bold green" if score_mark else ""),
        "verify": verify_cell(row, standings, "*" if on_verify else ""),
        "delta": fmt.delta(d, d is not None and pop.improved(d)),
        "status": status,
        "runtime": runtime,
        "island": Text("-" if row.island is None else str(row.island)),
    }


def verify_cell(row: NodeRow, standings: Standings | None, mark: str) -> Text:
    """The verify score; ``skipped`` (not promoted), ``failed``, ``…`` (not there yet), or
    ``-`` (finished without it); flagged when below the baseline's."""
    standing = standings.of(row.id) if standings is not None else None
    if standing is None or not standing.state:
        return Text("")
    if standing.state == VERIFIED and standing.verify is not None:
        text = fmt.score(standing.verify)
        if standing.below_baseline:
            return Text(text + FLAG, style="bold red")
        return Text(text + mark, style="bold green" if mark else "")
    if standing.state == SKIPPED:
        return Text("skipped", style="dim")
    if standing.state == FAILED:
        return Text("failed", style="red")
    return Text("…" if row.status in ("pending", "running") else "-", style="dim")


def _node_id(cell: Text) -> int:
    return int(cell.plain.lstrip("#"))


class PopulationTable(DataTable):
    """Nodes of the run; the cursor row is the selected node."""

    BINDINGS = [
        Binding("enter", "select_cursor", "open", show=False),
        Binding("g,home", "first_row", "first row", show=False),
        Binding("G,end", "last_row", "last row", show=False),
    ]

    def __init__(self, **kwargs) -> None:  # noqa: ANN003 - DataTable's keyword arguments
        super().__init__(cursor_type="row", cell_padding=PADDING, **kwargs)
        self._order: list[int] = []
        self._cells: dict[int, Cells] = {}
        self._name_width = 12
        self._width = 0
        self._verify: str | None = None  # the verify stage's name: its column is shown
        self._score_label = "score"
        self._keys: list[str] = []  # the columns shown, in order
        self._title = ""
        self.follow = True

    def set_title(self, title: str) -> None:
        """The border title, with the follow state after it."""
        self._title = title
        self.border_title = title + (" · following" if self.follow else " · f: follow")

    def set_follow(self, follow: bool) -> None:
        self.follow = follow
        self.set_title(self._title)
        if follow:
            self.action_first_row()

    def watch_cursor_coordinate(self, old: Coordinate, new: Coordinate) -> None:
        super().watch_cursor_coordinate(old, new)
        if self.follow and new.row != 0 and self.row_count:  # the user moved away
            self.set_follow(False)

    def action_first_row(self) -> None:
        if self.row_count:
            self.move_cursor(row=0, animate=False)
        self.scroll_to(y=0, animate=False)

    def action_last_row(self) -> None:
        if self.row_count:
            self.move_cursor(row=self.row_count - 1, animate=False)

    def on_mount(self) -> None:
        self._add_columns()

    def _add_columns(self) -> None:
        shown = columns_for(self._width, self._verify is not None)
        self._name_width = max(MIN_NAME, min(MAX_NAME, name_width(shown, self._width)))
        self._keys = [c.key for c in shown]
        labels = {"score": self._score_label, "verify": self._verify or ""}
        for c in shown:
            self.add_column(
                labels.get(c.key, c.label), key=c.key, width=c.width or self._name_width
            )

    def _rebuild(self) -> None:
        selected = self.selected_id
        self.clear(columns=True)
        self._add_columns()
        self._fill(self._order, selected)

    def on_resize(self, event: events.Resize) -> None:
        if event.size.width == self._width:
            return
        old = (self._keys, self._name_width)
        self._width = event.size.width
        shown = columns_for(self._width, self._verify is not None)
        width = max(MIN_NAME, min(MAX_NAME, name_width(shown, self._width)))
        if old != ([c.key for c in shown], width):
            self._rebuild()

    def set_stages(self, score: str, verify: str | None) -> None:
        """Label the score column by the score stage and show the verify stage's column
        (only where the task has one)."""
        score = score if verify is not None else "score"
        if (score, verify) != (self._score_label, self._verify):
            self._score_label, self._verify = score, verify
            self._rebuild()

    @property
    def columns_shown(self) -> list[str]:
        return list(self._keys)

    def _cells_of(self, node_id: int) -> list[Text]:
        cells = self._cells[node_id]
        return [cells.get(key, Text("")) for key in self._keys]

    @property
    def selected_id(self) -> int | None:
        if not self.row_count:
            return None
        try:
            row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        except Exception:  # noqa: BLE001 - no valid cursor (table being rebuilt)
            return None
        return int(row_key.value) if row_key.value is not None else None

    @property
    def order(self) -> list[int]:
        return list(self._order)

    def apply(self, order: list[int], cells: dict[int, Cells], top: bool = False) -> None:
        """Show ``order`` (the window) with fresh ``cells`` for the rows that changed.

        The cursor goes to the first row when following or when ``top`` (a new sort or
        filter); otherwise it stays on the node it was on.
        """
        top = top or self.follow
        selected = None if top else self.selected_id
        self._cells.update(cells)
        if order == self._order:
            self._update(cells)
        else:
            self._reorder(order, cells, selected)
        if top:
            self.action_first_row()

    def _reorder(self, order: list[int], cells: dict[int, Cells], selected: int | None) -> None:
        old, new = set(self._order), set(order)
        gone = old - new
        if not self._order or len(gone) > 64:
            self._fill(order, selected)
        else:
            for node_id in gone:
                self.remove_row(str(node_id))
            for node_id in order:
                if node_id not in old:
                    self.add_row(*self._cells_of(node_id), key=str(node_id))
            self._update({k: v for k, v in cells.items() if k in old and k in new})
            index = {node_id: i for i, node_id in enumerate(order)}
            self.sort("id", key=lambda cell: index.get(_node_id(cell), len(index)))
            self._order = list(order)
            self._follow(selected)
        for node_id in gone:
            self._cells.pop(node_id, None)

    def _fill(self, order: list[int], selected: int | None) -> None:
        self.clear()
        for node_id in order:
            self.add_row(*self._cells_of(node_id), key=str(node_id))
        self._order = list(order)
        self._follow(selected)

    def _update(self, cells: dict[int, Cells]) -> None:
        for node_id, row in cells.items():
            if node_id not in self._cells or str(node_id) not in self.rows:
                continue
            for key in self._keys:
                self.update_cell(str(node_id), key, row.get(key, Text("")))

    def _follow(self, selected: int | None) -> None:
        """Keep the cursor on the node it was on (if it is still in the window)."""
        if selected is None or str(selected) not in self.rows:
            return
        index = self.get_row_index(str(selected))
        if index != self.cursor_row:
            self.move_cursor(row=index, animate=False)
