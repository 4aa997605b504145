"""Node details over the main screen: the full report, the code, the diff against the parent.

Loading is done in a thread worker (code may be megabytes, a diff of two large programs
takes a while), and both are capped, so opening a node never freezes the screen.
"""

from __future__ import annotations

import difflib
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Markdown, RichLog, Static, TabbedContent, TabPane, TextArea

from engine.store.reader import RunReader
from tui import format as fmt
from tui.report import node_markdown

CODE_LIMIT = 2_000_000
DIFF_LINES = 20_000  # lines of each side compared
CODE_LINES = 20_000  # lines loaded into the code view (it indexes every line it holds)
DIFF_SHOWN = 2_000  # diff lines drawn (a RichLog renders every line it holds)
TABS = {"report": "tab-report", "code": "tab-code", "diff": "tab-diff"}


def diff_lines(old: str, new: str, old_name: str, new_name: str) -> list[Text]:
    """Unified diff, coloured, of at most ``DIFF_LINES`` lines per side."""
    a = fmt.clean(old, CODE_LIMIT).splitlines()[:DIFF_LINES]
    b = fmt.clean(new, CODE_LIMIT).splitlines()[:DIFF_LINES]
    out: list[Text] = []
    for line in difflib.unified_diff(a, b, old_name, new_name, lineterm="", n=3):
        if line.startswith(("+++", "---")):
            style = "bold"
        elif line.startswith("@@"):
            style = "cyan"
        elif line.startswith("+"):
            style = "green"
        elif line.startswith("-"):
            style = "red"
        else:
            style = ""
        out.append(Text(line, style=style))
        if len(out) >= DIFF_SHOWN:
            out.append(Text(f"… diff cut at {DIFF_SHOWN} lines", style="yellow"))
            break
    return out or [Text("(identical to the parent)", style="dim")]


class NodeDetails(ModalScreen[None]):
    """Report, code and diff of one node; ``escape`` goes back."""

    BINDINGS = [
        Binding("escape,q", "close", "back"),
        Binding("m", "tab('report')", "report"),
        Binding("c", "tab('code')", "code"),
        Binding("d", "tab('diff')", "diff"),
    ]

    def __init__(self, reader: RunReader, node_id: int, tab: str, maximize: bool) -> None:
        super().__init__()
        self.reader = reader
        self.node_id = node_id
        self.first_tab = tab
        self.maximize = maximize

    def compose(self) -> ComposeResult:
        with TabbedContent(initial=TABS.get(self.first_tab, "tab-report"), id="details"):
            with TabPane("Report (m)", id="tab-report"), VerticalScroll():
                yield Markdown(f"Loading node #{self.node_id}…", id="details-md")
            with TabPane("Code (c)", id="tab-code"):
                yield Static("", id="code-title")
                yield TextArea(
                    "", read_only=True, soft_wrap=False, show_line_numbers=True, id="code"
                )
            with TabPane("Diff vs parent (d)", id="tab-diff"):
                yield RichLog(wrap=False, markup=False, max_lines=DIFF_SHOWN + 1, id="diff")
        yield Footer()

    def on_mount(self) -> None:
        self.border_title = f"node #{self.node_id}"
        self._load()

    def action_close(self) -> None:
        self.dismiss(None)

    def action_tab(self, name: str) -> None:
        self.query_one(TabbedContent).active = TABS[name]

    @work(thread=True, exclusive=True)
    def _load(self) -> None:
        try:
            node = self.reader.node(self.node_id)
            parent_id = node.get("parent_id") if node else None
            parent = self.reader.node(parent_id) if isinstance(parent_id, int) else None
        except Exception as exc:  # noqa: BLE001 - show any read problem, never crash
            self.app.call_from_thread(self._failed, f"could not read node: {exc}")
            return
        parent_score = parent.get("score") if parent else None
        report = node_markdown(node, parent_score, self.maximize, limit=100_000)
        code = fmt.clean((node or {}).get("code") or "", CODE_LIMIT)
        if parent is None:
            diff = [Text("This node has no parent (the initial program).", style="dim")]
        else:
            diff = diff_lines(
                parent.get("code") or "",
                (node or {}).get("code") or "",
                f"#{parent_id} (parent)",
                f"#{self.node_id}",
            )
        self.app.call_from_thread(self._show, node, report, code, diff)

    def _failed(self, message: str) -> None:
        if not self.is_attached:
            return
        self.query_one("#details-md", Markdown).update(f"*{message}*")

    def _show(self, node: dict[str, Any] | None, report: str, code: str, diff: list[Text]) -> None:
        if not self.is_attached:  # closed before the load finished
            return
        self.query_one("#details-md", Markdown).update(report)
        lines = code.split("\n") if code else []
        name = fmt.one_line((node or {}).get("name") or "", 60)
        title = Text(f"#{self.node_id} {name} · {len(lines)} lines · {len(code):,} chars", "bold")
        if len(lines) > CODE_LINES:
            title.append(f" · first {CODE_LINES} lines shown", style="yellow")
            code = "\n".join(lines[:CODE_LINES])
        self.query_one("#code-title", Static).update(title)
        self.query_one("#code", TextArea).load_text(code)
        log = self.query_one("#diff", RichLog)
        log.clear()
        for line in diff:
            log.write(line)
