"""Evaluations on a Ray cluster, when one machine is outgrown.

The loop, the samplers and the run database stay on the head node; only single stage
runs travel. The task directory goes to the cluster once, as an archive in Ray's object
store, and each stage run sends the candidate's code and gets back its ``Evaluation``
plus the small output files (stdout/stderr tails, results files), so no shared file
system is needed. Ray places each run by the stage's resources (``num_cpus``,
``num_gpus``) and sets ``CUDA_VISIBLE_DEVICES`` itself, so the local slot pool is not
used with this backend.

A run lost for reasons that are not the candidate's (a worker or node died, the cluster
went away) is retried by Ray up to ``max_retries`` times and then raised as
``EvaluationLost``: the loop puts the node back in the queue for the same step, so a
lost machine costs a re-run, never a lost or duplicated step.

Each worker confines the evaluator itself with the run's sandbox settings
(``engine/execution/sandbox.py``), resolved on the worker: bubblewrap or the fallback where
that machine has one, the unpacked task read-only, only the stage's scratch directory
writable. ``auto`` on a worker without a sandbox tool runs unconfined (as it would locally);
an explicit
``bwrap``/``landlock`` that the worker cannot provide fails the stage with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engine.execution.engineer import Engineer, Evaluation, EvaluationLost, Limits
from engine.execution.sandbox import SandboxError, SandboxSettings, make_sandbox
from engine.execution.workfiles import WorkDir, last_unresolved, plain_name
from engine.task import OUTPUT_NAMES, Stage, TaskSpec, load_task

MAX_FILE_BYTES = 1 << 20  # output files larger than this stay on the worker
_SINGLE_HOST_VAR = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": a one-machine, loopback cluster
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass(frozen=True)
class RaySettings:
    """Where the cluster is and how hard to try.

    address: ``auto`` joins the cluster this machine belongs to (e.g. one started by a
      Slurm job with ``ray start --head``); ``ray://host:10001`` connects a client;
      ``local`` starts a private single-machine cluster bound to 127.0.0.1 (tests).
    max_retries: how often Ray re-runs a stage whose worker died before it is given up
      as lost (the node then re-runs from the queue).
    num_cpus: CPUs of a ``local`` cluster (None: all of this machine's).
    """

    address: str = "auto"
    max_retries: int = 2
    num_cpus: int | None = None


NO_CLUSTER_HINT = (
    "start one with 'ray start --head' (or set RAY_ADDRESS), or use ray: {address: local} "
    "for a private cluster on this machine"
)


def find_auto_cluster(
    environ: Mapping[str, str] | None = None, proc: Path = Path("/proc")
) -> str | None:
    """Where ``address: auto`` would join, or None when there is no cluster to join.

    Found by Ray's own rule (``ray._private.services.get_ray_address_from_environment``)
    without importing Ray (seconds) or connecting (a hang, then a traceback, long after
    the run directory was made): ``RAY_ADDRESS`` when set; else the address file the last
    ``ray start`` wrote, ``ray_current_cluster`` in Ray's temp dir (``$RAY_TMPDIR``, else
    ``$TMPDIR``, else ``/tmp``, then ``ray/``); else a raylet process of this machine
    started with ``--gcs-address`` (Ray's legacy "auto").
    """
    env = os.environ if environ is None else environ
    if env.get("RAY_ADDRESS"):
        return env["RAY_ADDRESS"]
    temp = env.get("RAY_TMPDIR") or env.get("TMPDIR") or "/tmp"
    address_file = Path(temp) / "ray" / "ray_current_cluster"
    with contextlib.suppress(OSError):
        if address := address_file.read_text().strip():
            return address
    return _raylet_address(proc)


def _raylet_address(proc: Path) -> str | None:
    """The ``--gcs-address`` of a raylet process found in ``proc`` (a ``/proc``), if any."""
    try:
        entries = [p for p in proc.iterdir() if p.name.isdigit()]
    except OSError:
        return None
    for entry in entries:
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:  # gone, or not ours to read
            continue
        if not argv or "raylet" not in os.path.basename(argv[0]):
            continue
        for arg in " ".join(argv).split(" "):
            if arg.startswith("--gcs-address="):
                value = arg.split("=", 1)[1]
                if value and value != "None":
                    return value
    return None


def connect(settings: RaySettings, secret_env: Iterable[str] = ()) -> None:
    """Join (or start) the cluster once per process; a no-op when already connected.

    A ``local`` cluster is confined to the loopback interface: given 127.0.0.1, Ray would
    otherwise "resolve" it to the machine's outward address and listen there. Its daemons
    and workers (and so every evaluator) would inherit this process's environment: the
    API keys named in ``secret_env`` (and OPENAI_API_KEY) are taken out of it while Ray
    starts, and put back after.
    """
    if settings.address == "local":
        os.environ[_SINGLE_HOST_VAR] = "0"  # read by Ray's daemons and workers
    import ray

    if settings.address == "local":
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False  # read by this process, already imported

    if ray.is_initialized():
        return
    options: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "configure_logging": False,
    }
    if settings.address == "local":
        # Never listen on an outward interface for a private test cluster.
        options.update(address="local", _node_ip_address="127.0.0.1", num_cpus=settings.num_cpus)
    else:
        options["address"] = settings.address
    names = {"OPENAI_API_KEY", *secret_env}
    hidden = {name: os.environ.pop(name) for name in names if name in os.environ}
    try:
        ray.init(**options)
    finally:
        os.environ.update(hidden)


def pack_task(directory: Path) -> bytes:
    """The task directory as a gzipped tar (caches and run folders excluded)."""
    buffer = io.BytesIO()
    skip = {"__pycache__", ".git", "runs"}
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(
            directory, arcname="task", filter=lambda t: None if Path(t.name).name in skip else t
        )
    return buffer.getvalue()


class RayEngineer(Engineer):
    """An Engineer whose stage runs happen on Ray workers."""

    def __init__(
        self,
        task: TaskSpec,
        limits: Limits | None = None,
        secret_env: tuple[str, ...] = (),
        settings: RaySettings | None = None,
        sandbox: SandboxSettings | None = None,
    ) -> None:
        super().__init__(task, limits, secret_env)
        self.settings = settings or RaySettings()
        # Resolved on each worker (its own tools and paths); None: evaluators unconfined.
        self.sandbox_settings = sandbox
        self._bundle: Any = None  # ObjectRef of the packed task, put once
        self._bundle_id = ""

    async def run_stage(
        self,
        code: str,
        stage: Stage,
        workdir: Path,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Evaluation:
        import ray
        from ray import exceptions as rex

        connect(self.settings, self.secret_env)
        if self._bundle is None:
            packed = pack_task(self.task.directory)
            self._bundle_id = hashlib.sha256(packed).hexdigest()[:16]
            self._bundle = ray.put(packed)
        # Ray decides the devices; only the thread counts of a grant travel.
        sent_env = {k: v for k, v in (env or {}).items() if k in _THREAD_VARS}
        sent_env.setdefault("OMP_NUM_THREADS", str(stage.resources.cpus))
        remote = ray.remote(_run_remote).options(
            num_cpus=stage.resources.cpus,
            num_gpus=stage.resources.gpus,
            max_retries=self.settings.max_retries,
            retry_exceptions=False,
        )
        ref = remote.remote(
            self._bundle,
            self._bundle_id,
            self.task.directory.name,
            code,
            stage,
            sent_env,
            timeout,
            asdict(self.limits),
            sorted(self.secret_env),
            None if self.sandbox_settings is None else asdict(self.sandbox_settings),
        )
        try:
            outcome, files = await ref
        except asyncio.CancelledError:
            ray.cancel(ref, force=True)
            raise
        except (rex.WorkerCrashedError, rex.NodeDiedError, rex.RaySystemError) as exc:
            raise EvaluationLost(f"ray: {type(exc).__name__}: {exc}".splitlines()[0]) from exc
        except rex.RayError as exc:
            raise EvaluationLost(f"ray: {type(exc).__name__}".splitlines()[0]) from exc
        workdir = last_unresolved(Path(workdir))
        workdir.mkdir(parents=True, exist_ok=True)
        with WorkDir(workdir) as out:  # plain names only; a planted link is replaced
            for name, data in files.items():
                if plain_name(name) and name != self.task.program_name:
                    out.write(name, data)
            out.write(self.task.program_name, code)
        return Evaluation(**outcome)


def _run_remote(
    bundle: bytes,
    bundle_id: str,
    task_name: str,
    code: str,
    stage: Stage,
    env: dict[str, str],
    timeout: float | None,
    limits: dict[str, Any],
    secret_env: list[str],
    sandbox: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Worker side: unpack the task once per machine, run the stage locally, send back."""
    root = Path(tempfile.gettempdir()) / "asi-evolve-ray" / bundle_id
    task_dir = root / "task"
    if not task_dir.is_dir():
        root.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="unpack-", dir=root.parent))
        with tarfile.open(fileobj=io.BytesIO(bundle), mode="r:gz") as tar:
            tar.extractall(staging, filter="data")
        try:
            os.rename(staging, root)  # atomic: a parallel unpack of the same bundle loses
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
    task = load_task(task_dir)
    workdir = Path(tempfile.mkdtemp(prefix=f"{task_name}-{stage.name}-"))
    try:
        try:
            confined = None
            if sandbox is not None:
                settings = SandboxSettings(**{**sandbox, "writable": tuple(sandbox["writable"])})
                confined = make_sandbox(settings, root, task_dir)
        except SandboxError as exc:
            reason = f"sandbox on the Ray worker: {exc}"
            failed = Evaluation(ok=False, score=None, results={}, error=reason, runtime=0.0)
            return asdict(failed), {}
        engineer = Engineer(task, Limits(**limits), tuple(secret_env), sandbox=confined)
        evaluation = asyncio.run(engineer.run_stage(code, stage, workdir, env=env, timeout=timeout))
        with WorkDir(workdir) as scratch:  # links and special files are never shipped
            files = scratch.collect((".txt", ".json"), MAX_FILE_BYTES, first=OUTPUT_NAMES)
        return asdict(evaluation), files
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
