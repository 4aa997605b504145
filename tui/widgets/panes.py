"""The panes of the main screen, and the bar that switches them on narrow terminals.

Four panes, each one key away (``1``-``4``; ``tab`` / ``shift+tab`` go round them in this
order): the population table, the selected node's report, the cognition pane, and the
score curve with the event log. At 140 columns and more every pane is on screen at once
(the report over the cognition pane, right of the table). Below that the table keeps the
top of the screen and one other pane the bottom: the bar between them names the panes and
their keys, the one shown highlighted, the focused one in the accent colour; a click on a
name shows that pane too.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.style import Style
from rich.text import Text
from textual.widget import Widget

POPULATION, REPORT, COGNITION, EVENTS = "population", "report", "cognition", "events"
PANES = (POPULATION, REPORT, COGNITION, EVENTS)  # keys 1-4, and the order of tab
BOTTOM = (REPORT, COGNITION, EVENTS)  # the panes that share the bottom of a narrow screen
KEYS = {name: str(i) for i, name in enumerate(PANES, 1)}
WIDE = 140  # columns from which every pane is on screen at once


@dataclass(frozen=True)
class BarState:
    shown: str = REPORT  # the bottom pane on a narrow screen
    focused: str | None = POPULATION
    pending: int = 0  # cognition proposals awaiting a decision


def label(name: str, pending: int = 0) -> str:
    """A pane's name as its title and the bar show it: ``3 cognition (2)``."""
    text = f"{KEYS[name]} {name}"
    return text + (f" ({pending})" if name == COGNITION and pending else "")


def bar_text(state: BarState) -> Text:
    """The bar: every pane with its key, the bottom one shown reversed, the focused one in
    the accent colour (the ANSI cyan: every theme, the 16-colour one included, shows it)."""
    out = Text(no_wrap=True, overflow="ellipsis")
    for name in PANES:
        style = Style(meta={"@click": f"app.pane('{name}')"})
        if name == state.shown:
            style += Style(bold=True, reverse=True)
        if name == state.focused:
            style += Style(bold=True, color="cyan", underline=name != state.shown)
        out.append(" ")
        out.append(f" {label(name, state.pending)} ", style=style)
    out.append("  (tab / shift+tab)", style="dim")
    return out


class PaneBar(Widget):
    """One line: ``1 population  2 report  3 cognition (2)  4 events`` (narrow only)."""

    DEFAULT_CSS = "PaneBar { height: 1; }"

    def __init__(self, **kwargs) -> None:  # noqa: ANN003 - Widget's keyword arguments
        super().__init__(**kwargs)
        self.state = BarState()

    def show(self, state: BarState) -> None:
        if state != self.state:
            self.state = state
            self.refresh()

    def render(self) -> Text:
        return bar_text(self.state)
