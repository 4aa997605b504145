"""The sandbox's fallback (no bubblewrap) keeps an evaluator away from the engine process,
the run's files and its secrets, and nothing of an evaluation outlives it.

Every claim runs in a driver process that plays the engine (``DRIVER``): as the user
running the tests and, when that is root, again as uid 65534, because the layers differ
(root needs no user namespace, and keeps capabilities unless they are dropped). The
fallback is forced (``landlock``), since ``auto`` takes bubblewrap where it is installed.
What a layer cannot stop on a machine must be said in ``describe()``; the attack checks
each claim against the layers the machine gave (``Layers.gaps``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.execution import landlock, reaper, sandbox
from engine.execution.namespaces import Layers

REPO = Path(__file__).resolve().parents[2]
NOBODY = 65534
SECRET_NAME = "ASI_TEST_API_KEY"
SECRET_VALUE = "sk-test-" + uuid.uuid4().hex

# The evaluator's attack. argv: the stand-in engine's pid, the driver's pid.
ATTACK = textwrap.dedent(
    """
    import json, os, signal, stat, sys, tempfile
    engine_pid, driver_pid = int(sys.argv[1]), int(sys.argv[2])
    tried = {}
    def attempt(name, action):
        try:
            action()
            tried[name] = "done"
        except OSError as exc:
            tried[name] = type(exc).__name__
    attempt("engine_environ", lambda: open(f"/proc/{engine_pid}/environ", "rb").read())
    leaks = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if b"ASI_TEST_API_KEY=" in open(f"/proc/{entry}/environ", "rb").read():
                    leaks.append(int(entry))
            except OSError:
                pass
    tried["secret_in_proc"] = leaks
    attempt("stop_engine", lambda: os.kill(engine_pid, signal.SIGSTOP))
    attempt("kill_engine", lambda: os.kill(engine_pid, signal.SIGKILL))
    attempt("signal_driver", lambda: os.kill(driver_pid, 0))
    attempt("chmod_db", lambda: os.chmod("../../evolve.db", 0))
    attempt("delete_db", lambda: os.remove("../../evolve.db"))
    attempt("rename_node", lambda: os.rename("../5", "../5x"))
    attempt("mknod_disk", lambda: os.mknod("disk", stat.S_IFBLK | 0o600, os.makedev(7, 0)))
    shm = f"/dev/shm/asi-escape-{os.getpid()}-{engine_pid}"
    attempt("shm_write", lambda: open(shm, "w").write("x"))
    if tried["shm_write"] == "done":
        os.remove(shm)
    attempt("own_dir", lambda: open("mine.txt", "w").write("ok"))
    attempt("tmpdir", lambda: os.close(tempfile.mkstemp()[0]))
    attempt("dev_null", lambda: open("/dev/null", "w").write("x"))
    tried["secret_in_env"] = "ASI_TEST_API_KEY" in os.environ
    json.dump(tried, open("attack.json", "w"))
    """
)

# Leaves the evaluation: a shared flock on the run dir (it would keep every later engine
# out), setsid, a double fork, an exec with an empty environment (no reaper token).
ESCAPE = textwrap.dedent(
    """
    import fcntl, os, sys, time
    marker, linger = sys.argv[1], float(sys.argv[2])
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            fd = os.open("../..", os.O_RDONLY | os.O_DIRECTORY)
            fcntl.flock(fd, fcntl.LOCK_SH)
            os.set_inheritable(fd, True)
            os.execve("/bin/sleep", ["sleep", marker], {})
        os._exit(0)
    time.sleep(linger)
    """
)

# Plays the engine. argv: base dir, what (attack | escape), sandbox kind, layers (json or
# "machine"), escape marker, escape linger. Prints one JSON report.
DRIVER = textwrap.dedent(
    """
    import asyncio, dataclasses, json, os, subprocess, sys, time
    sys.path.insert(0, REPO)
    from pathlib import Path
    from engine.execution import reaper
    from engine.execution import sandbox
    from engine.execution.command import Limits, run_command
    from engine.execution.launcher import Launcher
    from engine.execution.namespaces import Layers
    base, what, kind, layers = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    run, task = base / "run", base / "task"
    work = run / "nodes" / "7"
    (run / "nodes" / "5").mkdir(parents=True)
    (run / "nodes" / "5" / "results.json").write_text('{"score": 1}')
    (run / "evolve.db").write_text("db")
    work.mkdir()
    task.mkdir()
    (task / "attack.py").write_text(ATTACK)
    (task / "escape.py").write_text(ESCAPE)
    box = sandbox.make_sandbox(sandbox.SandboxSettings(kind, writable=()), run, task)
    if layers != "machine":
        box = dataclasses.replace(box, layers=Layers(**json.loads(layers)))
    engine = subprocess.Popen(["sleep", "300"])  # a process of ours outside the evaluation
    env = {k: v for k, v in os.environ.items() if k != "ASI_TEST_API_KEY"}  # as the Engineer
    if what == "attack":
        command = f"{PYTHON} {task / 'attack.py'} {engine.pid} {os.getpid()}"
    else:
        command = f"{PYTHON} {task / 'escape.py'} {sys.argv[5]} {sys.argv[6]}"
    print(json.dumps({"started": True, "describe": box.describe()}), flush=True)
    launcher = Launcher() if os.environ.get("ASI_TEST_FORK_SERVER") == "1" else None
    async def evaluate():
        try:
            return await run_command(
                command, work, 120, Limits(), env=env, sandbox=box, reaper=reaper.Reaper(),
                launcher=launcher,
            )
        finally:
            if launcher is not None:
                await launcher.aclose()
    result = asyncio.run(evaluate())
    seen = reaper.read_proc(engine.pid)
    db = run / "evolve.db"
    report = {
        "rc": result.returncode,
        "stderr": result.stderr_tail[-2000:],
        "describe": box.describe(),
        "layers": dataclasses.asdict(box.layers) if getattr(box, "layers", None) else None,
        "engine_state": None if seen is None else seen.state,
        "db": db.exists(),
        "db_mode": oct(db.stat().st_mode & 0o777) if db.exists() else None,
        "node5": (run / "nodes" / "5").is_dir(),
        "own": (work / "mine.txt").is_file(),
        "forked": launcher is not None and launcher.launches == 1,
    }
    if what == "attack":
        report["tried"] = json.loads((work / "attack.json").read_text())
    engine.kill()
    print(json.dumps(report), flush=True)
    """
)

FALLBACK_REASON = sandbox.probe("landlock")


def _need_fallback() -> None:
    if FALLBACK_REASON:
        pytest.skip(f"the fallback sandbox does not work here: {FALLBACK_REASON}")


def _users() -> list[str]:
    return ["self", "nobody"] if os.geteuid() == 0 else ["self"]


def _as(user: str) -> tuple[list[str], str]:
    """Command prefix and Python interpreter of a driver run as ``user``."""
    if user == "self":
        return [], sys.executable
    if not shutil.which("setpriv") or not Path("/usr/bin/python3").exists():
        pytest.skip("needs setpriv and /usr/bin/python3 to run as an unprivileged user")
    drop = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    return drop, "/usr/bin/python3"  # the test venv's interpreter may be out of its reach


@contextlib.contextmanager
def _base(where: str, user: str) -> Iterator[Path]:
    root = "/dev/shm" if where == "shm" else tempfile.gettempdir()
    if where == "shm" and not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm here")
    base = Path(tempfile.mkdtemp(prefix="asi-escape-", dir=root))
    try:
        if user == "nobody":
            os.chown(base, NOBODY, NOBODY)
        yield base
    finally:
        for path in base.rglob("*"):  # the attack may have chmod-ed something to 000
            with contextlib.suppress(OSError):
                path.chmod(0o700)
        shutil.rmtree(base, ignore_errors=True)


def _driver(
    base: Path,
    user: str,
    what: str,
    kind: str,
    layers: str = "machine",
    *extra: str,
    forked: bool = False,
) -> subprocess.Popen:
    """The stand-in engine; ``forked``: its supervisors come from the fork server
    (``engine/execution/launcher.py``), as in a real run, else from the script."""
    prefix, python = _as(user)
    script = base / "driver.py"
    source = f"REPO = {str(REPO)!r}\nPYTHON = {python!r}\nATTACK = {ATTACK!r}\n"
    source += f"ESCAPE = {ESCAPE!r}\n{DRIVER}"
    script.write_text(source)
    script.chmod(0o644)
    env = {**os.environ, SECRET_NAME: SECRET_VALUE}  # the engine's API key
    env["ASI_TEST_FORK_SERVER"] = "1" if forked else "0"
    return subprocess.Popen(
        [*prefix, python, str(script), str(base), what, kind, layers, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd="/",
        start_new_session=True,
    )


def _report(driver: subprocess.Popen, timeout: float = 120) -> dict:
    out, err = driver.communicate(timeout=timeout)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    assert driver.returncode == 0 and lines, f"driver failed: {err[-3000:]}"
    return json.loads(lines[-1])


# ------------------------------------------------------------------------ the attack
LANDLOCK_ONLY = json.dumps({"landlock": landlock.abi_version()})


@pytest.mark.timeout(180)
@pytest.mark.parametrize("forked", [False, True], ids=["script", "fork-server"])
@pytest.mark.parametrize("layers", ["machine", "landlock-only"])
@pytest.mark.parametrize("where", ["tmp", "shm"])
@pytest.mark.parametrize("user", _users())
def test_the_fallback_keeps_the_evaluator_from_the_engine_the_run_and_the_key(
    user: str, where: str, layers: str, forked: bool
) -> None:
    _need_fallback()
    with _base(where, user) as base:
        spec = "machine" if layers == "machine" else LANDLOCK_ONLY
        report = _report(_driver(base, user, "attack", "landlock", spec, forked=forked))
    assert report["rc"] == 0, report["stderr"]
    assert report["forked"] is forked
    tried = report["tried"]
    if report["layers"]:
        given = Layers(**report["layers"])
    else:  # as this machine's fallback should have them (an older engine reports none)
        given = sandbox.fallback_layers()[0] or Layers()
    gaps = given.gaps()
    describe = report["describe"]
    assert "cannot stop:" in describe and "\n" not in describe
    assert all(gap in describe for gap in gaps) or layers != "machine", describe
    # Signals: a PID namespace hides the engine, Landlock's scope (ABI >= 6) refuses them.
    if given.pid or given.scoped:
        assert tried["stop_engine"] != "done" and tried["kill_engine"] != "done", tried
        assert tried["signal_driver"] != "done", tried
        assert report["engine_state"] not in (None, "T", "t", "Z"), report["engine_state"]
    else:
        assert "signal" in describe
    # Secrets: not in the evaluator's environment, not readable anywhere in /proc
    # (neither the engine's nor its supervisor's copies of the engine's memory).
    assert tried["engine_environ"] != "done", tried
    assert tried["secret_in_proc"] == [] and tried["secret_in_env"] is False, tried
    # The run's files: no delete, rename or (with a mount namespace) chmod.
    assert tried["delete_db"] != "done" and report["db"], tried
    assert tried["rename_node"] != "done" and report["node5"], tried
    if given.mount:
        assert tried["chmod_db"] != "done" and report["db_mode"] == "0o644", report
    else:
        assert "chmod" in describe
    # No device nodes of its own (a block device would bypass every file rule).
    assert tried["mknod_disk"] != "done", tried
    # /dev/shm only where it holds no protected path.
    if where == "shm":
        assert tried["shm_write"] != "done", tried
    else:
        assert tried["shm_write"] == "done", tried
    # What an evaluator needs still works.
    assert tried["own_dir"] == tried["tmpdir"] == tried["dev_null"] == "done", tried
    assert report["own"]


def test_the_same_attack_succeeds_without_a_sandbox() -> None:
    """The checks above can fail: under ``none`` the attack goes through."""
    user = "self"
    with _base("tmp", user) as base:
        report = _report(_driver(base, user, "attack", "none"))
    tried = report["tried"]
    assert tried["kill_engine"] == "done" and report["engine_state"] in (None, "Z")
    assert tried["chmod_db"] == "done" and tried["delete_db"] == "done", tried
    assert tried["shm_write"] == "done"
    if os.geteuid() == 0:  # root without a sandbox reads any process's environment
        assert tried["engine_environ"] == "done" and tried["secret_in_proc"], tried


# ----------------------------------------------------------------------- no escapee
def _marker() -> str:
    return f"{1000 + uuid.uuid4().int % 100000}.{os.getpid()}"  # a unique sleep duration


def _alive_with(marker: str) -> list[int]:
    found = []
    for pid, proc in reaper.snapshot().items():
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd[0].endswith(b"sleep") and marker.encode() in cmd and reaper.alive(proc):
            found.append(pid)
    return found


def _wait_for(marker: str, driver: subprocess.Popen, within: float = 30) -> list[int]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and driver.poll() is None:
        if found := _alive_with(marker):
            return found
        time.sleep(0.05)
    return _alive_with(marker)


def _gone(marker: str, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not _alive_with(marker):
            return True
        time.sleep(0.05)
    return False


def _run_dir_unlocked(base: Path) -> bool:
    """Whether an engine could take the run directory's lock now."""
    fd = os.open(base / "run", os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def _kill_leftovers(marker: str) -> None:
    for pid in _alive_with(marker):
        proc = reaper.read_proc(pid)
        if proc is not None:
            reaper.kill_exact(pid, proc.start)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("forked", [False, True], ids=["script", "fork-server"])
@pytest.mark.parametrize("kind", ["landlock", "none"])
@pytest.mark.parametrize("user", _users())
def test_a_setsid_double_fork_empty_env_escapee_dies_with_its_evaluation(
    user: str, kind: str, forked: bool
) -> None:
    if kind == "landlock":
        _need_fallback()
    marker = _marker()
    try:
        with _base("tmp", user) as base:
            driver = _driver(base, user, "escape", kind, "machine", marker, "0.5", forked=forked)
            report = _report(driver)
            assert report["rc"] == 0, report["stderr"]
            assert report["forked"] is forked
            assert _gone(marker, within=5), "the escapee outlived its evaluation"
            assert _run_dir_unlocked(base), "an escapee still holds the run directory"
    finally:
        _kill_leftovers(marker)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("forked", [False, True], ids=["script", "fork-server"])
@pytest.mark.parametrize("kind", ["landlock", "none"])
@pytest.mark.parametrize("user", _users())
def test_the_escapee_dies_with_a_killed_engine(user: str, kind: str, forked: bool) -> None:
    """The engine is SIGKILLed mid-evaluation: its evaluator's supervisor (parent-death
    signal; with the fork server: the server's, then the supervisor's) or PID namespace
    takes everything down, no resume needed."""
    if kind == "landlock":
        _need_fallback()
    marker = _marker()
    try:
        with _base("tmp", user) as base:
            driver = _driver(base, user, "escape", kind, "machine", marker, "300", forked=forked)
            try:
                assert _wait_for(marker, driver), driver.stderr.read() if driver.stderr else ""
                driver.kill()  # SIGKILL: the engine gets no chance to clean up
                driver.wait(timeout=30)
                assert _gone(marker, within=10), "the escapee outlived the engine"
                assert _run_dir_unlocked(base)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(driver.pid, signal.SIGKILL)
                driver.communicate(timeout=30)
    finally:
        _kill_leftovers(marker)


# -------------------------------------------------------------------- small pieces
def test_landlock_binding_reports_the_abi_and_restricts_a_child(tmp_path: Path) -> None:
    abi = landlock.abi_version()
    if abi < 1:
        pytest.skip("no Landlock in this kernel")
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    fd = landlock.ruleset([allowed], [Path("/dev/null")], abi)
    try:
        script = (
            "import os, sys\n"
            "for p in sys.argv[1:]:\n"
            "    try:\n"
            "        open(p, 'w').write('x'); print('ok')\n"
            "    except OSError:\n"
            "        print('denied')\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", script, str(allowed / "f"), str(tmp_path / "g"), "/dev/null"],
            capture_output=True,
            text=True,
            timeout=30,
            preexec_fn=lambda: landlock.restrict_self(fd),
        )
    finally:
        landlock.close(fd)
    assert done.stdout.split() == ["ok", "denied", "ok"], done.stderr


def test_describe_names_what_an_old_kernel_cannot_stop() -> None:
    """Landlock ABI 5 without namespaces (a 6.10 kernel that refuses user namespaces)."""
    box = sandbox.Sandbox("landlock", layers=Layers(landlock=5), shm="host", note="auto")
    line = box.describe()
    assert "\n" not in line and "fallback" in line and "cannot stop:" in line
    for gap in ("signal (kill/SIGSTOP) the engine", "chmod", "/proc", "abstract unix"):
        assert gap in line, line
    full = sandbox.Sandbox("landlock", layers=Layers(True, True, True, 7), shm="private")
    assert "signal (kill" not in full.describe() and "chmod" not in full.describe()


def test_a_sandbox_failure_never_runs_the_command_unconfined(tmp_path: Path) -> None:
    """The supervisor cannot set up (here: its engine is not its parent): the command
    never runs, and the reason is on stderr."""
    _need_fallback()
    box = sandbox.make_sandbox(sandbox.SandboxSettings("landlock", writable=()), tmp_path)
    work = tmp_path / "w"
    work.mkdir()
    argv = box.wrap(["/bin/sh", "-c", "echo ran > ran.txt"], work)
    assert argv[4] == str(os.getpid())  # PARENT, the supervisor's first argument
    argv[4] = "1"
    done = subprocess.run(argv, cwd=work, capture_output=True, text=True, timeout=30)
    assert done.returncode == 126 and "sandbox:" in done.stderr, done
    assert not (work / "ran.txt").exists()


@pytest.mark.parametrize("kind", ["landlock", "none"])
def test_exit_codes_signals_and_limits_pass_through_the_supervisor(
    kind: str, tmp_path: Path
) -> None:
    import asyncio

    from engine.execution.command import Limits, run_command

    if kind == "landlock":
        _need_fallback()
    box = sandbox.make_sandbox(sandbox.SandboxSettings(kind, writable=()), tmp_path / "run")
    work = tmp_path / "run" / "w"
    work.mkdir(parents=True)

    def run(command: str, limits: Limits) -> int | None:
        result = asyncio.run(run_command(command, work, 60, limits, sandbox=box))
        return result.returncode

    assert run("exit 7", Limits()) == 7
    assert run("kill -TERM $$", Limits()) == -signal.SIGTERM
    busy = f"exec {sys.executable} -c 'while True: pass'"
    assert run(busy, Limits(cpu_seconds=1)) in (-signal.SIGXCPU, -signal.SIGKILL)
    hog = f"{sys.executable} -c 'bytearray(512 * 1024 * 1024)'"
    assert run(hog, Limits(memory_mb=200)) == 1  # MemoryError: RLIMIT_AS holds
