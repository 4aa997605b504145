"""A program evaluated earlier in the run is not evaluated again (engine/store/twins.py)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from conftest import cli, make_toy_task
from scripted_server import Reply, ScriptedServer, agents_script, parent_program, search_replace

from engine.store import twins
from engine.store.records import Node
from engine.store.run_store import RunStore
from engine.store.schema import DONE, FAILED, PRUNED


def always_x_two(request: dict[str, Any]) -> Reply:
    """A researcher stuck on one idea: X = 2.0, whatever the parent (the same program from
    the second candidate on, with trailing blanks that differ, which do not count)."""
    code = parent_program(request)
    line = next(ln for ln in code.split("\n") if ln.startswith("X = "))
    return Reply(
        "<name>x-two</name>\n<motivation>X = 2.0 is the one idea.</motivation>\n"
        + search_replace(line, "X = 2.0" + " " * (len(line) % 3))
    )


def run(tmp_path: Path, name: str, steps: int, *flags: str, **config: Any) -> tuple[Path, str]:
    task = make_toy_task(tmp_path / name)
    run_dir = tmp_path / f"{name}-run"
    (tmp_path / f"{name}.yaml").write_text(json.dumps({"api": {"retries": 0}, **config}))
    with ScriptedServer(agents_script(always_x_two)) as server:
        done = cli(
            "run", str(task), "--llm", "openai", "--steps", str(steps), "--workers", "1",
            "--no-cognition", "--run-dir", str(run_dir), "--config", str(tmp_path / f"{name}.yaml"),
            *flags, env={"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-x"},
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return run_dir, done.stdout


def node_rows(run_dir: Path) -> list[sqlite3.Row]:
    db = sqlite3.connect(run_dir / "evolve.db")
    db.row_factory = sqlite3.Row
    try:
        return list(db.execute("SELECT * FROM nodes WHERE step >= 1 ORDER BY step"))
    finally:
        db.close()


@pytest.mark.slow
def test_a_program_seen_before_takes_its_evaluation_and_says_so(tmp_path: Path) -> None:
    run_dir, out = run(tmp_path, "reuse", steps=4)
    nodes = node_rows(run_dir)
    first, *copies = nodes
    assert json.loads(first["results"]).get("duplicate_of") is None
    assert first["status"] == DONE and first["score"] == pytest.approx(-1.25)
    for node in copies:
        results, metadata = json.loads(node["results"]), json.loads(node["metadata"])
        assert metadata["duplicate_of"] == results["duplicate_of"] == first["id"]
        assert node["status"] == DONE and node["score"] == first["score"]
        assert node["runtime"] == 0.0 and "reused" in node["analysis"]
    # Only the first one ran: one work dir, and the console says why the others did not.
    assert sorted(p.name for p in (run_dir / "nodes").iterdir()) == ["0", "1"]
    assert out.count(f"(same program as #{first['id']}: not run again)") == 3
    db = sqlite3.connect(run_dir / "evolve.db")
    events = [r[0] for r in db.execute("SELECT message FROM events WHERE kind = 'duplicate'")]
    calls = [r[0] for r in db.execute("SELECT role FROM llm_calls")]
    db.close()
    assert len(events) == 3 and all("not run again" in e for e in events)
    assert calls.count("analyzer") == 2  # the root and the first: a copy owes none


@pytest.mark.slow
def test_without_the_analyzer_a_copy_has_no_analysis_either(tmp_path: Path) -> None:
    """The --no-analyzer ablation: no node has an analysis, a reused one included (the
    reuse is in its metadata, results and events)."""
    run_dir, out = run(tmp_path, "ablation", 3, "--no-analyzer")
    first, *copies = node_rows(run_dir)
    assert copies and all(json.loads(n["metadata"])["duplicate_of"] == first["id"] for n in copies)
    assert [n["analysis"] for n in (first, *copies)] == [""] * 3
    assert out.count("not run again") == 2


@pytest.mark.slow
def test_reuse_can_be_turned_off(tmp_path: Path) -> None:
    run_dir, out = run(tmp_path, "off", steps=3, engineer={"reuse_evaluations": False})
    nodes = node_rows(run_dir)
    assert all(json.loads(n["results"]).get("duplicate_of") is None for n in nodes)
    assert len(list((run_dir / "nodes").iterdir())) == 4  # the root and every candidate ran
    assert "not run again" not in out


def test_bad_setting_is_one_line(tmp_path: Path) -> None:
    task = make_toy_task(tmp_path)
    (tmp_path / "c.yaml").write_text("engineer:\n  reuse_evaluations: maybe\n")
    done = cli("run", str(task), "--steps", "1", "--config", str(tmp_path / "c.yaml"))
    assert done.returncode == 2
    assert "engineer.reuse_evaluations must be bool, got 'maybe'" in done.stderr


def test_what_may_be_reused() -> None:
    def node(status: str, **results: Any) -> Node:
        return Node(step=1, code="X = 1", status=status, score=1.0, results=results)

    assert twins.reusable(node(DONE))
    assert not twins.reusable(Node(step=1, status=DONE, score=None))
    assert twins.reusable(node(FAILED, returncode=1, timed_out=False))  # its own crash
    assert twins.reusable(node(FAILED, returncode=0, timed_out=False))  # marked invalid
    assert not twins.reusable(node(FAILED, returncode=None, timed_out=True))
    assert not twins.reusable(node(FAILED, returncode=-9, timed_out=False))  # OOM kill
    assert not twins.reusable(node(FAILED))  # failed before the evaluator ran
    assert not twins.reusable(node(PRUNED))
    assert not twins.reusable(node(FAILED, returncode=1, duplicate_of=3))  # a copy itself
    assert twins.program_hash("X = 1  \n\n") == twins.program_hash("X = 1")
    assert twins.program_hash("X = 1") != twins.program_hash("X =  1")


def test_an_older_run_is_indexed_once_and_a_pruned_twin_is_not_reused(tmp_path: Path) -> None:
    store = RunStore.create(tmp_path / "run")
    done = Node(step=1, code="X = 2\n", status=DONE, score=0.5)
    later = Node(step=2, code="X = 2", status=DONE, score=0.7)  # the first one counts
    gone = Node(step=3, code="X = 3", status=DONE, score=0.9)
    for n in (done, later, gone):
        store.insert_node(n)
    twins.index(store)
    assert twins.find(store, "X = 2 ").id == done.id
    assert twins.find(store, "X = 2", exclude=done.id) is None  # never a node's own twin
    assert twins.find(store, "X = 4") is None
    store.update_node(gone.id, status=PRUNED)
    assert twins.find(store, "X = 3") is None
    new = Node(step=4, code="X = 5", status=FAILED, results={"returncode": 1})
    store.insert_node(new)
    twins.remember(store, new)
    assert twins.find(store, "X = 5").id == new.id
    twins.index(store)  # already there: nothing changes
    assert twins.find(store, "X = 2").id == done.id
