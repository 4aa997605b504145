"""The keys that steer the engine or decide on knowledge: pause, prune, approve, reject, quit.

Commands go to the engine as rows of ``commands``; a thread worker then watches the row until
the engine marks it handled (or rejected) and shows its ``result``, so every key gives
visible feedback. Nothing is sent when no engine holds the run: it would wait there until
some later engine, days from now, obeyed it by surprise.

``Steering`` is an object the app owns (not a mixin): what it needs of the app is spelled out
in ``Host``, so this module never imports the app that imports it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from textual.screen import Screen

from engine.store.reader import EngineState, RunReader
from engine.store.schema import COMMAND_HANDLED, COMMAND_NEW
from engine.store.steer import SteerError, decide_item, send_command
from tui import format as fmt
from tui.model import FINISHED
from tui.poller import Poller
from tui.screens.confirm import Confirm, QuitChoice
from tui.screens.proposal import DecideProposal
from tui.widgets.cognition import CognitionPane


class Host(Protocol):
    """What steering uses of the app (``tui.app.EvolveApp``)."""

    run_dir: Path
    reader: RunReader
    poller: Poller
    engine: EngineState
    has_cognition: bool
    ask_stop_on_quit: bool
    closing: bool

    @property
    def main(self) -> Screen: ...
    def notify(self, message: str, **kwargs: Any) -> None: ...
    def push_screen(self, screen: Any, callback: Callable[[Any], None]) -> Any: ...
    def exit(self, result: Any = None) -> None: ...
    def refresh_now(self) -> None: ...
    def selected_node(self) -> int | None: ...
    def show_pane(self, name: str, focus: bool = True) -> None: ...
    def from_thread(self, fn: Callable, *args: object, **kwargs: object) -> bool: ...
    def run_worker(self, work: Callable[[], None], **kwargs: Any) -> Any: ...


COMMAND_WAIT_S = 15.0
MARKED_LISTED = 12  # marked proposals the question lists by title
STOP_WAIT_S = 5.0


class Steering:
    """The actions behind p, x, a, r and q, for one app."""

    def __init__(self, app: Host) -> None:
        self.app = app

    def _engine_reachable(self) -> bool:
        """False (with a message) when no engine holds this run: commands would wait forever."""
        if not self.app.engine.alive:
            self.app.notify(
                "No engine is running on this run: nothing sent. "
                "Resume it with 'asi-evolve run TASK --run-dir RUN_DIR'.",
                severity="warning",
                timeout=6,
            )
            return False
        return True

    def pause(self) -> None:
        if not self._engine_reachable():
            return
        self._send("resume" if self.app.engine.state == "paused" else "pause")

    def resume(self) -> None:
        if self._engine_reachable():
            self._send("resume")

    def _finished(self, node_id: int) -> bool:
        """True (with a message) when the node has finished: there is nothing left to stop."""
        row = self.app.poller.pop.rows.get(node_id)
        if row is None or row.status not in FINISHED:
            return False
        self.app.notify(
            f"Node #{node_id} has already finished ({row.status}): nothing to prune, "
            "nothing sent. Prune stops a pending or running candidate.",
            severity="warning",
            timeout=5,
        )
        return True

    def prune(self) -> None:
        node_id = self.app.selected_node()
        if node_id is None or self._finished(node_id) or not self._engine_reachable():
            return
        row = self.app.poller.pop.rows.get(node_id)
        about = f"Prune node #{node_id}"
        if row is not None:  # the node as the table shows it: no doubt about which one
            name = fmt.one_line(row.name, 40) or "(unnamed)"
            parent = f"#{row.parent_id}" if row.parent_id is not None else "-"
            about += f" · step {row.step} · {name} · {row.status} · parent {parent}"

        def answered(yes: bool | None) -> None:
            if not yes:
                self.app.notify(f"Prune of #{node_id} cancelled.", timeout=2)
            elif not self._finished(node_id):  # it may have finished during the question
                self._send("prune", str(node_id))

        self.app.push_screen(
            Confirm(
                f"{about}?",
                "Its evaluation is stopped and it is never chosen as a parent; "
                "it stays in the database.",
                yes="Prune",
            ),
            answered,
        )

    def _send(self, kind: str, arg: str = "") -> None:
        try:
            command_id = send_command(self.app.run_dir, kind, arg)
        except SteerError as exc:
            self.app.notify(str(exc), severity="error")
            return
        what = f"{kind} {arg}".strip()
        note = "" if self.app.engine.live else " (the engine is not responding)"
        self.app.notify(f"Sent '{what}' (command #{command_id}); waiting for the engine{note}…")
        self._await_command(command_id, what)

    def _await_command(self, command_id: int, what: str) -> None:
        self.app.run_worker(
            lambda: self._watch_command(command_id, what), thread=True, group="commands"
        )

    def _watch_command(self, command_id: int, what: str) -> None:
        deadline = time.monotonic() + COMMAND_WAIT_S
        while time.monotonic() < deadline and not self.app.closing:
            try:
                found = self.app.reader.command(command_id)
            except Exception:  # noqa: BLE001 - transient read problem: try again
                found = None
            if found is not None and found[0] != COMMAND_NEW:
                status, result = found
                severity = "information" if status == COMMAND_HANDLED else "error"
                self.app.from_thread(
                    self.app.notify, f"Engine {status} '{what}': {result}", severity=severity
                )
                self.app.refresh_now()
                return
            time.sleep(0.1)
        self.app.from_thread(
            self.app.notify,
            f"The engine has not handled '{what}' yet (command #{command_id}).",
            severity="warning",
        )

    def decide(self, decision: str) -> None:
        if not self.app.has_cognition:
            self.app.notify("This run has no cognition base.", severity="warning")
            return
        pane = self.app.main.query_one(CognitionPane)
        if pane.marked_proposals:
            self.decide_marked(decision)
            return
        proposal = pane.selected_proposal
        if proposal is None:
            self.app.notify("No pending cognition proposal.", severity="warning")
            return
        self.app.show_pane("cognition", focus=False)

        def answered(yes: bool | None) -> None:
            if yes:
                self._decide(proposal.id, decision, proposal.title)
            else:
                self.app.notify(f"Proposal #{proposal.id} left pending.", timeout=2)

        # Never decide on a proposal the user has not read: the full text, then y / n.
        self.app.push_screen(DecideProposal(proposal, decision), answered)

    def decide_marked(self, decision: str) -> None:
        """One question for every marked proposal (each was read in the pane when marked),
        then each decision written as a single one is."""
        pane = self.app.main.query_one(CognitionPane)
        marked = pane.marked_proposals
        self.app.show_pane("cognition", focus=False)
        verb = "Approve" if decision == "approve" else "Reject"
        lines = [f"#{p.id} {fmt.one_line(p.title, 60) or '(untitled)'}" for p in marked]
        if len(lines) > MARKED_LISTED:
            lines[MARKED_LISTED:] = [f"… and {len(lines) - MARKED_LISTED} more"]
        effect = (
            "They become retrievable: later candidates of this run are shown them."
            if decision == "approve"
            else "They are never retrieved; they stay in the database as rejected."
        )
        question = f"{verb} the {len(marked)} marked proposals?"

        def answered(yes: bool | None) -> None:
            if not yes:
                self.app.notify(f"{len(marked)} marked proposals left pending.", timeout=2)
                return
            pane.clear_marks()
            items = [(p.id, p.title) for p in marked]
            self.app.run_worker(
                lambda: self._write_decisions(items, decision), thread=True, group="decide"
            )

        self.app.push_screen(Confirm(question, "\n".join([*lines, "", effect]), verb), answered)

    def _write_decisions(self, items: list[tuple[int, str]], decision: str) -> None:
        done, failed = 0, []
        for item_id, _title in items:
            try:
                result = decide_item(self.app.run_dir, item_id, decision)
            except SteerError as exc:
                failed.append(str(exc))
                continue
            done += "already" not in result
        word = "approved (now retrievable)" if decision == "approve" else "rejected"
        note = f"{done} of {len(items)} proposals {word}"
        if failed:
            note += f"; {len(failed)} failed: {failed[0]}"
        self.app.from_thread(self.app.notify, note, severity="error" if failed else "information")
        self.app.poller.forget_detail()
        self.app.refresh_now()

    def _decide(self, item_id: int, decision: str, title: str) -> None:
        self.app.run_worker(
            lambda: self._write_decision(item_id, decision, title), thread=True, group="decide"
        )

    def _write_decision(self, item_id: int, decision: str, title: str) -> None:
        try:
            result = decide_item(self.app.run_dir, item_id, decision)
        except SteerError as exc:
            self.app.from_thread(self.app.notify, str(exc), severity="error")
            return
        self.app.from_thread(self.app.notify, f"{result}: {title[:60]}")
        self.app.poller.forget_detail()
        self.app.refresh_now()

    def quit(self) -> None:
        if not self.app.ask_stop_on_quit or not self.app.engine.alive:
            self.app.exit(None)
            return

        def chosen(choice: str | None) -> None:
            if choice == "stop":
                self._stop_and_exit()
            elif choice == "leave":
                self.app.exit("leave")

        self.app.push_screen(QuitChoice(), chosen)

    def _stop_and_exit(self) -> None:
        self.app.run_worker(self._stop_then_exit, thread=True, group="commands")

    def _stop_then_exit(self) -> None:
        if engine_alive := self.app.engine.alive:
            try:
                command_id = send_command(self.app.run_dir, "stop")
            except SteerError as exc:
                self.app.from_thread(self.app.notify, str(exc), severity="error")
                return
            deadline = time.monotonic() + STOP_WAIT_S
            while time.monotonic() < deadline:
                found = self.app.reader.command(command_id)
                if found is not None and found[0] != COMMAND_NEW:
                    break
                time.sleep(0.1)
        self.app.from_thread(self.app.exit, "stop" if engine_alive else None)
