"""One database for every process: outside writers and readers never split the run (issue 19).

A process that opens and closes the database file by a descriptor of its own drops SQLite's
POSIX locks on it; the next short-lived outside connection (a TUI pause) then thinks it is
the last one, checkpoints and resets the WAL under the engine, and from then on nobody sees
what the engine commits. These tests steer a live engine from outside, read it from
outside, kill it, and audit every Python-level open of the database files.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import REPO

from engine.store.reader import RunReader
from engine.store.steer import send_command

AUDIT = str(Path(__file__).resolve().parents[1] / "audit_db_opens.py")
STEP_LINE = re.compile(r"^step\s+(\d+)\s+#(\d+)\s")


def _engine(task: Path, run: Path, *extra: str, report: Path | None = None) -> subprocess.Popen:
    env = {**os.environ, "TOY_DELAY": "0.15"}
    env.pop("OPENAI_BASE_URL", None)
    prefix = [AUDIT, str(report), "cli"] if report else ["-m", "engine.cli"]
    return subprocess.Popen(
        [sys.executable, *prefix, "run", str(task), "--run-dir", str(run), *extra],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


class _Lines:
    """The engine's stdout, collected by a thread (it may be killed at any moment)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def finished_ids(self) -> list[int]:
        return [int(m.group(2)) for line in self.lines if (m := STEP_LINE.match(line))]

    def join(self) -> None:
        self._thread.join(timeout=30)


def _fresh_count(run: Path) -> int:
    """Finished steps as a brand-new reader sees them."""
    conn = sqlite3.connect(f"file:{run / 'evolve.db'}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(
            "SELECT count(*) FROM nodes WHERE step >= 1 AND status IN ('done','failed','pruned')"
        ).fetchone()[0]
    finally:
        conn.close()


def _live_count(reader: RunReader) -> int:
    return reader.query(
        "SELECT count(*) FROM nodes WHERE step >= 1 AND status IN ('done','failed','pruned')"
    )[0][0]


def _wait(predicate, timeout: float, what: str) -> float:  # noqa: ANN001
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError(f"{what}: not within {timeout}s")


def _command_status(run: Path, command_id: int) -> str:
    conn = sqlite3.connect(f"file:{run / 'evolve.db'}?mode=ro", uri=True, timeout=10)
    try:
        row = conn.execute("SELECT status FROM commands WHERE id = ?", (command_id,)).fetchone()
        return row[0] if row else ""
    finally:
        conn.close()


@pytest.mark.slow
def test_steering_from_outside_keeps_one_database(toy_task: Path, tmp_path: Path) -> None:
    """The reported scenario: pause and resume from the TUI's own code, status from another
    process, then kill -9: every node printed as finished is in the database."""
    run = tmp_path / "run"
    engine = _engine(toy_task, run, "--steps", "400", "--workers", "2")
    out = _Lines(engine)
    try:
        _wait(lambda: len(out.finished_ids()) >= 3, 60, "three nodes")
        pause = send_command(run, "pause")
        _wait(lambda: _command_status(run, pause) == "handled", 3, "pause answered")
        resume = send_command(run, "resume")
        _wait(lambda: _command_status(run, resume) == "handled", 3, "resume answered")
        reader = RunReader(run)  # a live TUI reader, kept open across the engine's commits
        for _ in range(3):  # each new node is visible to every reader within a second
            printed = len(out.finished_ids())
            _wait(lambda p=printed: len(out.finished_ids()) > p, 30, "a new node")
            seen = len(out.finished_ids())
            _wait(lambda s=seen: _fresh_count(run) >= s, 1.0, "fresh reader sees it")
            _wait(lambda s=seen: _live_count(reader) >= s, 1.0, "the live reader sees it")
            status = subprocess.run(
                [sys.executable, "-m", "engine.cli", "status", str(run), "--json"],
                cwd=REPO, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert status.returncode == 0, status.stderr
            assert json.loads(status.stdout)["steps_done"] >= seen
        meta = reader.meta()
        beat = meta["engine"]["heartbeat"]
        _wait(lambda: reader.meta()["engine"]["heartbeat"] > beat, 3, "heartbeat moves")
        reader.close()
    finally:
        engine.send_signal(signal.SIGKILL)
        engine.wait(timeout=30)
        out.join()
    printed = out.finished_ids()
    assert len(printed) >= 6
    conn = sqlite3.connect(run / "evolve.db")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    stored = dict(conn.execute("SELECT id, status FROM nodes"))
    missing = [i for i in printed if stored.get(i) not in ("done", "failed", "pruned")]
    assert not missing, f"printed as finished but not in the database: {missing}"


READER = """
import sys, time
from pathlib import Path
from engine.store.reader import RunReader
from tui.poller import Poller
from engine.store.steer import send_command
run = Path(sys.argv[1])
while not (run / "evolve.db").exists():
    time.sleep(0.05)
time.sleep(0.5)
poller = Poller(RunReader(run))
sent = 0
for i in range(60):
    poller.tick()
    if i % 10 == 5:
        send_command(run, "pause" if sent % 2 == 0 else "resume")
        sent += 1
    time.sleep(0.05)
send_command(run, "resume")
"""


@pytest.mark.slow
def test_no_process_opens_the_database_by_a_descriptor_of_its_own(
    toy_task: Path, tmp_path: Path
) -> None:
    """An audit hook in the engine, in a TUI-like reader/writer, and in every reading and
    repairing command: none of them opens evolve.db, -wal or -shm itself."""
    run = tmp_path / "run"
    config = tmp_path / "c.yaml"
    config.write_text("backup_every: 2\nbackup_seconds: 0\n")
    reports = {name: tmp_path / f"{name}.audit" for name in ("engine", "tui", "cli")}
    engine = _engine(
        toy_task, run, "--steps", "12", "--workers", "2", "--config", str(config),
        report=reports["engine"],
    )  # fmt: skip
    script = tmp_path / "reader.py"
    script.write_text(READER)
    tui = subprocess.run(
        [sys.executable, AUDIT, str(reports["tui"]), "exec", str(script), str(run)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert tui.returncode == 0, tui.stderr
    out, err = engine.communicate(timeout=180)
    assert engine.returncode == 0, err
    for args in (
        ["status", str(run), "--json"],
        ["best", str(run)],
        ["export", str(run), "-o", str(tmp_path / "export")],
        ["backup", str(run), str(tmp_path / "copy.db")],
        ["restore", str(run)],
        ["status", str(run)],
    ):
        done = subprocess.run(
            [sys.executable, AUDIT, str(reports["cli"]), "cli", *args],
            cwd=REPO, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, (args, done.stderr)
    for name, report in reports.items():
        text = report.read_text() if report.exists() else ""
        assert text == "", f"{name} opened the database by its own descriptor:\n{text}"


def test_the_audit_sees_a_raw_open(tmp_path: Path) -> None:
    """The audit above can fail: the read that split the database is reported."""
    db = tmp_path / "run" / "evolve.db"
    db.parent.mkdir()
    sqlite3.connect(db).close()
    script = tmp_path / "raw.py"
    script.write_text(f"open({str(db)!r}, 'rb').read(16)\n")
    report = tmp_path / "raw.audit"
    done = subprocess.run(
        [sys.executable, AUDIT, str(report), "exec", str(script)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert str(db) in report.read_text()
