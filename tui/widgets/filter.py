"""The ``/`` filter line under the table: live filtering, ``enter`` keeps it, ``esc`` clears it.

It is hidden until ``/`` opens it; an applied filter outlives the box (the table's title
shows it), and ``esc`` on the main screen clears it too, so a filter never hides nodes
without a way back in one key.
"""

from __future__ import annotations

from textual.binding import Binding
from textual.message import Message
from textual.widgets import Input

FILTER_HINT = "filter: part of a name, a status, #id or island:N (enter: keep, esc: clear)"


class FilterBox(Input):
    """The filter input; ``escape`` empties it and says so (the app closes the box)."""

    BINDINGS = [Binding("escape", "cancel", "clear filter")]

    class Cancelled(Message):
        pass

    def action_cancel(self) -> None:
        self.value = ""
        self.post_message(self.Cancelled())
