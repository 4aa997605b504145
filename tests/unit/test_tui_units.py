"""Unit tests of the TUI's pieces that need no screen: read layer, model, formatting."""

from __future__ import annotations

from pathlib import Path

import pytest
from tui_support import NOW, build_run, commands, item_status

from engine.store.lock import RunLock
from engine.store.reader import Cursor, NodeRow, RunReader
from engine.store.steer import SteerError, decide_item, send_command
from tui import format as fmt
from tui.model import Population, View, matcher
from tui.report import node_markdown
from tui.screens.details import diff_lines
from tui.widgets.curve import plot


def row(i: int, score: float | None, status: str = "done", parent: int | None = None) -> NodeRow:
    return NodeRow(i, i - 1, f"n{i}", parent, score, status, 1.0, i % 2, None, float(i))


def test_population_counts_best_and_window() -> None:
    pop = Population(maximize=True)
    changed = pop.apply([row(1, 0.5), row(2, 0.9, parent=1), row(3, None, "running", 1)])
    assert changed == {1, 2, 3}
    assert pop.best is not None and pop.best.id == 2
    assert pop.counts == {"done": 2, "running": 1} and pop.steps_done == 1
    assert pop.apply([row(1, 0.5)]) == set()  # unchanged rows are no change
    assert pop.delta(pop.rows[2]) == pytest.approx(0.4)
    pop.apply([row(2, 0.9, "pruned", 1)])  # the best is pruned: recomputed
    assert pop.best is not None and pop.best.id == 1
    assert pop.window(View("score"), 10)[0] == [2, 1, 3]
    assert pop.window(View("status"), 10)[0] == [3, 1, 2]
    assert pop.window(View("step", "pruned"), 10) == ([2], 1)
    assert pop.window(View("step"), 2) == ([3, 2], 3)
    minimize = Population(maximize=False)
    minimize.apply([row(1, 0.5), row(2, 0.2, parent=1)])
    assert minimize.best is not None and minimize.best.id == 2
    assert minimize.improved(minimize.delta(minimize.rows[2]))  # type: ignore[arg-type]


def test_filter_syntax() -> None:
    r = row(12, 1.0)
    assert matcher("") is None
    assert matcher("done")(r) and not matcher("failed")(r)  # type: ignore[misc]
    assert matcher("#12")(r) and not matcher("#1")(r)  # type: ignore[misc]
    assert matcher("island:0")(r) and matcher("N1")(r)  # type: ignore[misc]


def test_formatting() -> None:
    assert fmt.duration(3.25) == "3.2s" and fmt.duration(75) == "1m15s"
    assert fmt.duration(7300) == "2h01m" and fmt.duration(None) == "-"
    assert fmt.score(None) == "-" and fmt.score(float("nan")) == "nan"
    assert fmt.clean("a\x1b[31mb\x00c\r\n") == "a[31mbc\n"
    assert len(fmt.clean("x" * 1000, 10)) < 60
    assert fmt.one_line("a\n  b") == "a b" and fmt.one_line("abcdef", 4) == "abc…"


def test_plot_shapes() -> None:
    assert plot([], 40, 5, True).plain == "no scored node yet"
    text = plot([(0, 1.0), (5, 2.0), (9, 1.5)], 30, 5, True).plain.splitlines()
    assert len(text) == 5 and all(len(line) == 30 for line in text)
    assert text[0].startswith("2│") and "━" in text[0]  # the margin is as wide as the labels
    assert text[-1].startswith("1│━") and text[0].endswith("━")  # first step to the last column
    wide = plot([(0, 0.001234), (9, 123456.0)], 30, 4, True).plain.splitlines()
    assert {line.index("│") for line in wide} == {8} and all(len(x) == 30 for x in wide)
    assert plot([(i, float(i % 7)) for i in range(100_000)], 80, 8, False).plain


def test_report_copes_with_missing_fields() -> None:
    assert "No node selected" in node_markdown(None, None, True)
    text = node_markdown({"id": 3, "status": "failed", "error": "boom\nmore"}, None, True)
    assert "error:" in text and "no analysis" in text
    text = node_markdown({"id": 3, "score": 2.0, "parent_id": 1, "results": "{bad"}, 1.5, True)
    assert "+0.5 vs #1, better" in text


def test_diff_lines() -> None:
    lines = [t.plain for t in diff_lines("a\nb\n", "a\nc\n", "p", "c")]
    assert "-b" in lines and "+c" in lines
    assert diff_lines("same", "same", "p", "c")[0].plain == "(identical to the parent)"


@pytest.mark.slow
def test_engine_state_needs_the_lock_and_a_fresh_heartbeat(tmp_path: Path) -> None:
    run_dir = build_run(tmp_path / "run")
    reader = RunReader(run_dir)
    meta = reader.meta()
    assert reader.engine_state(meta, NOW).state == "not running"  # nobody holds the lock
    with RunLock(run_dir):
        assert reader.engine_state(meta, NOW).state == "running"
        assert reader.engine_state(meta, NOW + 60).state == "not running"  # stale heartbeat
        assert reader.engine_state(meta, NOW + 60).alive


def test_incremental_reads(tmp_path: Path) -> None:
    run_dir = build_run(tmp_path / "run")
    reader = RunReader(run_dir)
    cursor = Cursor()
    assert len(reader.changed_nodes(cursor)) == 9
    assert len(reader.changed_nodes(cursor)) <= 2  # only the overlap window is re-read
    assert len(reader.events(cursor)) == 9 and reader.events(cursor) == []
    totals = reader.llm_totals(cursor)
    assert (totals.calls, totals.tokens) == (1, 1500)
    assert reader.llm_totals(cursor).calls == 1  # not counted twice


def test_writes(tmp_path: Path) -> None:
    run_dir = build_run(tmp_path / "run")
    command_id = send_command(run_dir, "prune", "7")
    assert command_id > 0 and commands(run_dir) == [("prune", "7", "new")]
    with pytest.raises(SteerError):
        send_command(run_dir, "rm -rf")
    assert "approved" in decide_item(run_dir, 3, "approve")
    assert item_status(run_dir, 3) == "active"
    assert "already active" in decide_item(run_dir, 3, "reject")
    with pytest.raises(SteerError):
        decide_item(run_dir, 99, "approve")
    bare = build_run(tmp_path / "bare", cognition=False)
    with pytest.raises(SteerError, match="no cognition base"):
        decide_item(bare, 1, "approve")
