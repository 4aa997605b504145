"""The run database cannot be silently lost, forged through steering, or shared by two engines."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, cli

from engine.store.backup import Backups, restore
from engine.store.run_store import DB_NAME, RunStore, StoreError


def _start(task: Path, run: Path, *extra: str, delay: str = "0.3") -> subprocess.Popen:
    env = {**os.environ, "TOY_DELAY": delay}
    env.pop("OPENAI_BASE_URL", None)
    return subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "run", str(task), "--run-dir", str(run), *extra],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_steps(run: Path, n: int, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            db = sqlite3.connect(f"file:{run / DB_NAME}?mode=ro", uri=True, timeout=1)
            done = db.execute(
                "SELECT count(*) FROM nodes WHERE step >= 1 AND status IN ('done','failed')"
            ).fetchone()[0]
            db.close()
            if done >= n:
                return
        except sqlite3.Error:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{n} steps not reached")


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["delete", "replace"])
def test_lost_database_stops_the_engine_and_restore_brings_it_back(
    toy_task: Path, tmp_path: Path, damage: str
) -> None:
    run = tmp_path / "run"
    config = tmp_path / "c.yaml"
    config.write_text("backup_every: 2\nbackup_seconds: 0\n")
    engine = _start(toy_task, run, "--steps", "200", "--workers", "1", "--config", str(config))
    _wait_steps(run, 5)
    if damage == "delete":
        for suffix in ("", "-wal", "-shm"):
            (run / f"{DB_NAME}{suffix}").unlink(missing_ok=True)
    else:
        copy = tmp_path / "other.db"
        shutil.copy(run / DB_NAME, copy)
        os.replace(copy, run / DB_NAME)
    out, err = engine.communicate(timeout=60)
    assert engine.returncode == 1, out + err
    word = "deleted" if damage == "delete" else "replaced"
    assert f"run database {word}" in err and "asi-evolve restore" in err
    assert len(err.strip().splitlines()) == 1
    backups = sorted((run / "backups").glob("evolve-*.db"))
    assert backups, "no backup was taken"

    result = cli("restore", str(run))
    assert result.returncode == 0, result.stderr
    store = RunStore.open(run)
    restored = store.steps_done()
    assert restored >= 5 - 2  # at most backup_every nodes lost
    store.close()
    resumed = cli("run", str(toy_task), "--run-dir", str(run), "--steps", str(restored + 2))
    assert resumed.returncode == 0, resumed.stderr
    assert RunStore.open(run).steps_done() == restored + 2


@pytest.mark.slow
def test_a_second_engine_is_refused_even_without_the_lock_file(
    toy_task: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    first = _start(toy_task, run, "--steps", "200", "--workers", "1")
    try:
        _wait_steps(run, 1)
        (run / "engine.lock").unlink()
        second = cli("run", str(toy_task), "--run-dir", str(run), "--steps", "200")
        assert second.returncode == 2
        assert "another engine is running" in second.stderr
        restore_attempt = cli("restore", str(run))
        assert restore_attempt.returncode == 2 and "stop it first" in restore_attempt.stderr
    finally:
        first.terminate()
        first.communicate(timeout=60)


def test_malformed_commands_are_rejected_with_a_reason(tmp_path: Path) -> None:
    store = RunStore.create(tmp_path / "run")
    db = sqlite3.connect(tmp_path / "run" / DB_NAME)
    rows = [
        ("pause", b"\x00\x01binary"),
        ("prune", "9" * 5000),
        (None, "x"),
        ("format-disk", ""),
        ("resume", None),
    ]
    db.executemany(
        "INSERT INTO commands(ts, kind, arg, status) VALUES (?, ?, ?, 'new')",
        [(time.time(), kind, arg) for kind, arg in rows],
    )
    db.commit()
    commands = store.new_commands()
    assert [(c.kind, c.arg) for c in commands] == [("resume", "")]
    results = dict(db.execute("SELECT id, result FROM commands WHERE status = 'rejected'"))
    assert "argument must be text, got blob" in results[1]
    assert "argument too long (5000 characters)" in results[2]
    assert results[3] == "bad kind" and "unknown command kind 'format-disk'" in results[4]
    assert store.new_commands() == commands  # rejected rows are never offered again


def test_commands_written_while_no_engine_ran_expire(toy_task: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert cli("run", str(toy_task), "--run-dir", str(run), "--steps", "1").returncode == 0
    RunStore.open(run).add_command("stop")
    result = cli("run", str(toy_task), "--run-dir", str(run), "--steps", "3")
    assert result.returncode == 0
    assert "expired 1 command(s) written while no engine was running" in result.stdout
    assert RunStore.open(run).steps_done() == 3  # the old stop did not stop this run


def test_backup_command_and_rotation(toy_task: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert cli("run", str(toy_task), "--run-dir", str(run), "--steps", "2").returncode == 0
    dest = tmp_path / "copy.db"
    result = cli("backup", str(run), str(dest))
    assert result.returncode == 0, result.stderr
    copy = sqlite3.connect(dest)
    assert copy.execute("SELECT count(*) FROM nodes").fetchone()[0] == 3
    assert copy.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # self-contained
    missing = cli("backup", str(run), str(tmp_path / "nope" / "x.db"))
    assert missing.returncode == 2 and "is not a directory" in missing.stderr

    store = RunStore.open(run)
    backups = Backups(run, every=1, keep=2)
    for n in range(5):
        backups.now(store, steps_done=n)
    assert len(backups.list()) == 2
    with pytest.raises(StoreError, match="no backup found"):
        restore(tmp_path / "empty-run")


def test_backups_wait_for_both_the_node_count_and_the_time_floor(
    toy_task: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    assert cli("run", str(toy_task), "--run-dir", str(run), "--steps", "1").returncode == 0
    store = RunStore.open(run)
    now = [1000.0]
    (run / "b").mkdir()
    backups = Backups(run / "b", every=2, keep=10, seconds=60.0, clock=lambda: now[0])
    assert backups.maybe(store, 1) is None  # counts from 0
    assert backups.maybe(store, 2) is None  # two nodes, but no time has passed
    now[0] += 61
    assert backups.maybe(store, 3) is not None  # both: 2+ nodes and 60+ s
    now[0] += 120
    assert backups.maybe(store, 4) is None  # time enough, one node only
    assert backups.maybe(store, 5) is not None
    assert backups.maybe(store, 7) is None  # nodes enough, no time
    assert len(backups.list()) == 2


@pytest.mark.slow
def test_damaged_database_is_one_line_for_reading_commands(toy_task: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert cli("run", str(toy_task), "--run-dir", str(run), "--steps", "2").returncode == 0
    db = sqlite3.connect(run / DB_NAME)
    db.execute("UPDATE meta SET value = '{not json' WHERE key = 'task'")
    db.commit()
    db.close()
    result = cli("status", str(run))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "damaged run database: meta 'task' is not JSON" in result.stderr

    other = tmp_path / "run2"
    assert cli("run", str(toy_task), "--run-dir", str(other), "--steps", "2").returncode == 0
    path = other / DB_NAME
    data = bytearray(path.read_bytes())
    page = 4096
    for offset in range(page, len(data), page):  # every page but the header page
        data[offset : offset + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    result = cli("status", str(other))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "damaged run database" in result.stderr and "asi-evolve restore" in result.stderr


def test_ids_beyond_sqlite_range_are_simply_missing(tmp_path: Path) -> None:
    store = RunStore.create(tmp_path / "run")
    assert store.get_node(2**70) is None
    assert store.get_node(-(2**70)) is None


def _bwrap_works() -> bool:
    if shutil.which("bwrap") is None:
        return False
    probe = subprocess.run(["bwrap", "--dev-bind", "/", "/", "true"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not _bwrap_works(), reason="needs bubblewrap to mount the run read-only")
def test_an_archived_read_only_run_opens_for_reading(toy_task: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert cli("run", str(toy_task), "--run-dir", str(run), "--steps", "2").returncode == 0
    reader = (
        "import sys; from engine.store.reader import RunReader; r = RunReader(sys.argv[1]); "
        "print(r.meta()['task'])"
    )
    for argv in (
        ["-m", "engine.cli", "status", str(run)],
        ["-m", "engine.cli", "best", str(run)],
        ["-m", "engine.cli", "cognition", "list", str(run)],
        ["-c", reader, str(run)],
    ):
        result = subprocess.run(
            ["bwrap", "--dev-bind", "/", "/", "--ro-bind", str(run), str(run),
             sys.executable, *argv],
            cwd=REPO, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, (argv, result.stderr)
        assert "Traceback" not in result.stderr
