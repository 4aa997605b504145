"""The event log: what the engine did, newest at the bottom, coloured by kind."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import RichLog

from tui import format as fmt

MAX_LINES = 1000


class EventLog(RichLog):
    """The engine's recent events (started, failed with reason, timeout, resumed...)."""

    def __init__(self, **kwargs) -> None:  # noqa: ANN003 - RichLog's keyword arguments
        super().__init__(max_lines=MAX_LINES, wrap=True, markup=False, **kwargs)

    def add(self, events: list[tuple[int, float, str, str]]) -> None:
        for _id, ts, kind, message in events:
            line = Text(no_wrap=False)
            line.append(fmt.clock(ts), style="dim")
            line.append(" ")
            line.append(fmt.one_line(message, 2000), style=fmt.event_style(kind, message))
            self.write(line)

    def on_resize(self) -> None:
        """Keep the newest events in view when the layout settles or the terminal changes."""
        self.scroll_end(animate=False, immediate=True)
