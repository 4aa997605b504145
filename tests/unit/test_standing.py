"""The reported best of a run with a verify stage, and each node's standing against it."""

from __future__ import annotations

import json

import pytest

from engine.store import standing
from engine.store.standing import Row, StageNames, Standings

NAMES = StageNames("explore", "verify")


def _stages(verify: dict | None) -> str:
    record = {"explore": {"ok": True, "score": 0.0}}
    if verify is not None:
        record["verify"] = verify
    return json.dumps(record)


def _rl_like(maximize: bool = True) -> list[Row]:
    """The case from the field: #2 won explore with a lucky seed and lost its own verify,
    falling below the initial program's verify."""
    sign = 1 if maximize else -1
    return [
        Row(1, 0, "done", sign * 0.600, _stages({"ok": True, "score": sign * 0.6117})),
        Row(2, 1, "done", sign * 0.615, _stages({"ok": True, "score": sign * 0.5875})),
        Row(3, 2, "done", sign * 0.610, _stages({"skipped": "not in the top 2"})),
        Row(4, 3, "failed", None, _stages({"ok": False, "error": "crash"})),
        Row(5, 4, "running", None, _stages(None)),
        Row(6, 5, "failed", None, None),  # failed its check: never reached verify
    ]


@pytest.mark.parametrize("maximize", [True, False])
def test_best_is_the_best_verified_node_not_the_best_explore(maximize: bool) -> None:
    standings = Standings(_rl_like(maximize), NAMES, maximize)
    best = standings.best()
    assert best is not None
    assert best.node_id == 1 and best.stage == "verify" and best.verified
    assert abs(best.score) == pytest.approx(0.6117)
    assert abs(best.standing.explore) == pytest.approx(0.600)
    assert standings.flagged() == [2]  # its verify is below the baseline's
    assert standings.of(2).below_baseline and not standings.of(1).below_baseline
    assert standings.of(3).state == standing.SKIPPED
    assert standings.of(4).state == standing.FAILED
    assert standings.of(5).state == standing.WAITING
    assert standings.of(6).state == standing.NOT_REACHED
    assert best.describe() == (
        f"{best.score:.6g} (#1, verify; explore {best.standing.explore:.6g})"
    )


def test_until_a_node_is_verified_the_best_explore_is_reported_and_says_so() -> None:
    rows = [
        Row(1, 0, "done", 0.5, _stages({"skipped": "the initial program is the baseline"})),
        Row(2, 1, "done", 0.7, _stages(None)),
    ]
    best = Standings(rows, NAMES, True).best()
    assert best.node_id == 2 and best.stage == "explore" and not best.verified
    assert best.describe() == "0.7 (#2, explore; none verified yet)"
    assert Standings(rows, NAMES, True).flagged() == []  # no baseline verify to compare


def test_without_a_verify_stage_the_best_score_wins_as_before() -> None:
    rows = [
        Row(1, 0, "done", 1.0, None),
        Row(2, 1, "done", 2.0, None),
        Row(3, 2, "pruned", 9.0, None),
    ]
    best = Standings(rows, StageNames("evaluate", None), True).best()
    assert best.node_id == 2 and best.score == 2.0 and best.describe() == "2 (#2)"
    assert Standings([], StageNames(), True).best() is None


def test_ties_go_to_the_earlier_node_and_nan_never_wins() -> None:
    rows = [
        Row(1, 0, "done", 1.0, _stages({"ok": True, "score": 1.0})),
        Row(2, 1, "done", 1.0, _stages({"ok": True, "score": 1.0})),
        Row(3, 2, "done", float("nan"), _stages({"ok": True, "score": float("nan")})),
    ]
    assert Standings(rows, NAMES, True).best().node_id == 1


def test_stage_names_from_a_task_and_from_meta() -> None:
    assert StageNames.of_task(["check", "explore", "verify"], "explore") == NAMES
    assert StageNames.of_task(["evaluate"], "evaluate").verify is None
    assert StageNames.from_meta(NAMES.to_meta()) == NAMES
    assert StageNames.from_meta(None) == StageNames("evaluate", None)  # a run from before
    assert StageNames.from_meta({"score": 3, "verify": ""}) == StageNames("evaluate", None)
