"""Approve or reject one cognition proposal, after reading all of it.

An approved item is retrieved into every later prompt of the run, so the decision is made
on the full text (title, origin, content, near-duplicate warning), never on a truncated
table row, and every press of ``a`` / ``r`` asks once more: a stray key decides nothing.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Static

from tui import format as fmt
from tui.knowledge import Proposal
from tui.screens.confirm import Confirm

CONTENT_LIMIT = 50_000  # characters of a proposal shown (more is noted, never silently cut)


def proposal_text(p: Proposal) -> Text:
    """The whole proposal as the researcher would later see it."""
    origin = f"node #{p.node_id}" if p.node_id is not None else p.origin or "unknown origin"
    out = Text(fmt.one_line(p.title, 500) or "(untitled)", style="bold")
    out.append(f"\nproposal #{p.id} · from {origin}", style="dim")
    if p.duplicate_of is not None:
        out.append(f"\nnear-duplicate of item #{p.duplicate_of}", style="yellow")
    out.append("\n\n")
    out.append(fmt.clean(p.content, CONTENT_LIMIT).strip() or "(no content)")
    return out


class DecideProposal(Confirm):
    """The full proposal and a yes/no: ``y`` decides, ``n`` / ``escape`` leave it pending."""

    def __init__(self, proposal: Proposal, decision: str) -> None:
        verb = "Approve" if decision == "approve" else "Reject"
        effect = (
            "It becomes retrievable: later candidates of this run are shown it."
            if decision == "approve"
            else "It is never retrieved; it stays in the database as rejected."
        )
        super().__init__(f"{verb} proposal #{proposal.id}?", effect, verb)
        self.proposal, self.decision = proposal, decision

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog proposal"):
            yield Static(self.question, classes="question", markup=False)
            with VerticalScroll(classes="proposal-text"):
                yield Static(proposal_text(self.proposal), id="proposal-full")
            yield Static(self.detail, classes="detail", markup=False)
            with Horizontal(classes="buttons"):
                variant = "success" if self.decision == "approve" else "error"
                yield Button(f"{self.yes} (y)", variant=variant, id="yes")
                yield Button("Cancel (n)", variant="primary", id="no")
