"""The keys that steer the engine or decide on knowledge: pause, prune, approve, reject, quit.

Commands go to the engine as rows of ``commands``; a thread worker then watches the row until
the engine marks it handled (or rejected) and shows its ``result``, so every key gives
visible feedback. Nothing is sent when no engine holds the run: it would wait there until
some later engine, days from now, obeyed it by surprise.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from textual import work
from textual.widgets import TabbedContent

from engine.store.schema import COMMAND_HANDLED, COMMAND_NEW
from tui import format as fmt
from tui.model import FINISHED
from tui.screens.confirm import Confirm, QuitChoice
from tui.screens.proposal import DecideProposal
from tui.steer import SteerError, decide_item, send_command
from tui.widgets.cognition import CognitionPane
from tui.widgets.population import PopulationTable

if TYPE_CHECKING:
    from tui.app import EvolveApp

COMMAND_WAIT_S = 15.0
STOP_WAIT_S = 5.0


class SteeringActions:
    """Mixin of :class:`tui.app.EvolveApp`: the actions behind p, x, a, r and q."""

    def _selected_node(self: EvolveApp) -> int | None:
        node_id = self.main.query_one(PopulationTable).selected_id
        if node_id is None:
            self.notify("No node selected.", severity="warning")
        return node_id

    def _engine_reachable(self: EvolveApp) -> bool:
        """False (with a message) when no engine holds this run: commands would wait forever."""
        if not self.engine.alive:
            self.notify(
                "No engine is running on this run: nothing sent. "
                "Resume it with 'asi-evolve run TASK --run-dir RUN_DIR'.",
                severity="warning",
                timeout=6,
            )
            return False
        return True

    def action_pause(self: EvolveApp) -> None:
        if not self._engine_reachable():
            return
        self._send("resume" if self.engine.state == "paused" else "pause")

    def action_resume(self: EvolveApp) -> None:
        if self._engine_reachable():
            self._send("resume")

    def _finished(self: EvolveApp, node_id: int) -> bool:
        """True (with a message) when the node has finished: there is nothing left to stop."""
        row = self.poller.pop.rows.get(node_id)
        if row is None or row.status not in FINISHED:
            return False
        self.notify(
            f"Node #{node_id} has already finished ({row.status}): nothing to prune, "
            "nothing sent. Prune stops a pending or running candidate.",
            severity="warning",
            timeout=5,
        )
        return True

    def action_prune(self: EvolveApp) -> None:
        node_id = self._selected_node()
        if node_id is None or self._finished(node_id) or not self._engine_reachable():
            return
        row = self.poller.pop.rows.get(node_id)
        about = f"Prune node #{node_id}"
        if row is not None:  # the node as the table shows it: no doubt about which one
            name = fmt.one_line(row.name, 40) or "(unnamed)"
            parent = f"#{row.parent_id}" if row.parent_id is not None else "-"
            about += f" · step {row.step} · {name} · {row.status} · parent {parent}"

        def answered(yes: bool | None) -> None:
            if not yes:
                self.notify(f"Prune of #{node_id} cancelled.", timeout=2)
            elif not self._finished(node_id):  # it may have finished during the question
                self._send("prune", str(node_id))

        self.push_screen(
            Confirm(
                f"{about}?",
                "Its evaluation is stopped and it is never chosen as a parent; "
                "it stays in the database.",
                yes="Prune",
            ),
            answered,
        )

    def _send(self: EvolveApp, kind: str, arg: str = "") -> None:
        try:
            command_id = send_command(self.run_dir, kind, arg)
        except SteerError as exc:
            self.notify(str(exc), severity="error")
            return
        what = f"{kind} {arg}".strip()
        note = "" if self.engine.live else " (the engine is not responding)"
        self.notify(f"Sent '{what}' (command #{command_id}); waiting for the engine{note}…")
        self._await_command(command_id, what)

    @work(thread=True, group="commands")
    def _await_command(self: EvolveApp, command_id: int, what: str) -> None:
        deadline = time.monotonic() + COMMAND_WAIT_S
        while time.monotonic() < deadline and not self._closing:
            try:
                found = self.reader.command(command_id)
            except Exception:  # noqa: BLE001 - transient read problem: try again
                found = None
            if found is not None and found[0] != COMMAND_NEW:
                status, result = found
                severity = "information" if status == COMMAND_HANDLED else "error"
                self._from_thread(
                    self.notify, f"Engine {status} '{what}': {result}", severity=severity
                )
                self.refresh_now()
                return
            time.sleep(0.1)
        self._from_thread(
            self.notify,
            f"The engine has not handled '{what}' yet (command #{command_id}).",
            severity="warning",
        )

    def action_decide(self: EvolveApp, decision: str) -> None:
        if not self.has_cognition:
            self.notify("This run has no cognition base.", severity="warning")
            return
        proposal = self.main.query_one(CognitionPane).selected_proposal
        if proposal is None:
            self.notify("No pending cognition proposal.", severity="warning")
            return
        self.main.query_one(TabbedContent).active = "tab-cognition"

        def answered(yes: bool | None) -> None:
            if yes:
                self._decide(proposal.id, decision, proposal.title)
            else:
                self.notify(f"Proposal #{proposal.id} left pending.", timeout=2)

        # Never decide on a proposal the user has not read: the full text, then y / n.
        self.push_screen(DecideProposal(proposal, decision), answered)

    @work(thread=True, group="decide")
    def _decide(self: EvolveApp, item_id: int, decision: str, title: str) -> None:
        try:
            result = decide_item(self.run_dir, item_id, decision)
        except SteerError as exc:
            self._from_thread(self.notify, str(exc), severity="error")
            return
        self._from_thread(self.notify, f"{result}: {title[:60]}")
        self.poller.forget_detail()
        self.refresh_now()

    def action_quit_app(self: EvolveApp) -> None:
        if not self.ask_stop_on_quit or not self.engine.alive:
            self.exit(None)
            return

        def chosen(choice: str | None) -> None:
            if choice == "stop":
                self._stop_and_exit()
            elif choice == "leave":
                self.exit("leave")

        self.push_screen(QuitChoice(), chosen)

    @work(thread=True, group="commands")
    def _stop_and_exit(self: EvolveApp) -> None:
        if engine_alive := self.engine.alive:
            try:
                command_id = send_command(self.run_dir, "stop")
            except SteerError as exc:
                self._from_thread(self.notify, str(exc), severity="error")
                return
            deadline = time.monotonic() + STOP_WAIT_S
            while time.monotonic() < deadline:
                found = self.reader.command(command_id)
                if found is not None and found[0] != COMMAND_NEW:
                    break
                time.sleep(0.1)
        self._from_thread(self.exit, "stop" if engine_alive else None)
