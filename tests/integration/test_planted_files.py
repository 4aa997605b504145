"""What an evaluator plants in its own work dir must not steer the engine (issue 19).

Every test runs a real evaluator with no sandbox, so it may plant anything in its work dir:
symlinks and hard links to host files (the victim stands in for the run's database), a
FIFO or ``/dev/zero`` as its results file, a symlinked directory in the program's path, a
results file with huge extra keys. The engine itself must stay safe: never write through,
never open or read what it is pointed at, never block, and store bounded results.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import fcntl
import json
import os
import resource
import subprocess
import sys
import tempfile
import textwrap
import types
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO

from engine.execution.engineer import Engineer, Evaluation, Limits
from engine.task import TaskSpec, load_task

PROGRAM = "VALUE = 2.5\n"
VICTIM_TEXT = "precious host data\n"

# Scores the program's VALUE; the stage (argv[2], "evaluate" by default) picks the attack.
EVALUATOR = """
import json, os, sys
VICTIM = {victim!r}
program, stage = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "evaluate")
namespace = {{}}
exec(open(program).read(), namespace)
{attack}
with open(os.environ["ASI_EVOLVE_RESULTS"], "w") as f:
    json.dump({{"score": namespace["VALUE"]}}, f)
"""


def make_task(root: Path, attack: str, victim: Path, **settings: Any) -> TaskSpec:
    root.mkdir(parents=True, exist_ok=True)
    (root / "task.md").write_text("Make VALUE large.\n")
    (root / "initial.py").write_text(PROGRAM)
    source = EVALUATOR.format(victim=str(victim), attack=textwrap.dedent(attack))
    (root / "evaluator.py").write_text(source)
    spec = {
        "name": "planted",
        "description": "task.md",
        "initial_program": "initial.py",
        "evaluator": "evaluator.py",
        "timeout": 30,
        **settings,
    }
    (root / "task.yaml").write_text(yaml.safe_dump(spec))
    return load_task(root)


def two_stages() -> list[dict[str, str]]:
    return [
        {"name": "check", "command": "{python} {evaluator} {program} check"},
        {"name": "evaluate", "command": "{python} {evaluator} {program} evaluate"},
    ]


def evaluate(task: TaskSpec, workdir: Path, code: str = PROGRAM) -> Evaluation:
    return asyncio.run(Engineer(task, Limits()).evaluate(code, workdir))


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "host" / "victim.db"
    path.parent.mkdir()
    path.write_text(VICTIM_TEXT)
    return path


# ------------------------------------------------------------- 1. output tail files
def test_planted_output_links_are_replaced_never_written_through(
    tmp_path: Path, victim: Path
) -> None:
    other = victim.with_name("other.db")
    other.write_text(VICTIM_TEXT)
    attack = """
    os.symlink(VICTIM, "stdout.txt")
    os.link(VICTIM.replace("victim.db", "other.db"), "stderr.txt")
    print("progress line\\n" * 20000 + "LAST OUT")
    print("warning: LAST ERR", file=sys.stderr)
    """
    workdir = tmp_path / "w"
    ev = evaluate(make_task(tmp_path / "task", attack, victim), workdir)
    assert ev.ok, ev.error
    assert victim.read_text() == VICTIM_TEXT
    assert other.read_text() == VICTIM_TEXT
    assert ev.results["stdout_tail"].rstrip().endswith("LAST OUT")
    assert "LAST ERR" in ev.results["stderr_tail"]
    for name, last in (("stdout.txt", "LAST OUT"), ("stderr.txt", "LAST ERR")):
        path = workdir / name
        assert not path.is_symlink() and path.stat().st_nlink == 1
        assert last in path.read_text()


def test_planted_stage_output_links_are_replaced(tmp_path: Path, victim: Path) -> None:
    attack = """
    if stage == "check":
        os.symlink(VICTIM, "check_stdout.txt")
        os.symlink(VICTIM, "check_stderr.txt")
        os.link(VICTIM, "stdout.txt")  # the next stage's file, planted early
        print("checked")
    """
    workdir = tmp_path / "w"
    task = make_task(tmp_path / "task", attack, victim, stages=two_stages())
    ev = evaluate(task, workdir)
    assert ev.ok, ev.error
    assert victim.read_text() == VICTIM_TEXT
    assert "checked" in (workdir / "check_stdout.txt").read_text()
    assert not (workdir / "check_stderr.txt").is_symlink()
    assert (workdir / "stdout.txt").stat().st_nlink == 1


def test_hard_linked_results_never_drop_the_engines_locks(tmp_path: Path, victim: Path) -> None:
    """Closing any descriptor of a file drops this process's POSIX locks on it (SQLite's
    too): the engine must never open an inode the evaluator points it at."""
    attack = """
    os.link(VICTIM, os.environ["ASI_EVOLVE_RESULTS"])
    os.link(VICTIM, "stdout.txt")
    sys.exit(0)
    """
    task = make_task(tmp_path / "task", attack, victim)
    fd = os.open(victim, os.O_RDWR)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX)
        ev = evaluate(task, tmp_path / "w")
        probe = (
            "import fcntl, os, sys\n"
            "fd = os.open(sys.argv[1], os.O_RDWR)\n"
            "try:\n    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
            "except OSError:\n    sys.exit(7)\n"
        )
        held = subprocess.run([sys.executable, "-c", probe, str(victim)], timeout=30)
        assert held.returncode == 7, "the engine's lock on the victim was dropped"
    finally:
        os.close(fd)
    assert not ev.ok
    assert ev.error == "results.json has 2 hard links: refused"
    assert victim.read_text() == VICTIM_TEXT


# ------------------------------------------------------------------- 2. the program
def test_program_swapped_for_a_symlink_between_stages(tmp_path: Path, victim: Path) -> None:
    attack = """
    if stage == "check":
        os.remove(program)
        os.symlink(VICTIM, program)
    """
    workdir = tmp_path / "w"
    ev = evaluate(make_task(tmp_path / "task", attack, victim, stages=two_stages()), workdir)
    assert victim.read_text() == VICTIM_TEXT
    assert ev.ok, ev.error
    assert ev.score == 2.5
    program = workdir / "initial.py"
    assert not program.is_symlink() and program.read_text() == PROGRAM


def test_program_directory_swapped_for_a_symlink(tmp_path: Path, victim: Path) -> None:
    attack = """
    if stage == "check":
        import shutil
        shutil.rmtree("src")
        os.symlink(os.path.dirname(VICTIM), "src")
    """
    task = make_task(
        tmp_path / "task", attack, victim, stages=two_stages(), program_name="src/prog.py"
    )
    ev = evaluate(task, tmp_path / "w")
    assert not (victim.parent / "prog.py").exists()
    assert not ev.ok
    assert ev.error == "cannot write the program: src is a symlink: refused"


def test_work_dir_that_is_a_symlink_is_refused(tmp_path: Path, victim: Path) -> None:
    task = make_task(tmp_path / "task", "", victim)
    workdir = tmp_path / "nodes" / "3"
    workdir.parent.mkdir()
    workdir.symlink_to(victim.parent, target_is_directory=True)
    ev = evaluate(task, workdir)
    assert not ev.ok and "symlink: refused" in ev.error
    assert sorted(os.listdir(victim.parent)) == ["victim.db"]


# -------------------------------------------------------------- 3. the results file
# Runs one evaluation in a child process with a soft address-space limit, so that an
# engine that reads an endless device fails there instead of eating the machine's memory.
CHILD = """
import asyncio, json, resource, sys, time
from pathlib import Path
from engine.execution.engineer import Engineer
from engine.task import load_task
task = load_task(Path(sys.argv[1]))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.monotonic()
ev = asyncio.run(Engineer(task).evaluate(task.initial_code(), Path(sys.argv[2])))
print(json.dumps({
    "ok": ev.ok, "error": ev.error, "seconds": time.monotonic() - started,
    "rss_growth_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before,
}))
"""


def evaluate_in_child(task: TaskSpec, workdir: Path, timeout: float = 40) -> dict[str, Any]:
    def limit_memory() -> None:
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, hard))

    try:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(task.directory), str(workdir)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
            preexec_fn=limit_memory,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"the engine was still reading the results file after {timeout}s")
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_results_symlink_to_dev_zero_fails_fast_with_bounded_memory(
    tmp_path: Path, victim: Path
) -> None:
    attack = """
    os.symlink("/dev/zero", os.environ["ASI_EVOLVE_RESULTS"])
    sys.exit(0)
    """
    out = evaluate_in_child(make_task(tmp_path / "task", attack, victim), tmp_path / "w")
    assert out["ok"] is False
    assert out["error"] == "results.json is a symlink: refused"
    assert out["seconds"] < 15
    assert out["rss_growth_kb"] < 100_000


def test_results_fifo_does_not_block(tmp_path: Path, victim: Path) -> None:
    attack = """
    os.mkfifo(os.environ["ASI_EVOLVE_RESULTS"])
    sys.exit(0)
    """
    out = evaluate_in_child(make_task(tmp_path / "task", attack, victim), tmp_path / "w")
    assert out["ok"] is False
    assert out["error"] == "results.json is a FIFO, not a regular file: refused"
    assert out["seconds"] < 15


def test_results_fifo_in_a_stage_without_score_is_refused(tmp_path: Path, victim: Path) -> None:
    attack = """
    if stage == "check":
        os.mkfifo(os.environ["ASI_EVOLVE_RESULTS"])
        sys.exit(0)
    """
    task = make_task(tmp_path / "task", attack, victim, stages=two_stages())
    out = evaluate_in_child(task, tmp_path / "w")
    assert out["ok"] is False
    assert out["error"] == "check: check_results.json is a FIFO, not a regular file: refused"


# ----------------------------------------------------------------- 4. extra keys
def test_huge_extra_keys_are_stored_bounded(tmp_path: Path, victim: Path) -> None:
    task_dir = tmp_path / "task"
    task = make_task(task_dir, "", victim)
    (task_dir / "evaluator.py").write_text(
        textwrap.dedent(
            """
            import json, os
            sample = {"original": "w" * 360, "cleaned": "v" * 360, "lost": ["x" * 40] * 8}
            out = {"score": 1.5, "small": [1, 2], "samples": [sample] * 25,
                   "blob": "x" * 15_000_000, "nested": {"rows": [list(range(50))] * 2000},
                   "error": "e" * 200_000, "logs": ["not a string"] * 20_000}
            out.update({f"key{i}": i for i in range(5000)})
            with open(os.environ["ASI_EVOLVE_RESULTS"], "w") as f:
                json.dump(out, f)
            """
        )
    )
    ev = evaluate(task, tmp_path / "w")
    assert ev.ok, ev.error
    assert ev.score == 1.5
    r = ev.results
    assert len(json.dumps(r)) < 300_000  # the file held 15.9 MB
    assert r["small"] == [1, 2]
    assert len(r["samples"]) == 25 and r["samples"][0]["cleaned"] == "v" * 360  # real use
    assert r["blob"].startswith("xxx") and r["blob"].endswith("... [cut: 15000000 chars]")
    assert len(r["blob"]) < 65_000
    assert r["error"].endswith("... [cut: 200000 chars]") and len(r["error"]) < 4100
    assert "nested" not in r or "[cut:" in r["nested"]
    assert "logs" not in r or "[cut:" in r["logs"]
    assert r["extra_keys_cut"] > 4800
    assert r["returncode"] == 0 and "stdout_tail" in r


# -------------------------------------------------------------------------- 5. Ray
class _FakeRay(types.ModuleType):
    """Just enough of ``ray`` for ``RayEngineer.run_stage``: a "remote" call runs the real
    worker function (``_run_remote``) in a thread of this process, or returns ``reply``."""

    def __init__(self, reply: tuple[dict[str, Any], dict[str, bytes]] | None = None) -> None:
        super().__init__("ray")
        self.reply = reply
        self.pool = concurrent.futures.ThreadPoolExecutor(1)
        self.exceptions = types.SimpleNamespace(
            WorkerCrashedError=type("WorkerCrashedError", (Exception,), {}),
            NodeDiedError=type("NodeDiedError", (Exception,), {}),
            RaySystemError=type("RaySystemError", (Exception,), {}),
            RayError=type("RayError", (Exception,), {}),
        )

    def is_initialized(self) -> bool:
        return True

    def init(self, **options: Any) -> None:
        pass

    def put(self, value: Any) -> Any:
        return value

    def cancel(self, ref: Any, force: bool = False) -> None:
        pass

    def remote(self, function: Any) -> Any:
        fake = self

        class Remote:
            def options(self, **options: Any) -> Remote:
                return self

            def remote(self, *args: Any) -> Any:
                if fake.reply is not None:
                    return asyncio.wrap_future(fake.pool.submit(lambda: fake.reply))
                return asyncio.wrap_future(fake.pool.submit(function, *args))

        return Remote()


def _ray_stage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, task: TaskSpec, workdir: Path, fake: Any
) -> Evaluation:
    from engine.execution.ray_backend import RayEngineer, RaySettings

    monkeypatch.setitem(sys.modules, "ray", fake)
    scratch = tmp_path / "worker-tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    engineer = RayEngineer(task, Limits(), settings=RaySettings(address="auto"))
    return asyncio.run(engineer.run_stage(PROGRAM, task.stages[-1], workdir))


def test_ray_worker_ships_no_planted_links(
    tmp_path: Path, victim: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = victim.with_name("secret.txt")
    secret.write_text("TOKEN=hunter2\n")
    attack = """
    secret = VICTIM.replace("victim.db", "secret.txt")
    os.symlink(secret, "leak.txt")
    os.symlink(secret, "leak.json")
    os.link(secret, "hard.txt")
    os.mkfifo("pipe.txt")
    print("evaluated")
    """
    workdir = tmp_path / "head" / "nodes" / "0"
    task = make_task(tmp_path / "task", attack, victim)
    ev = _ray_stage(tmp_path, monkeypatch, task, workdir, _FakeRay())
    assert ev.ok, ev.error
    assert sorted(os.listdir(workdir)) == ["initial.py", "results.json", "stderr.txt", "stdout.txt"]
    assert "evaluated" in (workdir / "stdout.txt").read_text()
    assert secret.read_text() == "TOKEN=hunter2\n"


def test_ray_head_writes_plain_names_only_and_never_through_links(
    tmp_path: Path, victim: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workdir = tmp_path / "head" / "nodes" / "0"
    workdir.mkdir(parents=True)
    (workdir / "stdout.txt").symlink_to(victim)
    (workdir / "initial.py").symlink_to(victim)
    outcome = {"ok": True, "score": 1.0, "results": {}, "error": "", "runtime": 0.1}
    files = {
        "stdout.txt": b"out\n",
        "../escape.txt": b"x",
        str(tmp_path / "absolute.txt"): b"x",
        "..": b"x",
        "results.json": b'{"score": 1.0}',
    }
    task = make_task(tmp_path / "task", "", victim)
    ev = _ray_stage(tmp_path, monkeypatch, task, workdir, _FakeRay(reply=(outcome, files)))
    assert ev.ok
    assert victim.read_text() == VICTIM_TEXT
    assert not (workdir.parent / "escape.txt").exists()
    assert not (tmp_path / "absolute.txt").exists()
    assert sorted(os.listdir(workdir)) == ["initial.py", "results.json", "stdout.txt"]
    assert (workdir / "stdout.txt").read_text() == "out\n"
    assert not (workdir / "initial.py").is_symlink()
    assert (workdir / "initial.py").read_text() == PROGRAM


# ----------------------------------------------------------- engine/execution/workfiles.py itself
@pytest.mark.parametrize("reopen", ["o_path", "lstat"])
def test_reader_refuses_planted_files(
    tmp_path: Path, victim: Path, reopen: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine.execution import workfiles

    if reopen == "lstat":  # the fallback without O_PATH or /proc
        monkeypatch.setattr(workfiles, "_O_PATH", 0)
    work = tmp_path / "w"
    work.mkdir()
    (work / "ok.json").write_text("{}")
    (work / "big.json").write_text("x" * 101)
    (work / "link.json").symlink_to(victim)
    (work / "zero.json").symlink_to("/dev/zero")
    os.link(victim, work / "hard.json")
    os.mkfifo(work / "fifo.json")
    (work / "dir.json").mkdir()
    expected = {
        "link.json": "link.json is a symlink: refused",
        "zero.json": "zero.json is a symlink: refused",
        "hard.json": "hard.json has 2 hard links: refused",
        "fifo.json": "fifo.json is a FIFO, not a regular file: refused",
        "dir.json": "dir.json is a directory: refused",
        "big.json": "big.json too large (101 bytes)",
        "../ok.json": "'../ok.json' is not a plain file name: refused",
    }
    with workfiles.WorkDir(work) as files:
        assert files.read("ok.json", 100) == b"{}"
        for name, reason in expected.items():
            with pytest.raises(workfiles.Refused) as refused:
                files.read(name, 100)
            assert str(refused.value) == reason
        with pytest.raises(FileNotFoundError):
            files.read("missing.json", 100)
        assert files.collect((".json",), 100) == {"ok.json": b"{}"}
        for bad in ("../x.txt", "/tmp/x.txt", "a//b.txt", "."):
            with pytest.raises(workfiles.Refused):
                files.write(bad, "x")
    assert victim.read_text() == VICTIM_TEXT
