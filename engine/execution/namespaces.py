"""The engine's side of the evaluator's supervisor: which layers it may use, and its command.

The supervisor itself is ``engine/execution/supervisor.py`` (a fresh interpreter, or a fork of
the run's fork server: ``engine/execution/launcher.py``) that sets up the layers and watches
the evaluation (see its docstring). Here: ``Layers`` (what
this machine allows, found by a trial run in ``engine/execution/sandbox.py``), what each set of
layers cannot stop (for the run's first line), the writable devices, and the command line.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

SUPERVISOR = Path(__file__).resolve().parent / "supervisor.py"
SHM = Path("/dev/shm")
# Devices an evaluator may write besides its directories (/dev/nvidia* are added). Not
# /dev/pts: the user's terminals are there.
DEVICES = (
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/dri",
    "/dev/kfd",
    "/dev/accel",
    "/dev/nvidia-caps",
    "/dev/infiniband",
)


@dataclass(frozen=True)
class Layers:
    """What confines an evaluator besides its supervisor.

    user: a user namespace (needed for the others when not root); mount: a mount
    namespace with read-only mounts; pid: a PID namespace with its own /proc; landlock:
    the Landlock ABI used (0: none); scoped (ABI >= 6): Landlock's signal and
    abstract-socket scopes.
    """

    user: bool = False
    mount: bool = False
    pid: bool = False
    landlock: int = 0

    @property
    def scoped(self) -> bool:
        return self.landlock >= 6

    def describe(self) -> str:
        spaces = [
            n for n, on in (("user", self.user), ("mount", self.mount), ("pid", self.pid)) if on
        ]
        parts = [f"{'+'.join(spaces)} namespaces" if spaces else "no namespaces"]
        if self.landlock:
            scope = ", signal+socket scoping" if self.scoped else ", no signal scoping"
            parts.append(f"Landlock ABI {self.landlock}{scope}")
        return ", ".join(parts)

    def gaps(self) -> list[str]:
        """What an evaluator under these layers can still do to the engine or the run."""
        gaps = []
        if not self.pid:
            gaps.append("see the engine's processes in /proc")
            if not self.scoped:
                gaps.append("signal (kill/SIGSTOP) the engine and its supervisor")
        if not self.mount:
            gaps.append("chmod files the user owns, the run's too (Landlock ignores chmod)")
        if not self.scoped:
            gaps.append("connect to other processes' abstract unix sockets")
        return gaps


def devices() -> list[str]:
    """Existing device paths an evaluator may write (a fixed list plus /dev/nvidia*)."""
    found = [p for p in DEVICES if os.path.exists(p)]
    with contextlib.suppress(OSError):
        found += sorted(str(p) for p in Path("/dev").glob("nvidia*") if not p.is_dir())
    return found


def shm_holds(paths: Iterable[Path]) -> bool:
    """Whether /dev/shm contains one of ``paths``."""
    shm = SHM.resolve() if SHM.exists() else SHM
    return any(p == shm or shm in p.parents for p in (Path(x).resolve() for x in paths))


def command(
    argv: list[str],
    layers: Layers,
    readonly: Iterable[Path] = (),
    writable: Iterable[Path] = (),
    shm: str = "closed",
    rlimits: Iterable[tuple[int, int, int]] = (),
) -> list[str]:
    """``argv`` run under the supervisor with these layers (``writable``: work dir first)."""
    names = "".join(
        c for c, on in (("u", layers.user), ("m", layers.mount), ("p", layers.pid)) if on
    )
    spec = [str(os.getpid()), names or "-", str(layers.landlock), shm]
    for flag, values in (
        ("-r", [str(p) for p in readonly]),
        ("-w", [str(p) for p in writable]),
        ("-d", devices() if layers.landlock else []),
        ("-l", [f"{w}:{s}:{h}" for w, s, h in rlimits]),
    ):
        for value in values:
            spec += [flag, value]
    return [sys.executable, "-I", "-S", str(SUPERVISOR), *spec, "--", *argv]
