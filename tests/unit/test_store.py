"""The run database: schema, durability of every change, readers beside the writer."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from engine.store.records import DONE, RUNNING, Node
from engine.store.run_store import SCHEMA_VERSION, RunStore, StoreError
from engine.store.schema import CORE_TABLES


def test_schema_and_wal(tmp_path: Path) -> None:
    store = RunStore.create(tmp_path / "run")
    assert store.get_meta("schema_version") == SCHEMA_VERSION
    assert store.db.journal_mode == "wal"
    tables = set(store.db.table_names())
    assert {t.name for t in CORE_TABLES} == tables
    with pytest.raises(StoreError):
        RunStore.create(tmp_path / "run")  # never over an existing run


def test_open_refuses_non_runs(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="not a run directory"):
        RunStore.open(tmp_path)
    (tmp_path / "evolve.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError):
        RunStore.open(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    sqlite3.connect(other / "evolve.db").execute("CREATE TABLE x (a)").connection.close()
    with pytest.raises(StoreError, match="not an ASI-Evolve run database"):
        RunStore.open(other)


def test_every_change_is_committed_at_once(tmp_path: Path) -> None:
    store = RunStore.create(tmp_path / "run")
    node_id = store.insert_node(Node(step=1, code="X = 1", status=RUNNING))
    # A second connection (another process in real life) sees it before anything else.
    reader = RunStore.open(tmp_path / "run", readonly=True)
    assert reader.get_node(node_id).status == RUNNING
    store.update_node(node_id, status=DONE, score=2.5, results={"score": 2.5})
    got = reader.get_node(node_id)
    assert got.status == DONE and got.score == 2.5 and got.results == {"score": 2.5}
    with pytest.raises(KeyError):
        store.update_node(node_id, bogus=1)


def test_step_is_unique(tmp_path: Path) -> None:
    store = RunStore.create(tmp_path / "run")
    store.insert_node(Node(step=3, code="a"))
    with pytest.raises(sqlite3.IntegrityError):
        store.insert_node(Node(step=3, code="b"))


READER = """
import sys, time
from pathlib import Path
from engine.store.run_store import RunStore
store = RunStore.open(Path(sys.argv[1]), readonly=True)
seen = 0
end = time.time() + float(sys.argv[2])
while time.time() < end:
    counts = store.status_counts()
    n = sum(counts.values())
    assert n >= seen, (n, seen)
    seen = n
    store.best_node()
    store.events(0, 50)
print(seen)
"""


@pytest.mark.slow
def test_concurrent_reader_while_engine_writes(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    store = RunStore.create(run_dir)
    store.insert_node(Node(step=0, code="x" * 10_000, status=DONE, score=0.0))
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(run_dir), "2.0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stop = threading.Event()
    written = 0

    def write() -> None:
        nonlocal written
        store = RunStore.open(run_dir)  # the engine's own connection, in its own thread
        step = 1
        while not stop.is_set():
            nid = store.insert_node(Node(step=step, code="y" * 10_000, status=RUNNING))
            store.update_node(nid, status=DONE, score=float(step))
            store.add_event("node", f"step {step}", nid)
            written += 1
            step += 1

    thread = threading.Thread(target=write)
    thread.start()
    out, err = reader.communicate(timeout=30)
    stop.set()
    thread.join()
    assert reader.returncode == 0, err
    assert int(out.strip()) > 0
    assert written > 50
    # Everything written is there.
    assert store.status_counts()["done"] == written + 1


def test_commands_round_trip(tmp_path: Path) -> None:
    store = RunStore.create(tmp_path / "run")
    cid = store.add_command("prune", "7")
    assert [c.kind for c in store.new_commands()] == ["prune"]
    store.finish_command(cid, "pruned node #7")
    assert store.new_commands() == []
    row = store.get_command(cid)
    assert row["status"] == "handled" and row["handled_at"] >= row["ts"]
