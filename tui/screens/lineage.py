"""The lineage screen (``l``): the selected node's ancestors, score changes and motivations.

Read in a thread worker (a deep chain is one query but may be long), shown newest first:
the selected node at the top, the initial program at the bottom. Each generation shows its
score, the change against its parent (green when it improved), and what it set out to try.
"""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from engine import direction
from engine.store.reader import RunReader
from tui import format as fmt
from tui.lineage import Lineage, read_lineage

MOTIVATION_CHARS = 1500  # of each ancestor's motivation (a chain may be a thousand long)


def lineage_text(lineage: Lineage, maximize: bool) -> Text:
    chain = lineage.chain
    if not chain:
        return Text("This node is not in the database.", style="dim")
    first = chain[0]
    out = Text(f"Lineage of #{first.id}: {len(chain) - 1} ancestors", style="bold")
    if lineage.truncated:
        out.append(f" (the nearest {len(chain) - 1} shown; the chain goes further)", "yellow")
    for gen in chain:
        out.append("\n\n")
        out.append(f"#{gen.id}", style="bold")
        out.append(f"  step {gen.step}  ")
        out.append(fmt.one_line(gen.name, 60) or "-")
        out.append("  score ")
        out.append(fmt.score(gen.score), style="bold green" if gen.score is not None else "")
        if gen.delta is not None:
            out.append("  Δ ")
            out.append_text(fmt.delta(gen.delta, direction.improved(gen.delta, maximize)))
        out.append("  ")
        out.append_text(fmt.status(gen.status))
        motivation = fmt.clean(gen.motivation, MOTIVATION_CHARS).strip()
        if gen.step == 0 and not motivation:
            motivation = "(the initial program)"
        for line in (motivation or "(no motivation recorded)").splitlines():
            out.append(f"\n    {line}", style="" if motivation else "dim")
    return out


class LineageScreen(ModalScreen[None]):
    """Ancestors of one node; ``escape`` (or ``l``) goes back."""

    BINDINGS = [Binding("escape,q,l", "close", "back")]

    def __init__(self, reader: RunReader, node_id: int, maximize: bool) -> None:
        super().__init__()
        self.reader, self.node_id, self.maximize = reader, node_id, maximize

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="lineage"):
            yield Static(f"Loading the lineage of #{self.node_id}…", id="lineage-text")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#lineage").border_title = f"lineage of #{self.node_id}"
        self._load()

    def action_close(self) -> None:
        self.dismiss(None)

    @work(thread=True, exclusive=True)
    def _load(self) -> None:
        try:
            text = lineage_text(read_lineage(self.reader, self.node_id), self.maximize)
        except Exception as exc:  # noqa: BLE001 - show any read problem, never crash
            text = Text(f"could not read the lineage: {exc}", style="red")
        self.app.call_from_thread(self._show, text)

    def _show(self, text: Text) -> None:
        if self.is_attached:  # not closed before the read finished
            self.query_one("#lineage-text", Static).update(text)
