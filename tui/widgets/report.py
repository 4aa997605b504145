"""The analyzer report pane: the selected node's outcome, motivation and analysis."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Markdown

from tui.report import node_markdown


class ReportPane(VerticalScroll):
    """Markdown report of the selected node (``enter`` opens the full details)."""

    def __init__(self, **kwargs) -> None:  # noqa: ANN003 - container keyword arguments
        super().__init__(**kwargs)
        self._text = ""

    def compose(self) -> ComposeResult:
        yield Markdown("*No node selected.*", id="report-md")

    def show(self, node: dict[str, Any] | None, parent_score: float | None, maximize: bool) -> None:
        text = node_markdown(node, parent_score, maximize)
        if text == self._text:
            return
        same_node = node is not None and self._text.startswith(f"**#{node.get('id')}**")
        self._text = text
        self.query_one(Markdown).update(text)
        if not same_node:
            self.scroll_home(animate=False)
