"""Crash windows and a full disk: the same command resumes, and failures are one line.

A kill -9 right after the lock or the database is created must not leave a directory that
``run`` then refuses; a full disk ends the run with one line and exit 1, with every committed
node intact, and the same command finishes the run once there is space again.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import REPO, cli

from engine.store.lock import LOCK_NAME
from engine.store.run_store import BUILDING_NAME, DB_NAME, RunStore


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_a_directory_left_by_a_kill_right_after_the_lock_starts_afresh(
    toy_task: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_NAME).write_text("12345")  # the engine died right after taking the lock
    result = cli("run", str(toy_task), "--run-dir", str(run), "--steps", "2")
    assert result.returncode == 0, result.stderr
    assert RunStore.open(run).steps_done() == 2


def test_a_database_killed_while_it_was_being_created_starts_afresh(
    toy_task: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_NAME).write_text("")
    half = sqlite3.connect(run / BUILDING_NAME)  # schema made, no meta yet
    half.execute("CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT)")
    half.commit()
    half.close()
    result = cli("run", str(toy_task), "--run-dir", str(run), "--steps", "1")
    assert result.returncode == 0, result.stderr
    store = RunStore.open(run)
    assert store.get_meta("task") == "toy" and store.steps_done() == 1
    assert not (run / BUILDING_NAME).exists()


def test_a_run_database_of_task_none_is_set_aside_not_refused(
    toy_task: Path, tmp_path: Path
) -> None:
    """What an older version left when killed between creating the database and its meta."""
    run = tmp_path / "run"
    RunStore.create(run).close()  # a complete schema, no task, no node
    result = cli("run", str(toy_task), "--run-dir", str(run), "--steps", "1")
    assert result.returncode == 0, result.stderr
    assert RunStore.open(run).get_meta("task") == "toy"
    assert list(run.glob(f"{DB_NAME}.unstarted-*")), "the old file is kept, never deleted"


def test_a_refused_run_leaves_nothing_in_the_directory(toy_task: Path, tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    refused = cli("run", str(toy_task), "--run-dir", str(foreign))
    assert refused.returncode == 2
    restore = cli("restore", str(foreign))
    assert restore.returncode == 2 and "is not a run directory" in _one_error_line(restore)
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    run = tmp_path / "run"
    assert cli("run", str(toy_task), "--run-dir", str(run), "--steps", "1").returncode == 0
    assert not (run / LOCK_NAME).exists(), "the lock file is removed when the engine ends"


def test_a_run_dir_too_long_for_sqlite_is_said_so(toy_task: Path, tmp_path: Path) -> None:
    deep = tmp_path / "/".join(["d" * 60] * 40)  # about 2,500 characters
    result = cli("run", str(toy_task), "--run-dir", str(deep), "--steps", "1")
    assert result.returncode == 2
    line = _one_error_line(result)
    assert "too long for SQLite" in line and "damaged" not in line
    assert not deep.exists()
    status = cli("status", str(deep))
    assert status.returncode == 2


FILL = textwrap.dedent(
    """
    set -e
    mount -t tmpfs -o size={size} tmpfs {mnt}
    cd {repo}
    set +e
    {python} -m engine.cli run {task} --run-dir {mnt}/run --steps 200 --workers 2 \\
        --no-cognition > {out}/stdout.txt 2> {out}/stderr.txt
    echo $? > {out}/rc.txt
    cp {mnt}/run/evolve.db* {out}/ 2>/dev/null
    mount -o remount,size=64m {mnt}
    {python} -m engine.cli run {task} --run-dir {mnt}/run --steps 200 --workers 2 \\
        --no-cognition --quiet > {out}/stdout2.txt 2> {out}/stderr2.txt
    echo $? > {out}/rc2.txt
    {python} -m engine.cli status {mnt}/run --json > {out}/status.json
    """
)


def _namespaces_work() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
         "mount -t tmpfs -o size=1m tmpfs /mnt && umount /mnt"],
        capture_output=True,
    )  # fmt: skip
    return probe.returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not _namespaces_work(), reason="needs unshare to mount a small tmpfs")
def test_a_full_disk_is_one_line_and_the_run_resumes(toy_task: Path, tmp_path: Path) -> None:
    import json

    mnt, out = tmp_path / "mnt", tmp_path / "out"
    mnt.mkdir()
    out.mkdir()
    script = FILL.format(
        size="400k", mnt=mnt, repo=REPO, python=sys.executable, task=toy_task, out=out
    )
    subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
        env={"PATH": "/usr/bin:/bin", "TOY_DELAY": "0", "HOME": str(tmp_path)},
        timeout=600, check=True,
    )  # fmt: skip
    assert (out / "rc.txt").read_text().strip() == "1", (out / "stderr.txt").read_text()
    stderr = (out / "stderr.txt").read_text()
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr, stderr
    assert "is full" in stderr and "resume" in stderr
    printed = [
        line for line in (out / "stdout.txt").read_text().splitlines() if line.startswith("step")
    ]
    assert printed, "some nodes finished before the disk filled"
    assert (out / "rc2.txt").read_text().strip() == "0", (out / "stderr2.txt").read_text()
    status = json.loads((out / "status.json").read_text())
    assert status["steps_done"] == 200
