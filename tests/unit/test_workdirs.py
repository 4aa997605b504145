"""A node's work dir is never reused: earlier attempts are moved aside as .attempt-K."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.execution import workdirs


def test_first_attempt_is_an_empty_new_dir(tmp_path: Path) -> None:
    work = workdirs.fresh(tmp_path, 3)
    assert work == (tmp_path / "nodes" / "3").resolve()
    assert work.is_dir() and not any(work.iterdir())
    assert workdirs.attempts(tmp_path, 3) == []


def test_earlier_attempts_move_aside_in_order(tmp_path: Path) -> None:
    first = workdirs.fresh(tmp_path, 7)
    (first / "results.json").write_text('{"score": 1}')
    second = workdirs.fresh(tmp_path, 7)
    assert second == first and not any(second.iterdir())  # the stale results are gone
    (second / "mark").write_text("2")
    workdirs.fresh(tmp_path, 7)
    moved = workdirs.attempts(tmp_path, 7)
    assert [p.name for p in moved] == ["7.attempt-1", "7.attempt-2"]
    assert (moved[0] / "results.json").read_text() == '{"score": 1}'
    assert (moved[1] / "mark").read_text() == "2"


def test_numbering_skips_taken_names_and_other_steps(tmp_path: Path) -> None:
    nodes = tmp_path / "nodes"
    (nodes / "4.attempt-5").mkdir(parents=True)
    (nodes / "4.attempt-x").mkdir()  # not an attempt: left alone
    (nodes / "40").mkdir()
    (nodes / "4").mkdir()
    workdirs.fresh(tmp_path, 4)
    names = sorted(p.name for p in nodes.iterdir())
    assert names == ["4", "4.attempt-5", "4.attempt-6", "4.attempt-x", "40"]


def test_a_file_or_symlink_in_the_way_is_moved_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("x")
    nodes = tmp_path / "run" / "nodes"
    nodes.mkdir(parents=True)
    (nodes / "1").symlink_to(outside)
    (nodes / "2").write_text("not a dir")
    work = workdirs.fresh(tmp_path / "run", 1)
    assert work.is_dir() and not work.is_symlink()
    assert (nodes / "1.attempt-1").is_symlink()
    assert (outside / "keep").read_text() == "x"
    assert workdirs.fresh(tmp_path / "run", 2).is_dir()
    assert (nodes / "2.attempt-1").read_text() == "not a dir"


def test_negative_step_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        workdirs.fresh(tmp_path, -1)
