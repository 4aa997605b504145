"""The cognition pane: what the selected node was shown, and proposals awaiting a decision.

The retrieved list is the provenance of a candidate (which items, with which similarity).
The pending list is where ``a`` / ``r`` act: on its cursor row, whether or not it has focus,
or, when some are marked (``space`` toggles the cursor row's mark, ``✓``), on every marked
proposal at once, after one confirmation.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from tui import format as fmt
from tui.knowledge import Proposal, Retrieved


def retrieved_text(node_id: int | None, items: list[Retrieved] | None) -> Text:
    if items is None:
        return Text("This run has no cognition base.", style="dim")
    if node_id is None:
        return Text("No node selected.", style="dim")
    if not items:
        return Text(f"Nothing was retrieved for #{node_id}.", style="dim")
    out = Text(f"Retrieved for #{node_id}:\n", style="bold")
    for item in items:
        score = "  -  " if item.score is None else f"{item.score:.3f}"
        out.append(f"{score} ", style="green")
        out.append(f"#{item.item_id} ", style="dim")
        out.append(fmt.one_line(item.title, 120) or "(untitled)")
        if item.status and item.status != "active":
            out.append(f" [{item.status}]", style="yellow")
        out.append("\n")
    out.rstrip()
    return out


MARK = "✓"


class CognitionPane(Vertical):
    """Retrieved items of the selected node over the pending proposals."""

    BINDINGS = [Binding("space", "toggle_mark", "mark", show=False)]  # the title says so

    def __init__(self, **kwargs) -> None:  # noqa: ANN003 - container keyword arguments
        super().__init__(**kwargs)
        self._pending: list[Proposal] = []
        self.marked: set[int] = set()  # ids of the proposals marked for one decision

    def compose(self) -> ComposeResult:
        yield Static(retrieved_text(None, None), id="retrieved")
        yield Static("Pending proposals", id="pending-title")
        table: DataTable = DataTable(cursor_type="row", id="pending")
        yield table
        yield Static("", id="proposal")

    def on_mount(self) -> None:
        table = self.query_one("#pending", DataTable)
        table.add_column(" ", key="mark", width=1)  # MARK on the marked proposals
        table.add_column("id", key="id", width=5)
        table.add_column("from", key="from", width=8)
        table.add_column("title", key="title", width=80)  # last: the pane's edge crops it

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_proposal()

    def _show_proposal(self) -> None:
        """The highlighted proposal in full: what a person approves or rejects."""
        p = self.selected_proposal
        text = Text()
        if p is not None:
            text.append(fmt.one_line(p.title, 300) + "\n", style="bold")
            text.append(fmt.clean(p.content, 2000).strip())
            if p.duplicate_of is not None:
                text.append(f"\nnear-duplicate of item #{p.duplicate_of}", style="yellow")
        self.query_one("#proposal", Static).update(text)

    def show_retrieved(self, node_id: int | None, items: list[Retrieved] | None) -> None:
        self.query_one("#retrieved", Static).update(retrieved_text(node_id, items))

    def show_pending(self, pending: list[Proposal] | None) -> None:
        table = self.query_one("#pending", DataTable)
        count = None if pending is None else len(pending)
        pending = pending or []
        self.marked &= {p.id for p in pending}  # decided elsewhere: no longer marked
        self._title(count)
        if pending == self._pending:
            return
        keep = self.selected_proposal
        self._pending = list(pending)
        table.clear()
        for p in pending:
            origin = f"#{p.node_id}" if p.node_id is not None else p.origin or "-"
            title_text = Text(fmt.one_line(p.title, 200) or "(untitled)")
            if p.duplicate_of is not None:
                title_text.append(f" (dup of #{p.duplicate_of})", style="yellow")
            mark = _mark(p.id in self.marked)
            table.add_row(mark, Text(str(p.id)), Text(origin), title_text, key=str(p.id))
        if keep is not None and str(keep.id) in table.rows:
            table.move_cursor(row=table.get_row_index(str(keep.id)), animate=False)
        self._show_proposal()

    def _title(self, count: int | None) -> None:
        title = self.query_one("#pending-title", Static)
        if count is None:
            title.update(Text("No cognition base: no proposals.", style="dim"))
        elif not count:
            title.update(Text("No pending proposals.", style="dim"))
        elif self.marked:
            marked = f"{len(self.marked)} marked"
            title.update(
                Text(f"Pending proposals ({count}, {marked}): a / r decide on the marked", "bold")
            )
        else:
            title.update(
                Text(f"Pending proposals ({count}): a approve · r reject · space mark", "bold")
            )

    def action_toggle_mark(self) -> None:
        """Mark (or unmark) the proposal under the cursor, and move to the next one."""
        p = self.selected_proposal
        if p is None:
            return
        self.marked ^= {p.id}
        table = self.query_one("#pending", DataTable)
        table.update_cell(str(p.id), "mark", _mark(p.id in self.marked))
        self._title(len(self._pending))
        if table.cursor_row < table.row_count - 1:
            table.move_cursor(row=table.cursor_row + 1, animate=False)

    def clear_marks(self) -> None:
        table = self.query_one("#pending", DataTable)
        for item_id in self.marked:
            if str(item_id) in table.rows:
                table.update_cell(str(item_id), "mark", _mark(False))
        self.marked = set()
        self._title(len(self._pending) if self._pending else 0)

    @property
    def marked_proposals(self) -> list[Proposal]:
        """The marked proposals, in the table's order."""
        return [p for p in self._pending if p.id in self.marked]

    @property
    def selected_proposal(self) -> Proposal | None:
        table = self.query_one("#pending", DataTable)
        if not self._pending or not table.row_count:
            return None
        row = min(max(table.cursor_row, 0), len(self._pending) - 1)
        try:
            key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        except Exception:  # noqa: BLE001 - cursor out of range while the table is rebuilt
            return self._pending[row]
        wanted = int(key.value) if key.value is not None else None
        return next((p for p in self._pending if p.id == wanted), self._pending[row])


def _mark(marked: bool) -> Text:
    return Text(MARK, style="bold green") if marked else Text(" ")
