"""What runs now: a candidate's stage, elapsed time and limit from its row."""

from __future__ import annotations

import json

from engine.store.running import RESEARCH, WAITING, clock, running_of, stage_record


def test_a_running_stage_reads_its_record() -> None:
    meta = json.dumps({"running_stage": stage_record("explore", 1000.0, 600.0)})
    item = running_of(7, 3, "running", 900.0, meta, now=1185.0)
    assert (item.stage, item.elapsed, item.timeout) == ("explore", 185.0, 600.0)
    assert item.describe() == "#7 explore 3:05 / 10:00"


def test_pending_is_research_and_finished_is_nothing() -> None:
    item = running_of(8, 4, "pending", 1000.0, "{}", now=1012.0)
    assert item.stage == RESEARCH and item.elapsed == 12.0 and item.timeout is None
    assert running_of(9, 5, "done", 1000.0, "{}", now=1012.0) is None
    # A running node without a record yet (waiting for a slot), or with a broken one.
    assert running_of(10, 6, "running", 1000.0, "not json", now=1001.0).stage == "starting"
    assert running_of(11, 7, "running", 1000.0, None, now=999.0).elapsed == 0.0


def test_clock() -> None:
    assert clock(5) == "0:05" and clock(3725) == "1:02:05" and clock(None) == "-"


def test_between_stages_a_candidate_is_waiting_without_a_limit() -> None:
    """After explore, a gated verify may wait hours for a GPU slot: shown as waiting since
    explore ended, not as "starting" since the node began."""
    meta = {"running_stage": stage_record(WAITING, 1000.0, None)}
    item = running_of(7, 3, "running", 100.0, meta, now=1060.0)
    assert (item.stage, item.elapsed, item.timeout) == ("waiting", 60.0, None)
    assert item.describe() == "#7 waiting 1:00"
