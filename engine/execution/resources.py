"""GPU and CPU slots: how many experiments may run at once, and on which devices.

``--workers`` bounds how many candidates are researched at once; the slot pool bounds
how many *experiments* run at once. A stage holds the slots it asks for
(``resources: {cpus, gpus}``, see ``engine/task.py``) while its command runs, and
waits, first come first served, while they are taken. The evaluator gets
``CUDA_VISIBLE_DEVICES`` naming exactly its granted devices (empty for a stage that asks
for none, so a CPU stage never lands on a GPU by accident) and thread counts equal to its
CPU slots, so two experiments never fight over one device or oversubscribe the cores.

Devices come from ``engineer.gpus``: ``auto`` (``nvidia-smi -L``, else torch, else none),
a count, or a list of ids; ``ASI_EVOLVE_FAKE_GPUS=N`` overrides it with N fake ids so
the scheduling is testable on a machine without a GPU. On a machine with no GPU at all a
stage's GPU request is dropped (the stage runs on the CPU, as the domains' CPU paths
allow) and the engine says so once; a request for more GPUs than a machine with GPUs has
is an error before the run starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import subprocess
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

from engine.task import Resources, Stage

FAKE_GPUS_ENV = "ASI_EVOLVE_FAKE_GPUS"
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


class ResourceError(Exception):
    """A stage asks for more than this machine (or its configuration) has."""


def discover_gpus(setting: Any = "auto") -> list[str]:
    """Device ids for ``engineer.gpus`` (``auto`` | int | list of ids)."""
    fake = os.environ.get(FAKE_GPUS_ENV)
    if fake is not None:
        try:
            return [str(i) for i in range(max(0, int(fake)))]
        except ValueError:
            raise ResourceError(f"{FAKE_GPUS_ENV} must be a number, got {fake!r}") from None
    if isinstance(setting, bool):
        raise ResourceError(f"engineer.gpus must be auto, a count or a list, got {setting!r}")
    if isinstance(setting, int):
        if setting < 0:
            raise ResourceError(f"engineer.gpus must be >= 0, got {setting}")
        return [str(i) for i in range(setting)]
    if isinstance(setting, list | tuple):
        return [str(i) for i in setting]
    if setting != "auto":
        raise ResourceError(f"engineer.gpus must be auto, a count or a list, got {setting!r}")
    return _probe_gpus()


def _probe_gpus() -> list[str]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:  # the engine itself was given devices: use exactly those
        return [d for d in visible.split(",") if d.strip()]
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(
                ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10, check=False
            ).stdout
            return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]
        except (OSError, subprocess.SubprocessError):
            return []
    return []


@dataclass
class Grant:
    """What a running stage holds; ``env`` goes into the evaluator's environment."""

    gpu_ids: list[str]
    cpus: int

    @property
    def env(self) -> dict[str, str]:
        env = {"CUDA_VISIBLE_DEVICES": ",".join(self.gpu_ids)}
        env.update({var: str(self.cpus) for var in THREAD_VARS})
        return env


class SlotPool:
    """CPU and GPU slots, granted first come first served."""

    def __init__(self, gpu_ids: Iterable[str], cpus: int) -> None:
        self.gpu_ids = list(gpu_ids)
        self.cpus = max(1, int(cpus))
        self._free_gpus = list(self.gpu_ids)
        self._free_cpus = self.cpus
        self._queue: deque[tuple[Resources, asyncio.Future[Grant]]] = deque()
        self.peak = {"cpus": 0, "gpus": 0}  # most slots held at once (benchmarks, tests)

    def fit(self, stages: Iterable[Stage]) -> tuple[list[Stage], list[str]]:
        """Stages whose requests this machine can meet, and what was changed, or raise.

        No GPU here: GPU requests are dropped (the stage runs on the CPU). CPU requests
        above the pool are capped to it (a 2-core CI box can run a 4-CPU stage slowly).
        """
        fitted, notes = [], []
        for stage in stages:
            r = stage.resources
            gpus, cpus = r.gpus, r.cpus
            if gpus and not self.gpu_ids:
                notes.append(f"{stage.name}: no GPU on this machine, runs on the CPU")
                gpus = 0
            elif gpus > len(self.gpu_ids):
                raise ResourceError(
                    f"stage {stage.name!r} needs {gpus} GPUs, this machine has "
                    f"{len(self.gpu_ids)} ({','.join(self.gpu_ids)})"
                )
            if cpus > self.cpus:
                notes.append(f"{stage.name}: asks {cpus} CPUs, capped to {self.cpus}")
                cpus = self.cpus
            resources = Resources(cpus=cpus, gpus=gpus)
            fitted.append(dataclasses.replace(stage, resources=resources))
        return fitted, notes

    @contextlib.asynccontextmanager
    async def acquire(self, resources: Resources) -> AsyncIterator[Grant]:
        want = Resources(cpus=min(max(1, resources.cpus), self.cpus), gpus=resources.gpus)
        if want.gpus > len(self.gpu_ids):
            raise ResourceError(f"needs {want.gpus} GPUs, the pool has {len(self.gpu_ids)}")
        future: asyncio.Future[Grant] = asyncio.get_running_loop().create_future()
        self._queue.append((want, future))
        self._dispatch()
        try:
            grant = await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._release(future.result())  # granted just as we were cancelled
            else:
                self._queue = deque(item for item in self._queue if item[1] is not future)
                self._dispatch()
            raise
        try:
            yield grant
        finally:
            self._release(grant)

    def usage(self) -> dict[str, Any]:
        busy = [g for g in self.gpu_ids if g not in self._free_gpus]
        return {
            "gpus": {"total": len(self.gpu_ids), "busy": len(busy), "ids": busy},
            "cpus": {"total": self.cpus, "busy": self.cpus - self._free_cpus},
            "waiting": len(self._queue),
        }

    def _dispatch(self) -> None:
        """Grant waiting requests in order; the head blocks the rest (no starvation)."""
        while self._queue:
            want, future = self._queue[0]
            if future.done():
                self._queue.popleft()
                continue
            if want.cpus > self._free_cpus or want.gpus > len(self._free_gpus):
                return
            self._queue.popleft()
            gpus = [self._free_gpus.pop(0) for _ in range(want.gpus)]
            self._free_cpus -= want.cpus
            future.set_result(Grant(gpu_ids=gpus, cpus=want.cpus))
            used = {
                "cpus": self.cpus - self._free_cpus,
                "gpus": len(self.gpu_ids) - len(self._free_gpus),
            }
            self.peak = {k: max(self.peak[k], used[k]) for k in used}

    def _release(self, grant: Grant) -> None:
        self._free_cpus += grant.cpus
        self._free_gpus.extend(grant.gpu_ids)
        self._free_gpus.sort(key=self.gpu_ids.index)
        self._dispatch()
