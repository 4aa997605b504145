"""An evaluator under the sandbox cannot destroy or forge its run, nor read the engine."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from engine.app.plan import secret_env_names
from engine.execution import reaper, sandbox
from engine.execution.engineer import Engineer, Limits, run_command
from engine.task import load_task

KINDS = ("bwrap", "landlock")
REPO = Path(__file__).resolve().parents[2]
AVAILABLE = {kind: sandbox.probe(kind) for kind in KINDS}


def _need(kind: str) -> None:
    if AVAILABLE[kind]:
        pytest.skip(f"no {kind} sandbox on this machine: {AVAILABLE[kind]}")


ATTACK = textwrap.dedent(
    """
    import json, os, sys, tempfile
    engine_pid = int(sys.argv[1])
    tried = {}
    def attempt(name, action):
        try:
            action()
            tried[name] = "done"
        except OSError as exc:
            tried[name] = type(exc).__name__
    attempt("delete_db", lambda: os.remove("../../evolve.db"))
    attempt("delete_wal", lambda: os.remove("../../evolve.db-wal"))
    attempt("write_run_dir", lambda: open("../../forged.txt", "w").write("x"))
    attempt("other_node", lambda: open("../5/results.json", "w").write('{"score": 99}'))
    attempt("rename_node", lambda: os.rename("../5", "../5x"))
    attempt("task_evaluator", lambda: open(os.environ["TASK_DIR"] + "/evaluate.py", "a").write("#"))
    attempt("engine_environ", lambda: open(f"/proc/{engine_pid}/environ", "rb").read())
    attempt("own_dir", lambda: open("mine.txt", "w").write("ok"))
    attempt("tmpdir", lambda: tempfile.mkstemp())
    attempt("dev_null", lambda: open("/dev/null", "w").write("x"))
    tried["engine_visible"] = os.path.exists(f"/proc/{engine_pid}")
    json.dump(tried, open("attack.json", "w"))
    """
)


def _layout(tmp_path: Path) -> tuple[Path, Path, Path]:
    run_dir = tmp_path / "run"
    task_dir = tmp_path / "task"
    (run_dir / "nodes" / "5").mkdir(parents=True)
    (run_dir / "nodes" / "5" / "results.json").write_text('{"score": 1}')
    (run_dir / "evolve.db").write_text("db")
    (run_dir / "evolve.db-wal").write_text("wal")
    task_dir.mkdir()
    (task_dir / "evaluate.py").write_text("print('evaluator')\n")
    (task_dir / "attack.py").write_text(ATTACK)
    work = run_dir / "nodes" / "7"
    work.mkdir()
    return run_dir, task_dir, work


def _attack(kind: str, tmp_path: Path) -> tuple[dict, Path, Path]:
    run_dir, task_dir, work = _layout(tmp_path)
    box = sandbox.make_sandbox(sandbox.SandboxSettings(kind, writable=()), run_dir, task_dir)
    assert box.kind == kind
    command = f"{sys.executable} {task_dir / 'attack.py'} {os.getpid()}"
    env = {**os.environ, "TASK_DIR": str(task_dir)}
    run = asyncio.run(run_command(command, work, 60, Limits(), env=env, sandbox=box))
    assert run.returncode == 0, run.stderr_tail
    return json.loads((work / "attack.json").read_text()), run_dir, task_dir


@pytest.mark.parametrize("kind", KINDS)
def test_an_evaluator_cannot_touch_the_run_or_the_task(kind: str, tmp_path: Path) -> None:
    _need(kind)
    tried, run_dir, task_dir = _attack(kind, tmp_path)
    for name in ("delete_db", "delete_wal", "write_run_dir", "other_node", "rename_node"):
        assert tried[name] != "done", name
    assert tried["task_evaluator"] != "done"
    assert (run_dir / "evolve.db").read_text() == "db"
    assert (run_dir / "evolve.db-wal").read_text() == "wal"
    assert (run_dir / "nodes" / "5" / "results.json").read_text() == '{"score": 1}'
    assert not (run_dir / "forged.txt").exists()
    assert (task_dir / "evaluate.py").read_text() == "print('evaluator')\n"
    # What the evaluator needs still works.
    assert tried["own_dir"] == tried["tmpdir"] == tried["dev_null"] == "done"
    assert (run_dir / "nodes" / "7" / "mine.txt").read_text() == "ok"
    box = sandbox.make_sandbox(sandbox.SandboxSettings(kind, writable=()), run_dir, task_dir)
    if kind == "bwrap" or (box.layers is not None and box.layers.pid):
        # A PID namespace of its own: the engine's /proc is out of reach.
        assert tried["engine_visible"] is False
    assert tried["engine_environ"] != "done"


def test_without_a_sandbox_the_same_attack_succeeds(tmp_path: Path) -> None:
    """The checks above can fail: with kind none the attack goes through."""
    tried, run_dir, _ = _attack("none", tmp_path)
    assert tried["delete_db"] == "done" and not (run_dir / "evolve.db").exists()
    assert tried["other_node"] == "done"


def test_bwrap_keeps_the_run_read_only_inside_a_writable_extra(tmp_path: Path) -> None:
    _need("bwrap")
    run_dir, task_dir, work = _layout(tmp_path)
    settings = sandbox.SandboxSettings("bwrap", writable=(str(tmp_path),))
    box = sandbox.make_sandbox(settings, run_dir, task_dir)
    script = f"echo x > ../../forged; echo y > {tmp_path}/cache.txt; echo z > own"
    run = asyncio.run(run_command(script, work, 30, Limits(), sandbox=box))
    assert not (run_dir / "forged").exists()
    assert (tmp_path / "cache.txt").read_text() == "y\n"
    assert (work / "own").read_text() == "z\n"
    assert run.returncode == 0


def test_the_fallback_spawns_no_interpreter_but_its_supervisor(tmp_path: Path) -> None:
    """The former Landlock wrapper (python -I sandbox.py) is gone: the supervisor, started
    with -I -S, is the one interpreter between the engine and /bin/sh."""
    _need("landlock")
    run_dir, task_dir, work = _layout(tmp_path)
    box = sandbox.make_sandbox(sandbox.SandboxSettings("landlock", writable=()), run_dir, task_dir)
    argv = box.wrap(["/bin/sh", "-c", "true"], work)
    supervisor = REPO / "engine" / "execution" / "supervisor.py"
    assert argv[:4] == [sys.executable, "-I", "-S", str(supervisor)]
    assert argv[argv.index("--") + 1 :] == ["/bin/sh", "-c", "true"]
    assert "cannot stop:" in box.describe()


def test_landlock_refuses_a_writable_path_holding_the_run(tmp_path: Path) -> None:
    _need("landlock")
    run_dir, task_dir, _ = _layout(tmp_path)
    settings = sandbox.SandboxSettings("landlock", writable=(str(tmp_path),))
    with pytest.raises(sandbox.SandboxError, match="must stay read-only"):
        sandbox.make_sandbox(settings, run_dir, task_dir)


def test_bwrap_kills_an_escaped_grandchild_with_its_namespace(tmp_path: Path) -> None:
    """No reaper at all: the PID namespace alone ends a setsid + double fork."""
    _need("bwrap")
    run_dir, task_dir, work = _layout(tmp_path)
    box = sandbox.make_sandbox(sandbox.SandboxSettings("bwrap", writable=()), run_dir, task_dir)
    script = textwrap.dedent(
        """
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                time.sleep(120)
            os._exit(0)
        time.sleep(0.3)
        """
    )
    (work / "escape.py").write_text(script)
    before = _sleeping_children_of_pid_namespaces()
    run = asyncio.run(
        run_command(f"{sys.executable} escape.py", work, 30, Limits(), sandbox=box, reaper=None)
    )
    assert run.returncode == 0, run.stderr_tail
    assert _sleeping_children_of_pid_namespaces() <= before


def _sleeping_children_of_pid_namespaces() -> set[int]:
    """Live processes running escape.py (only this test starts one)."""
    found = set()
    for pid, proc in reaper.snapshot().items():
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"escape.py" in cmd and reaper.alive(proc):
            found.add(pid)
    return found


def test_a_real_evaluator_scores_under_the_sandbox(tmp_path: Path) -> None:
    """The circle packing evaluator (a child process, a log file) works confined."""
    kind = next((k for k in KINDS if not AVAILABLE[k]), None)
    if kind is None:
        pytest.skip(f"no sandbox on this machine: {AVAILABLE}")
    task = load_task(Path(__file__).resolve().parents[2] / "domains" / "circle_packing")
    run_dir = tmp_path / "run"
    work = run_dir / "nodes" / "0"
    work.mkdir(parents=True)
    box = sandbox.make_sandbox(sandbox.SandboxSettings(kind, writable=()), run_dir, task.directory)
    engineer = Engineer(task, Limits(), sandbox=box, reaper=reaper.Reaper(run_dir))
    code = task.initial_code()
    evaluation = asyncio.run(engineer.evaluate(code, work))
    assert evaluation.ok, evaluation.error
    assert evaluation.score == pytest.approx(0.9598, abs=1e-3)
    assert not list((run_dir / reaper.MARKERS_DIR).glob("*.json"))  # swept and cleared


def test_choose_and_bad_settings() -> None:
    assert sandbox.choose("none") == ("none", "engineer.sandbox: none")
    kind, note = sandbox.choose("auto")
    assert kind in ("bwrap", "landlock", "none") and note.startswith("auto:")
    with pytest.raises(sandbox.SandboxError, match="must be one of"):
        sandbox.choose("docker")
    with pytest.raises(sandbox.SandboxError, match="needs bwrap"):
        sandbox.choose("landlock", network=False)
    with pytest.raises(sandbox.SandboxError, match="not an absolute path"):
        sandbox.make_sandbox(sandbox.SandboxSettings("none", writable=("rel/dir",)), Path("/x"))


def test_bwrap_command_line_order() -> None:
    argv = sandbox.bwrap_argv(
        ["/bin/sh", "-c", "true"],
        Path("/r/nodes/1"),
        readonly=(Path("/r"),),
        writable=(Path("/"),),
        network=False,
    )
    text = " ".join(argv)
    assert "--unshare-pid" in argv and "--unshare-net" in argv and "--die-with-parent" in argv
    assert "--dev-bind /dev /dev" in text and "--proc /proc" in text
    # Later mounts win: extras, then the read-only run dir, then the work dir.
    assert (
        text.index("--bind / /")
        < text.index("--ro-bind /r /r")
        < text.index("--bind /r/nodes/1 /r/nodes/1")
    )
    assert argv[-4:] == ["--", "/bin/sh", "-c", "true"]


def test_every_key_variable_named_in_the_config_is_kept_from_evaluators(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = {
        "api": {"api_key_env": "MAIN_KEY", "roles": {"analyzer": {"api_key_env": "CHEAP_KEY"}}},
        "researcher": {"api_key_env": "RESEARCH_KEY"},
        "judge": {"api_key_env": "JUDGE_KEY"},
        "cognition": {"embedder": "openai", "api_key_env": "EMBED_KEY"},
        "steps": 3,
    }
    names = secret_env_names(config)
    assert set(names) == {"MAIN_KEY", "CHEAP_KEY", "RESEARCH_KEY", "JUDGE_KEY", "EMBED_KEY"}
    for name in (*names, "OPENAI_API_KEY"):
        monkeypatch.setenv(name, f"secret-{name}")
    task_dir = tmp_path / "task"
    task_dir.mkdir()
    (task_dir / "task.yaml").write_text(
        "name: envtask\ndescription: task.md\ninitial_program: initial.py\n"
        "evaluator: evaluate.py\ntimeout: 30\n"
    )
    (task_dir / "task.md").write_text("env\n")
    (task_dir / "initial.py").write_text("X = 1\n")
    (task_dir / "evaluate.py").write_text(
        "import json, os\n"
        "seen = sorted(v for v in os.environ.values() if v.startswith('secret-'))\n"
        "json.dump({'score': 1.0, 'metrics': {'seen': len(seen)}, 'logs': repr(seen)},"
        " open(os.environ['ASI_EVOLVE_RESULTS'], 'w'))\n"
    )
    engineer = Engineer(load_task(task_dir), Limits(), secret_env=names)
    evaluation = asyncio.run(engineer.evaluate("X = 2\n", tmp_path / "work"))
    assert evaluation.ok, evaluation.error
    assert evaluation.results["metrics"]["seen"] == 0, evaluation.results["logs"]


PEEK = textwrap.dedent(
    """
    import subprocess, sys
    sys.path.insert(0, sys.argv[1])
    from engine.execution.sandbox import private_memory
    peek = "import os, sys; open(f'/proc/{os.getppid()}/environ', 'rb').read(); print('read')"

    def peeks() -> str:
        done = subprocess.run([sys.executable, "-c", peek], capture_output=True, text=True)
        return done.stdout.strip() or "denied"

    print(peeks())
    with private_memory() as ok:
        print(ok, peeks())
    print(peeks())
    """
)


def test_private_memory_closes_the_engine_environment_to_same_user_processes() -> None:
    """Run as an unprivileged user (root may read any process's memory anyway)."""
    repo = str(Path(__file__).resolve().parents[2])
    if os.getuid() != 0:
        argv = [sys.executable, "-c", PEEK, repo]
    elif shutil.which("setpriv") and Path("/usr/bin/python3").exists():
        drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        argv = [*drop, "/usr/bin/python3", "-c", PEEK, repo]
    else:
        pytest.skip("running as root without setpriv and /usr/bin/python3 to drop privileges")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd="/")
    if done.returncode != 0:
        pytest.skip(f"cannot run as an unprivileged user here: {done.stderr.strip()[-200:]}")
    assert done.stdout.split("\n")[:3] == ["read", "True denied", "read"], done.stdout


@pytest.mark.parametrize("network", [True, False])
def test_bwrap_network_is_left_as_is_or_cut(network: bool, tmp_path: Path) -> None:
    _need("bwrap")
    if not network and sandbox.probe("bwrap", network=False):
        pytest.skip("bwrap cannot make a network namespace here")
    run_dir, task_dir, work = _layout(tmp_path)
    settings = sandbox.SandboxSettings("bwrap", network=network, writable=())
    box = sandbox.make_sandbox(settings, run_dir, task_dir)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        probe = (
            "import socket\n"
            "try:\n"
            f"    socket.create_connection(('127.0.0.1', {port}), timeout=2).close()\n"
            "    print('connected')\n"
            "except OSError as exc:\n"
            "    print('refused', exc)\n"
        )
        (work / "net.py").write_text(probe)
        run = asyncio.run(run_command(f"{sys.executable} net.py", work, 30, Limits(), sandbox=box))
    assert run.stdout_tail.startswith("connected" if network else "refused"), run.stdout_tail


def test_auto_without_any_sandbox_says_so_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "probe", lambda kind, network=True: f"{kind} is missing")
    box = sandbox.make_sandbox(sandbox.SandboxSettings("auto"), Path("/nonexistent/run"))
    assert box.kind == "none"
    line = box.describe()
    assert "\n" not in line and "bwrap is missing" in line and "landlock is missing" in line
    assert box.wrap(["/bin/true"], Path("/nonexistent/work"))[-2:] == ["--", "/bin/true"]
    with pytest.raises(sandbox.SandboxError, match="needs a working bwrap"):
        sandbox.choose("auto", network=False)
    with pytest.raises(sandbox.SandboxError, match="bwrap is not available here"):
        sandbox.choose("bwrap")
