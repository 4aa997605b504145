"""The population table: one row per node of the current window, updated in place.

The poller sends the window's order and the cells of the rows that changed (or are new to
the window, or running: their clock ticks). When the order is unchanged only those cells
are rewritten; otherwise rows leave and enter and the table is re-sorted by the window
order, and the cursor stays on the node it was on.

Following: while ``follow`` is on the cursor sits on the first row, so the screen follows
the action (the newest node when sorted by step, the best by score). It is on at start;
moving the cursor off the first row turns it off (a row under study must not be pulled
away by the next new node), ``f`` turns it on again. A sort or filter change shows the top.
"""

from __future__ import annotations

from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.coordinate import Coordinate
from textual.widgets import DataTable

from engine.store.reader import NodeRow
from tui import format as fmt
from tui.model import Population

# (key, label, width); the name column takes what is left.
COLUMNS: list[tuple[str, str, int]] = [
    ("id", "id", 6),
    ("step", "step", 5),
    ("name", "name", 0),
    ("parent", "parent", 6),
    ("score", "score", 9),
    ("delta", "Δ", 8),
    ("status", "status", 7),
    ("runtime", "time", 6),
    ("island", "isl", 3),
]
PADDING = 1
MIN_NAME, MAX_NAME = 10, 48
_FIXED = sum(w for _, _, w in COLUMNS) + 2 * PADDING * len(COLUMNS) + 1  # +1: scrollbar

Cells = tuple[Text, ...]


def row_cells(row: NodeRow, pop: Population, now: float) -> Cells:
    """The table cells of one node."""
    d = pop.delta(row)
    best = pop.best is not None and pop.best.id == row.id
    if row.status == "running" and row.started_at:
        runtime = Text(fmt.duration(max(0.0, now - row.started_at)) + "…", style="cyan")
    else:
        runtime = Text(fmt.duration(row.runtime))
    name = fmt.one_line(row.name, MAX_NAME) or ("…" if row.status == "pending" else "-")
    return (
        Text(f"#{row.id}", style="bold" if best else ""),
        Text(str(row.step)),
        Text(name),
        Text(f"#{row.parent_id}" if row.parent_id is not None else "-"),
        Text(fmt.score(row.score) + ("*" if best else ""), style="bold green" if best else ""),
        fmt.delta(d, d is not None and pop.improved(d)),
        fmt.status(row.status),
        runtime,
        Text("-" if row.island is None else str(row.island)),
    )


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
        self._title = ""
        self.follow = True

    def set_title(self, title: str) -> None:
        """The border title, with the follow state after it."""
        self._title = title
        self.border_title = title + (" · following" if self.follow else "")

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
        for key, label, width in COLUMNS:
            self.add_column(label, key=key, width=width or self._name_width)

    def on_resize(self, event: events.Resize) -> None:
        width = max(MIN_NAME, min(MAX_NAME, event.size.width - _FIXED))
        if width != self._name_width:
            self._name_width = width
            selected = self.selected_id
            self.clear(columns=True)
            self._add_columns()
            self._fill(self._order, selected)

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
                    self.add_row(*self._cells[node_id], key=str(node_id))
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
            self.add_row(*self._cells[node_id], key=str(node_id))
        self._order = list(order)
        self._follow(selected)

    def _update(self, cells: dict[int, Cells]) -> None:
        for node_id, row in cells.items():
            if node_id not in self._cells or str(node_id) not in self.rows:
                continue
            for (key, _, _), value in zip(COLUMNS, row, strict=True):
                self.update_cell(str(node_id), key, value)

    def _follow(self, selected: int | None) -> None:
        """Keep the cursor on the node it was on (if it is still in the window)."""
        if selected is None or str(selected) not in self.rows:
            return
        index = self.get_row_index(str(selected))
        if index != self.cursor_row:
            self.move_cursor(row=index, animate=False)
