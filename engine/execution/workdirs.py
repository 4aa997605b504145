"""A node's working directory for one evaluation attempt: always a fresh, empty one.

A crashed or killed attempt leaves files behind (a half-written ``results.json``, a
checkpoint, a socket, a process that still writes there). Reusing that directory would let
the old attempt leak into the new one: a stale results file read as the new score, or an
orphan overwriting the new attempt's output. So an existing ``nodes/<step>`` is moved
aside to ``nodes/<step>.attempt-K`` (K = 1, 2, ... the first free number) and kept for
inspection; the new attempt gets an empty ``nodes/<step>``. A rename within one directory
is atomic, so a crash in the middle leaves either the old or the new layout.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

NODES_DIR = "nodes"
ATTEMPT_SEP = ".attempt-"


def node_dir(run_dir: Path, step: int) -> Path:
    """Where the current attempt of ``step`` runs (absolute; the last part is not resolved,
    so a symlink planted there is moved aside, never followed)."""
    return Path(run_dir).resolve() / NODES_DIR / str(int(step))


def attempts(run_dir: Path, step: int) -> list[Path]:
    """Earlier attempts of ``step`` that were moved aside, oldest first."""
    base = node_dir(run_dir, step)
    found: list[tuple[int, Path]] = []
    if not base.parent.is_dir():
        return []
    prefix = f"{base.name}{ATTEMPT_SEP}"
    for entry in base.parent.iterdir():
        suffix = entry.name[len(prefix) :] if entry.name.startswith(prefix) else ""
        if suffix.isdigit():
            found.append((int(suffix), entry))
    return [path for _, path in sorted(found)]


def fresh(run_dir: Path, step: int) -> Path:
    """An empty working directory for a new attempt of ``step``; never an old one.

    An existing ``nodes/<step>`` (a file or a symlink included) is renamed to
    ``nodes/<step>.attempt-K`` first. Raises OSError when the disk refuses.
    """
    if int(step) < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    target = node_dir(run_dir, step)
    target.parent.mkdir(parents=True, exist_ok=True)
    if os.path.lexists(target):
        aside = _move_aside(target)
        log.info("moved the earlier attempt of step %s to %s", step, aside.name)
    target.mkdir()
    return target


def _move_aside(target: Path) -> Path:
    """Rename ``target`` to the first free ``<name>.attempt-K``; returns the new path."""
    earlier = attempts(target.parent.parent, int(target.name))
    taken = [int(p.name.rsplit(ATTEMPT_SEP, 1)[1]) for p in earlier]
    number = max(taken, default=0) + 1
    while True:
        aside = target.with_name(f"{target.name}{ATTEMPT_SEP}{number}")
        if not os.path.lexists(aside):
            try:  # one engine owns the run directory, so the check above does not race
                os.rename(target, aside)
                return aside
            except OSError as exc:  # an empty directory of that name appeared: next number
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
        number += 1
