"""The Engineer: running evaluators as subprocesses, limits, cleanup, result parsing."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.execution.engineer import Engineer, Evaluation, Limits, run_command
from engine.task import TaskSpec, load_task

GOOD_PROGRAM = "VALUE = 1.5\n"

# Writes ``score`` = the program's VALUE, plus what the evaluator was told.
GOOD_EVALUATOR = """
import json, os, sys
namespace = {}
exec(open(sys.argv[1]).read(), namespace)
print("evaluating", sys.argv[1])
with open(os.environ["ASI_EVOLVE_RESULTS"], "w") as f:
    json.dump({
        "score": namespace["VALUE"],
        "metrics": {"value": namespace["VALUE"], "note": "fine"},
        "logs": "all good",
        "extra": [1, 2],
        "env": {k: os.environ.get(k) for k in (
            "ASI_EVOLVE_PROGRAM", "ASI_EVOLVE_WORKDIR", "ASI_EVOLVE_RESULTS",
            "PYTHONUNBUFFERED")},
        "cwd": os.getcwd(),
    }, f)
"""

# Starts a grandchild that ignores SIGTERM, records both pids, then does ``MODE``.
FORKING_EVALUATOR = """
import json, os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"])
with open("pids.json.tmp", "w") as f:
    json.dump({"evaluator": os.getpid(), "grandchild": child.pid}, f)
os.replace("pids.json.tmp", "pids.json")
MODE
"""


def make_task(root: Path, evaluator: str, **settings: Any) -> TaskSpec:
    """A task directory in ``root`` with the given evaluator source; settings go to task.yaml."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "task.md").write_text("Make VALUE large.\n")
    (root / "initial.py").write_text(GOOD_PROGRAM)
    (root / "evaluator.py").write_text(textwrap.dedent(evaluator))
    spec = {
        "name": "demo",
        "description": "task.md",
        "initial_program": "initial.py",
        "evaluator": "evaluator.py",
        "timeout": 20,
        **settings,
    }
    (root / "task.yaml").write_text(yaml.safe_dump(spec))
    return load_task(root)


def evaluate(
    task: TaskSpec,
    workdir: Path,
    code: str = GOOD_PROGRAM,
    limits: Limits | None = None,
    timeout: float | None = None,
) -> Evaluation:
    return asyncio.run(Engineer(task, limits).evaluate(code, workdir, timeout=timeout))


def results_writer(payload: str) -> str:
    """An evaluator that writes ``payload`` verbatim as results.json and exits 0."""
    return f"import os\nopen(os.environ['ASI_EVOLVE_RESULTS'], 'w').write({payload!r})\n"


def is_gone(pid: int, within: float = 3.0) -> bool:
    """Whether ``pid`` is dead (gone, or a zombie nobody reaped yet) within ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:
            # Field 3 of /proc/PID/stat is the state; the name (field 2) may hold spaces.
            stat = Path(f"/proc/{pid}/stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                return True
        except (FileNotFoundError, ProcessLookupError):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def read_pids(workdir: Path) -> dict[str, int]:
    return json.loads((workdir / "pids.json").read_text())


# ------------------------------------------------------------------------ success
def test_good_evaluator_gives_score_and_results(tmp_path: Path) -> None:
    task = make_task(tmp_path / "task", GOOD_EVALUATOR)
    workdir = tmp_path / "runs" / "node1"  # created by the Engineer
    ev = evaluate(task, workdir)

    assert ev.ok, ev.error
    assert ev.score == 1.5
    assert ev.error == ""
    assert ev.runtime > 0
    r = ev.results
    assert r["metrics"] == {"value": 1.5, "note": "fine"}
    assert r["logs"] == "all good"
    assert r["extra"] == [1, 2]
    assert r["returncode"] == 0 and r["timed_out"] is False
    assert "evaluating" in r["stdout_tail"]
    assert r["eval_runtime"] > 0
    program = workdir.resolve() / "initial.py"  # program_name defaults to the initial's
    assert program.read_text() == GOOD_PROGRAM
    assert r["env"] == {
        "ASI_EVOLVE_PROGRAM": str(program),
        "ASI_EVOLVE_WORKDIR": str(workdir.resolve()),
        "ASI_EVOLVE_RESULTS": str(workdir.resolve() / "results.json"),
        "PYTHONUNBUFFERED": "1",
    }
    assert r["cwd"] == str(workdir.resolve())
    assert "evaluating" in (workdir / "stdout.txt").read_text()
    assert (workdir / "stderr.txt").read_text() == ""
    json.dumps(r)  # storable


def test_long_logs_are_truncated(tmp_path: Path) -> None:
    payload = json.dumps({"score": 1, "logs": "x" * 50_000 + "END"})
    ev = evaluate(make_task(tmp_path / "task", results_writer(payload)), tmp_path / "w")
    assert ev.ok and ev.score == 1.0
    logs = ev.results["logs"]
    assert logs.endswith("END") and len(logs) < 20_100 and "chars cut" in logs


# ------------------------------------------------------------------------ failures
@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ("{not json", "malformed results.json"),
        ("[1, 2, 3]", "results.json is not a JSON object (got list)"),
        ('{"metrics": {}}', "results.json has no score"),
        ('{"score": "high"}', "score is not a number: 'high'"),
        ('{"score": true}', "score is not a number: True"),
        ('{"score": NaN}', "score is NaN"),
        ('{"score": Infinity}', "score is inf"),
        ('{"score": 3, "valid": false, "error": "shape\\nmismatch"}', "invalid: shape mismatch"),
        ('{"valid": false}', "invalid: the evaluator marked it invalid"),
    ],
)
def test_bad_results_fail_with_reason(tmp_path: Path, payload: str, expected: str) -> None:
    ev = evaluate(make_task(tmp_path / "task", results_writer(payload)), tmp_path / "w")
    assert not ev.ok
    assert ev.score is None
    assert ev.error.startswith(expected), ev.error
    assert "\n" not in ev.error
    assert ev.results["returncode"] == 0
    json.dumps(ev.results, allow_nan=False)  # NaN/inf are stored as strings


def test_missing_results_and_stale_file_removed(tmp_path: Path) -> None:
    task = make_task(tmp_path / "task", "print('forgot to write results')\n")
    workdir = tmp_path / "w"
    workdir.mkdir()
    (workdir / "results.json").write_text('{"score": 99}')  # left by a crashed run
    ev = evaluate(task, workdir)
    assert not ev.ok
    assert ev.error == "evaluator exited without writing results.json"
    assert "score" not in ev.results
    assert ev.results["stdout_tail"].strip() == "forgot to write results"


def test_nonzero_exit_reports_last_stderr_line(tmp_path: Path) -> None:
    evaluator = """
    import sys
    print("some progress")
    sys.stderr.write("warming up\\n" + "ValueError: " + "y" * 500 + "\\n\\n")
    sys.exit(3)
    """
    ev = evaluate(make_task(tmp_path / "task", evaluator), tmp_path / "w")
    assert not ev.ok and ev.score is None
    assert ev.error.startswith("evaluator exited with code 3: ValueError: yyy")
    assert len(ev.error) < 260 and "\n" not in ev.error
    assert ev.results["returncode"] == 3
    assert "warming up" in (tmp_path / "w" / "stderr.txt").read_text()


def test_killed_by_signal(tmp_path: Path) -> None:
    evaluator = "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n"
    ev = evaluate(make_task(tmp_path / "task", evaluator), tmp_path / "w")
    assert not ev.ok
    assert "SIGKILL" in ev.error, ev.error


def test_results_kept_when_evaluator_fails_after_writing(tmp_path: Path) -> None:
    evaluator = results_writer('{"score": 2, "metrics": {"partial": 1}}') + "raise SystemExit(4)\n"
    ev = evaluate(make_task(tmp_path / "task", evaluator), tmp_path / "w")
    assert not ev.ok and ev.score is None
    assert ev.error == "evaluator exited with code 4"
    assert ev.results["metrics"] == {"partial": 1}


# ------------------------------------------------------------------------ processes
@pytest.mark.slow
def test_timeout_kills_whole_group(tmp_path: Path) -> None:
    evaluator = FORKING_EVALUATOR.replace("MODE", "time.sleep(60)")
    task = make_task(tmp_path / "task", evaluator)
    workdir = tmp_path / "w"
    limits = Limits(kill_grace=0.5)
    started = time.monotonic()
    ev = evaluate(task, workdir, limits=limits, timeout=1.5)
    elapsed = time.monotonic() - started

    assert elapsed < 1.5 + 0.5 + 3.0, elapsed
    assert not ev.ok and ev.score is None
    assert ev.error == "timed out after 1.5s"
    assert ev.results["timed_out"] is True
    pids = read_pids(workdir)
    assert is_gone(pids["evaluator"])
    assert is_gone(pids["grandchild"])  # it ignored SIGTERM: SIGKILL got it


def test_grandchild_left_after_normal_exit_is_killed(tmp_path: Path) -> None:
    mode = "open(os.environ['ASI_EVOLVE_RESULTS'], 'w').write('{\"score\": 5}')"
    task = make_task(tmp_path / "task", FORKING_EVALUATOR.replace("MODE", mode))
    workdir = tmp_path / "w"
    started = time.monotonic()
    ev = evaluate(task, workdir)
    assert time.monotonic() - started < 8  # did not wait for the grandchild's pipes
    assert ev.ok and ev.score == 5.0
    assert is_gone(read_pids(workdir)["grandchild"])


def test_cancellation_kills_group(tmp_path: Path) -> None:
    evaluator = FORKING_EVALUATOR.replace("MODE", "time.sleep(60)")
    task = make_task(tmp_path / "task", evaluator)
    workdir = tmp_path / "w"

    async def scenario() -> None:
        job = asyncio.create_task(Engineer(task).evaluate(GOOD_PROGRAM, workdir))
        deadline = time.monotonic() + 10
        while not (workdir / "pids.json").exists():
            assert time.monotonic() < deadline, "evaluator did not start"
            await asyncio.sleep(0.05)
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job

    started = time.monotonic()
    asyncio.run(scenario())
    assert time.monotonic() - started < 10
    pids = read_pids(workdir)
    assert is_gone(pids["evaluator"])
    assert is_gone(pids["grandchild"])


def test_huge_output_keeps_memory_bounded(tmp_path: Path) -> None:
    megabyte = 1024 * 1024
    command = (
        f"{sys.executable} -c "
        f"\"import sys; [sys.stdout.buffer.write(b'x' * {megabyte}) for _ in range(50)];"
        f" sys.stdout.buffer.write(b'THE END')\""
    )
    limits = Limits(output_tail_bytes=10_000)
    tracemalloc.start()
    try:
        run = asyncio.run(run_command(command, tmp_path, 30, limits))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert run.returncode == 0 and not run.timed_out
    assert run.stdout_bytes == 50 * megabyte + len("THE END")
    assert run.stdout_tail.endswith("THE END")
    marker = f"[... {run.stdout_bytes - 10_000} bytes cut ...]\n"
    assert run.stdout_tail.startswith(marker)
    assert len(run.stdout_tail) <= 10_000 + len(marker)
    assert peak < 8 * megabyte, peak


def test_huge_output_through_engineer(tmp_path: Path) -> None:
    evaluator = (
        "import sys\n"
        "for _ in range(50): sys.stdout.write('y' * (1 << 20))\n" + results_writer('{"score": 1}')
    )
    limits = Limits(output_tail_bytes=20_000)
    ev = evaluate(make_task(tmp_path / "task", evaluator), tmp_path / "w", limits=limits)
    assert ev.ok
    assert len(ev.results["stdout_tail"]) < 4100
    assert (tmp_path / "w" / "stdout.txt").stat().st_size < 20_100


def test_memory_limit(tmp_path: Path) -> None:
    evaluator = "data = bytearray(2 * 1024**3)\n" + results_writer('{"score": 1}')
    limits = Limits(memory_mb=300)
    ev = evaluate(make_task(tmp_path / "task", evaluator), tmp_path / "w", limits=limits)
    assert not ev.ok
    assert "MemoryError" in ev.error, ev.error


def test_cpu_limit(tmp_path: Path) -> None:
    evaluator = "while True:\n    pass\n"
    limits = Limits(cpu_seconds=1)
    started = time.monotonic()
    ev = evaluate(make_task(tmp_path / "task", evaluator), tmp_path / "w", limits=limits)
    assert time.monotonic() - started < 6
    assert not ev.ok and not ev.results["timed_out"]
    assert "SIGXCPU" in ev.error or "SIGKILL" in ev.error, ev.error


def test_run_command_basics(tmp_path: Path) -> None:
    run = asyncio.run(
        run_command(
            "echo out; echo err >&2; echo $DEMO_VAR; exit 7",
            tmp_path,
            5,
            Limits(),
            env={"DEMO_VAR": "hello", "PATH": os.environ["PATH"]},
        )
    )
    assert run.returncode == 7 and not run.timed_out
    assert run.stdout_tail == "out\nhello\n" and run.stderr_tail == "err\n"
    assert run.stdout_bytes == len("out\nhello\n") and run.stderr_bytes == 4


# ------------------------------------------------------------------------ precheck
PRECHECK = """
import sys
if "forbidden" in open(sys.argv[1]).read():
    sys.stderr.write("checking...\\nforbidden import found\\n")
    sys.exit(1)
"""

MARKING_EVALUATOR = "open('evaluator_ran', 'w').close()\n" + results_writer('{"score": 2}')


def precheck_task(root: Path, **settings: Any) -> TaskSpec:
    root.mkdir(parents=True)
    (root / "check.py").write_text(textwrap.dedent(PRECHECK))
    settings.setdefault("precheck_command", "{python} {task_dir}/check.py {program}")
    return make_task(root, MARKING_EVALUATOR, **settings)


def test_precheck_rejection_skips_evaluation(tmp_path: Path) -> None:
    task = precheck_task(tmp_path / "task")
    workdir = tmp_path / "w"
    ev = evaluate(task, workdir, code="import forbidden\n")
    assert not ev.ok and ev.score is None
    assert ev.error == "rejected by precheck: forbidden import found"
    assert ev.results["precheck_rejected"] is True
    assert not (workdir / "evaluator_ran").exists()
    assert "forbidden import found" in (workdir / "precheck_stderr.txt").read_text()


def test_precheck_pass_then_evaluation(tmp_path: Path) -> None:
    task = precheck_task(tmp_path / "task")
    workdir = tmp_path / "w"
    ev = evaluate(task, workdir)
    assert ev.ok and ev.score == 2.0
    assert (workdir / "evaluator_ran").exists()


def test_precheck_timeout(tmp_path: Path) -> None:
    task = precheck_task(
        tmp_path / "task",
        precheck_command="{python} -c 'import time; time.sleep(30)'",
        precheck_timeout=0.5,
    )
    workdir = tmp_path / "w"
    started = time.monotonic()
    ev = evaluate(task, workdir, limits=Limits(kill_grace=0.2))
    assert time.monotonic() - started < 5
    assert ev.error == "rejected by precheck: timed out after 0.5s"
    assert not (workdir / "evaluator_ran").exists()


def test_api_keys_are_not_passed_to_the_evaluator(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-should-not-leak")
    monkeypatch.setenv("MY_LLM_KEY", "sk-custom-should-not-leak")
    task_dir = tmp_path / "task"
    task_dir.mkdir()
    (task_dir / "task.yaml").write_text(
        "name: envdump\ndescription: task.md\ninitial_program: initial.py\n"
        "evaluator: evaluate.py\ntimeout: 20\n"
    )
    (task_dir / "task.md").write_text("dump env\n")
    (task_dir / "initial.py").write_text("X = 1\n")
    (task_dir / "evaluate.py").write_text(
        "import json, os\n"
        "out = {'score': 1.0, 'logs': json.dumps(dict(os.environ))}\n"
        "json.dump(out, open('results.json', 'w'))\n"
    )
    engineer = Engineer(load_task(task_dir), secret_env=("MY_LLM_KEY",))
    evaluation = asyncio.run(engineer.evaluate("X = 1\n", tmp_path / "work"))
    assert evaluation.ok, evaluation.error
    seen = json.loads(evaluation.results["logs"])
    assert "OPENAI_API_KEY" not in seen and "MY_LLM_KEY" not in seen
    assert "ASI_EVOLVE_PROGRAM" in seen
