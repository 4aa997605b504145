"""The Ray backend on a private local cluster bound to 127.0.0.1.

Ray starts in a few seconds here; one cluster serves the whole module.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import textwrap
import time
from pathlib import Path

import pytest
from conftest import REPO

ray = pytest.importorskip("ray", reason="ray is not installed")

from engine.agents.setup import build_offline_agents  # noqa: E402
from engine.execution.engineer import Limits  # noqa: E402
from engine.execution.ray_backend import RayEngineer, RaySettings, connect  # noqa: E402
from engine.loop.engine import Engine  # noqa: E402
from engine.samplers import make_sampler  # noqa: E402
from engine.samplers.settings import SamplerSettings  # noqa: E402
from engine.store.records import DONE  # noqa: E402
from engine.store.run_store import RunStore  # noqa: E402
from engine.task import load_task  # noqa: E402

LOCAL = RaySettings(address="local", max_retries=0, num_cpus=2)


@pytest.fixture(scope="module", autouse=True)
def cluster():
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    connect(LOCAL)
    yield
    ray.shutdown()


def _engine(
    task_dir: Path, run_dir: Path, steps: int, workers: int = 2, sandbox: object = None
) -> Engine:
    task = load_task(task_dir)
    store = RunStore.create(run_dir)
    store.set_meta("task", task.name)
    return Engine(
        store=store,
        task=task,
        run_dir=run_dir,
        agents=build_offline_agents(0),
        sampler=make_sampler(SamplerSettings(), store, True, 0),
        engineer=RayEngineer(task, Limits(), settings=LOCAL, sandbox=sandbox),
        steps_total=steps,
        workers=workers,
    )


def test_circle_packing_runs_through_ray(tmp_path: Path) -> None:
    run = tmp_path / "run"
    engine = _engine(REPO / "domains" / "circle_packing", run, steps=3)
    summary = asyncio.run(engine.run())
    assert summary.steps_done == 3
    nodes = list(engine.store.nodes())
    root = nodes[0]
    assert root.status == DONE and root.score == pytest.approx(0.9598, abs=1e-3)
    assert all(n.status in ("done", "failed") for n in nodes)
    # Results came back through Ray and were written into the head's work dirs.
    assert (run / "nodes" / "0" / "results.json").is_file()
    assert (run / "nodes" / "0" / "stdout.txt").is_file()


# The first run of a node kills its own Ray worker (a lost machine); the re-run passes.
CRASHING_EVALUATOR = textwrap.dedent(
    """
    import json, os, runpy, signal, sys
    marker = os.environ["CRASH_MARKER"]
    ns = runpy.run_path(sys.argv[1])
    if ns.get("CRASH") and not os.path.exists(marker):
        open(marker, "w").close()
        worker = os.getppid()
        while worker > 1:
            with open(f"/proc/{worker}/cmdline", "rb") as f:
                if b"ray::" in f.read():
                    break
            with open(f"/proc/{worker}/stat") as f:
                worker = int(f.read().rsplit(")", 1)[1].split()[1])
        os.kill(worker, signal.SIGKILL)
    with open(os.environ["ASI_EVOLVE_RESULTS"], "w") as f:
        json.dump({"score": float(ns["X"])}, f)
    """
)


@pytest.mark.slow
def test_a_lost_worker_becomes_a_rerun_of_the_same_step(tmp_path: Path, monkeypatch) -> None:
    marker = tmp_path / "crashed"
    task = tmp_path / "task"
    task.mkdir()
    (task / "task.yaml").write_text(
        "name: crashy\ndescription: task.md\ninitial_program: initial.py\n"
        "evaluator: evaluate.py\ntimeout: 60\n"
    )
    (task / "task.md").write_text("crash once\n")
    (task / "initial.py").write_text("X = 1.0\nCRASH = True\n")
    (task / "evaluate.py").write_text(CRASHING_EVALUATOR)
    monkeypatch.setenv("CRASH_MARKER", str(marker))
    ray.shutdown()  # the worker must inherit CRASH_MARKER
    connect(LOCAL)
    engine = _engine(task, tmp_path / "run", steps=1, workers=1)
    summary = asyncio.run(engine.run())
    assert marker.exists()  # the crash happened
    nodes = list(engine.store.nodes())
    assert [n.step for n in nodes] == [0, 1]  # no step lost, none duplicated
    assert nodes[0].status == DONE and nodes[0].score == 1.0
    assert summary.steps_done == 1
    events = [e["message"] for e in engine.store.events()]
    assert any("re-queued" in m for m in events), events


def test_the_local_cluster_listens_on_loopback_only() -> None:
    import psutil

    daemons = {"raylet", "gcs_server"}
    listening = [
        c
        for c in psutil.net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.pid is not None and _is_ray(c.pid, daemons)
    ]
    assert listening, "no Ray listener found"
    outward = [
        c.laddr for c in listening if not c.laddr.ip.replace("::ffff:", "").startswith("127.")
    ]
    assert not outward, f"Ray listens beyond loopback: {outward}"


def _is_ray(pid: int, daemons: set[str]) -> bool:
    import psutil

    try:
        name = psutil.Process(pid).name()
    except psutil.Error:
        return False
    return name in daemons or name.startswith("ray::")


@pytest.mark.slow
def test_cli_run_on_a_local_ray_cluster(tmp_path: Path) -> None:
    from conftest import cli

    config = tmp_path / "config.yaml"
    config.write_text("engineer:\n  backend: ray\nray:\n  address: local\n  num_cpus: 2\n")
    run = tmp_path / "run"
    result = cli(
        "run",
        "circle_packing",
        "--steps",
        "3",
        "--run-dir",
        str(run),
        "--config",
        str(config),
        env={"RAY_AUTH_MODE": "disabled"},
    )
    assert result.returncode == 0, result.stderr
    assert "engineer: Ray cluster at local" in result.stdout
    store = RunStore.open(run)
    assert store.steps_done() == 3
    root = next(store.nodes("step = 0"))
    assert root.status == DONE and root.score == pytest.approx(0.9598, abs=1e-3)


# Tries to write outside its scratch directory: into the unpacked task and into a host path.
ESCAPING_EVALUATOR = textwrap.dedent(
    """
    import json, os, sys
    escaped = []
    for target in (os.path.join(os.path.dirname(os.path.abspath(__file__)), "pwned"),
                   os.environ["ESCAPE_TARGET"]):
        try:
            with open(target, "w") as f:
                f.write("x")
            escaped.append(target)
        except OSError:
            pass
    with open(os.environ["ASI_EVOLVE_RESULTS"], "w") as f:
        json.dump({"score": float(len(escaped))}, f)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["none", "bwrap"])
def test_ray_workers_confine_the_evaluator(tmp_path: Path, monkeypatch, kind: str) -> None:
    """The run's sandbox settings travel to the worker, which confines the evaluator there."""
    if kind == "bwrap":
        from engine.execution.sandbox import probe

        if probe("bwrap"):
            pytest.skip(f"bubblewrap does not work here: {probe('bwrap')}")
    from engine.execution.sandbox import SandboxSettings

    task = tmp_path / "task"
    task.mkdir()
    (task / "task.yaml").write_text(
        "name: escape\ndescription: task.md\ninitial_program: initial.py\n"
        "evaluator: evaluate.py\ntimeout: 60\n"
    )
    (task / "task.md").write_text("try to escape\n")
    (task / "initial.py").write_text("X = 1.0\n")
    (task / "evaluate.py").write_text(ESCAPING_EVALUATOR)
    target = tmp_path / f"outside-{kind}"
    monkeypatch.setenv("ESCAPE_TARGET", str(target))
    ray.shutdown()  # the worker must inherit ESCAPE_TARGET
    connect(LOCAL)
    run_dir = tmp_path / "run"
    engine = _engine(task, run_dir, steps=0, workers=1, sandbox=SandboxSettings(kind, writable=()))
    asyncio.run(engine.run())
    root = next(iter(RunStore.open(run_dir, readonly=True).nodes()))
    assert root.status == DONE
    if kind == "none":  # the control: unconfined, both writes land
        assert root.score == 2.0 and target.exists()
    else:
        assert root.score == 0.0 and not target.exists()


def _task_dir(root: Path, evaluator: str, timeout: int = 120) -> Path:
    task = root / "task"
    task.mkdir()
    (task / "task.yaml").write_text(
        "name: raytask\ndescription: task.md\ninitial_program: initial.py\n"
        f"evaluator: evaluate.py\ntimeout: {timeout}\n"
    )
    (task / "task.md").write_text("ray\n")
    (task / "initial.py").write_text("X = 1.0\n")
    (task / "evaluate.py").write_text(evaluator)
    return task


def _environ(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return b""


# Reports how many secret values it can see in its environment.
SECRET_PEEKER = textwrap.dedent(
    """
    import json, os
    seen = [k for k, v in os.environ.items() if v.startswith("ray-secret-")]
    with open(os.environ["ASI_EVOLVE_RESULTS"], "w") as f:
        json.dump({"score": float(len(seen)), "logs": repr(seen)}, f)
    """
)


@pytest.mark.slow
def test_ray_processes_never_see_the_api_keys(tmp_path: Path, monkeypatch) -> None:
    """The cluster a run starts (``address: local``) is started without the keys its
    config names: no raylet, GCS or worker process holds them, nor the evaluator; the
    engine's own environment keeps them. (Ray's processes are this user's: their
    /proc/PID/environ is readable without root.)"""
    import psutil

    secrets = {"OPENAI_API_KEY": "ray-secret-openai", "MY_JUDGE_KEY": "ray-secret-judge"}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    ray.shutdown()  # the run's own cluster, started by its first stage run
    task = load_task(_task_dir(tmp_path, SECRET_PEEKER))
    engineer = RayEngineer(task, Limits(), secret_env=("MY_JUDGE_KEY",), settings=LOCAL)
    evaluation = asyncio.run(engineer.run_stage("X = 1.0\n", task.stages[0], tmp_path / "w"))
    assert evaluation.ok, evaluation.error
    assert evaluation.score == 0.0, evaluation.results.get("logs")  # the evaluator saw none
    assert {k: os.environ.get(k) for k in secrets} == secrets  # the engine keeps them
    ray_procs = psutil.Process().children(recursive=True)
    assert any("raylet" in p.name() for p in ray_procs if p.is_running()), ray_procs
    leaking = [
        (p.pid, p.name())
        for p in ray_procs
        if any(v.encode() in _environ(p.pid) for v in secrets.values())
    ]
    assert leaking == [], leaking


# Starts a setsid + double-fork escapee with an empty environment, then sleeps.
ORPHANING_EVALUATOR = textwrap.dedent(
    """
    import os, time
    marker = os.environ["ESCAPE_MARKER"]
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.execve("/bin/sleep", ["sleep", marker], {})
        os._exit(0)
    os.execv("/bin/sleep", ["sleep", marker + "1"])
    """
)


def _with_marker(marker: str) -> list[int]:
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmd = proc.info["cmdline"] or []
        zombie = proc.info["status"] == psutil.STATUS_ZOMBIE
        if cmd[:1] == ["sleep"] and cmd[-1].startswith(marker) and not zombie:
            found.append(proc.pid)
    return found


@pytest.mark.slow
def test_a_killed_ray_worker_leaves_no_evaluator_process(tmp_path: Path, monkeypatch) -> None:
    """SIGKILL the worker mid-evaluation: the evaluator, and the escapee it made, die too
    (the fallback sandbox: its supervisor is told by a parent-death signal and ends the
    evaluation's PID namespace, or kills its process tree)."""
    import threading

    import psutil

    from engine.execution.engineer import EvaluationLost
    from engine.execution.sandbox import SandboxSettings, probe

    if probe("landlock"):
        pytest.skip(f"the fallback sandbox does not work here: {probe('landlock')}")
    marker = f"{700 + os.getpid() % 200}.{time.monotonic_ns() % 10**6}"
    monkeypatch.setenv("ESCAPE_MARKER", marker)
    ray.shutdown()  # the worker must inherit ESCAPE_MARKER
    connect(LOCAL)
    task = load_task(_task_dir(tmp_path, ORPHANING_EVALUATOR))
    box = SandboxSettings("landlock", writable=())
    engineer = RayEngineer(task, Limits(), settings=LOCAL, sandbox=box)
    outcome: list[object] = []

    def evaluate() -> None:
        try:
            outcome.append(
                asyncio.run(engineer.run_stage("X = 1.0\n", task.stages[0], tmp_path / "w"))
            )
        except BaseException as exc:  # noqa: BLE001 - reported below
            outcome.append(exc)

    thread = threading.Thread(target=evaluate, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while len(_with_marker(marker)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        sleepers = _with_marker(marker)
        assert len(sleepers) == 2, f"the evaluator never started: {outcome}"
        # The topmost "ray::" ancestor (the supervisor is a fork of the worker).
        worker = None
        for above in psutil.Process(sleepers[0]).parents():
            if above.name().startswith("ray::"):
                worker = above
        assert worker is not None, "no Ray worker above the evaluator"
        worker.kill()
        thread.join(timeout=60)
        assert outcome and isinstance(outcome[0], EvaluationLost), outcome
        deadline = time.monotonic() + 10
        while _with_marker(marker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _with_marker(marker) == [], "an evaluator process outlived its Ray worker"
    finally:
        for pid in _with_marker(marker):
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()
