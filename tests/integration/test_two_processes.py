"""Where two processes meet on one run: backups, restore, readers and the TUI's writes.

Each test stands for one class of fault found by the review of issue 19: a copy or repair
aimed at the live database, a reader that blocks the engine or reads stale data, a TUI that
keeps reading a file ``restore`` replaced, and decisions on knowledge written while the
engine retrieves.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import REPO, cli

from cognition.base import CognitionBase
from cognition.items import ACTIVE, PENDING, SEED, Draft
from cognition.settings import CognitionSettings
from engine.store.lock import RunLock
from engine.store.reader import RunReader
from engine.store.readonly import LiveRunUnreadable, connect_readonly
from engine.store.records import DONE, Node
from engine.store.run_store import DB_NAME, RunStore
from engine.store.steer import decide_item, send_command
from tui.poller import Poller


def _run(toy_task: Path, run: Path, *extra: str) -> subprocess.CompletedProcess:
    result = cli("run", str(toy_task), "--run-dir", str(run), *extra)
    assert result.returncode == 0, result.stderr
    return result


def _one_error_line(result: subprocess.CompletedProcess, fragment: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert fragment in lines[0], lines[0]


def _nodes(run: Path) -> int:
    conn = sqlite3.connect(run / DB_NAME)
    try:
        return conn.execute("SELECT count(*) FROM nodes").fetchone()[0]
    finally:
        conn.close()


@pytest.mark.slow
def test_backup_and_restore_refuse_the_live_database(toy_task: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    _run(toy_task, run, "--steps", "3")
    before = _nodes(run)
    for dest in (run / DB_NAME, run / f"{DB_NAME}-wal", run / "." / DB_NAME):
        _one_error_line(cli("backup", str(run), str(dest)), "the run's own database")
    _one_error_line(cli("restore", str(run), "--from", str(run / DB_NAME)), "own database")
    assert (run / DB_NAME).is_file() and _nodes(run) == before
    assert not list(run.glob("*.damaged-*")), "nothing was moved aside"
    unwritable = cli("backup", str(run), "/proc/asi-evolve-backup.db")
    _one_error_line(unwritable, "cannot write the copy")


def test_a_failed_restore_leaves_the_run_its_database(toy_task: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    _run(toy_task, run, "--steps", "2")
    bad = tmp_path / "garbage.db"
    bad.write_bytes(b"not a database" * 100)
    _one_error_line(cli("restore", str(run), "--from", str(bad)), "not a usable run database")
    assert _nodes(run) == 3


@pytest.mark.slow
def test_a_tui_reader_follows_a_restore(toy_task: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    config = tmp_path / "c.yaml"
    config.write_text("backup_every: 2\nbackup_seconds: 0\n")
    _run(toy_task, run, "--steps", "2", "--config", str(config))
    backups = sorted((run / "backups").glob("evolve-000002-*.db"))
    assert backups, sorted(p.name for p in (run / "backups").iterdir())
    # Set aside: the second run's backups may prune it (3 are kept, and two backups of one
    # step are two files when they land in different seconds).
    step_2 = tmp_path / "step-2.db"
    shutil.copyfile(backups[0], step_2)
    _run(toy_task, run, "--steps", "6")
    reader = RunReader(run)
    poller = Poller(reader)
    assert len(poller.tick().order) == 7
    restored = cli("restore", str(run), "--from", str(step_2))
    assert restored.returncode == 0, restored.stderr
    tick = poller.tick()
    assert len(tick.order) == 3 and len(poller.pop.rows) == 3
    assert reader.generation == 1


@pytest.mark.slow
def test_a_reader_holding_a_long_transaction_does_not_stall_the_engine(
    toy_task: Path, tmp_path: Path
) -> None:
    """Backups are a read of their own: they neither wait for the reader nor block the
    heartbeat's writes, so engine.log gets no "database is locked" tracebacks."""
    run = tmp_path / "run"
    config = tmp_path / "c.yaml"
    config.write_text("backup_every: 1\nbackup_seconds: 0\n")
    env = {**os.environ, "TOY_DELAY": "0.2"}
    env.pop("OPENAI_BASE_URL", None)
    engine = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "run", str(toy_task), "--run-dir", str(run),
         "--steps", "40", "--workers", "2", "--config", str(config), "--no-cognition"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.time() + 60
        while not list((run / "backups").glob("evolve-*.db")) and time.time() < deadline:
            time.sleep(0.1)
        reader = sqlite3.connect(f"file:{run / DB_NAME}?mode=ro", uri=True)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM nodes").fetchone()  # holds a snapshot from here
        steps_then = _steps(run)
        time.sleep(6)
        assert _steps(run) >= steps_then + 5, "the engine kept committing"
        newest = max(p.stat().st_mtime for p in (run / "backups").glob("evolve-*.db"))
        assert time.time() - newest < 3, "backups kept coming while the reader held on"
        reader.rollback()
        reader.close()
        out, err = engine.communicate(timeout=120)
    finally:
        if engine.poll() is None:
            engine.kill()
    assert engine.returncode == 0, err
    log = (run / "engine.log").read_text() if (run / "engine.log").exists() else ""
    assert "database is locked" not in log and "Traceback" not in log, log[-2000:]


def _steps(run: Path) -> int:
    conn = connect_readonly(run / DB_NAME)
    try:
        return conn.execute(
            "SELECT count(*) FROM nodes WHERE step >= 1 AND status IN ('done','failed')"
        ).fetchone()[0]
    finally:
        conn.close()


def _unprivileged() -> list[str] | None:
    if os.getuid() != 0 or shutil.which("setpriv") is None:
        return None
    probe = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", ""],
        capture_output=True,
    )  # fmt: skip
    return (
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        if not probe.returncode
        else None
    )


@pytest.mark.skipif(
    _unprivileged() is None, reason="needs root and setpriv to read as another user"
)
def test_a_live_run_is_never_read_as_immutable(tmp_path: Path) -> None:
    """A user who cannot write the run directory gets a clear error while an engine holds the
    run (an immutable read would skip the write-ahead log: stale or torn data), and the
    archived run's contents once none does."""
    base = Path(tempfile.mkdtemp(prefix="asi-evolve-ro-"))
    try:
        os.chmod(base, 0o755)
        run = base / "run"
        store = RunStore.create(run)
        store.set_meta("task", "toy")
        store.insert_node(Node(step=0, name="initial", code="X = 1\n", status=DONE, score=1.0))
        os.chmod(run, 0o755)
        os.chmod(run / DB_NAME, 0o644)
        # Another user cannot map the engine's -shm: SQLite cannot read the live log.
        os.chmod(run / f"{DB_NAME}-shm", 0o600)
        script = (
            "import sys; from engine.store.readonly import connect_readonly\n"
            "from pathlib import Path\n"
            "try:\n"
            "    c = connect_readonly(Path(sys.argv[1]))\n"
            "    print(c.execute('SELECT count(*) FROM nodes').fetchone()[0])\n"
            "except Exception as exc:\n"
            "    print(type(exc).__name__, exc)\n"
        )
        argv = [*_unprivileged(), sys.executable, "-c", script, str(run / DB_NAME)]
        with RunLock(run):  # the engine holds the run; its last commits are in the WAL
            live = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=60)
            assert "LiveRunUnreadable" in live.stdout, live.stdout + live.stderr
            assert "cannot read the live run" in live.stdout
        store.close()  # the engine has ended: the run is archived
        archived = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=60)
        assert archived.stdout.strip() == "1", archived.stdout + archived.stderr
    finally:
        shutil.rmtree(base, ignore_errors=True)
    assert issubclass(LiveRunUnreadable, sqlite3.OperationalError)


@pytest.mark.slow
def test_decisions_from_the_tui_while_the_engine_retrieves(toy_task: Path, tmp_path: Path) -> None:
    """An item approved from the TUI during a run is retrieved from the next rounds on, a
    rejected one never is, and no retrieval fails on the concurrent write."""
    run = tmp_path / "run"
    config = tmp_path / "c.yaml"
    config.write_text(  # backups after every node: the TUI writes while the engine copies
        "backup_every: 1\nbackup_seconds: 0\n"
        "cognition:\n  embedder: hash\n  score_threshold: -1.0\n"
        "  top_k: 20\n  max_derived: null\n"
    )
    _run(toy_task, run, "--steps", "1", "--config", str(config))
    store = RunStore.open(run)
    base = CognitionBase(store.db, CognitionSettings(embedder="hash"))
    base.add([Draft("Seed prior", "Keep X near three.")], None, SEED, ACTIVE)
    approved, rejected = (
        base.add([Draft(title, f"{title} body text.")], None, SEED, PENDING)[0].id
        for title in ("Approve me", "Reject me")
    )
    store.close()
    env = {**os.environ, "TOY_DELAY": "0.1"}
    env.pop("OPENAI_BASE_URL", None)
    engine = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "run", str(toy_task), "--run-dir", str(run),
         "--steps", "30", "--workers", "2"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.time() + 60
        while _steps(run) < 6 and time.time() < deadline:
            time.sleep(0.05)
        assert "approved" in decide_item(run, approved, "approve")
        assert "rejected" in decide_item(run, rejected, "reject")
        decided_at = time.time()
        send_command(run, "resume")  # a command write at the same moment, for good measure
        out, err = engine.communicate(timeout=180)
    finally:
        if engine.poll() is None:
            engine.kill()
    assert engine.returncode == 0, err
    conn = sqlite3.connect(run / DB_NAME)
    shown = conn.execute(
        "SELECT r.item_id, n.created_at FROM retrievals r JOIN nodes n ON n.id = r.node_id"
    ).fetchall()
    assert any(item == approved and created > decided_at for item, created in shown)
    assert all(item != rejected for item, _ in shown)
    assert all(item != approved or created > decided_at - 1 for item, created in shown)
    failures = conn.execute(
        "SELECT count(*) FROM events WHERE message LIKE 'retrieval failed%' "
        "OR message LIKE 'backup failed%'"
    ).fetchone()[0]
    assert failures == 0
    newest = sorted((run / "backups").glob("evolve-*.db"))[-1]
    copy = sqlite3.connect(newest)
    assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    decided = dict(copy.execute("SELECT id, status FROM cognition_items"))
    assert decided[approved] == ACTIVE and decided[rejected] == "rejected"
