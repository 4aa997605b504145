"""Generic tasks for ``benchmarks/search_quality.py``: a program with literals and its score.

Each task is what a user would write: an initial program whose ``params()`` returns the
values being tuned (written as plain literals, mostly ``0.0`` or a textbook start), and a
score computed outside it, as an evaluator would. The same score function is handed to the
optimisation libraries with a box (``Param``); the program states the same box as ranges in
its comments (``x0 = 0.4  # in [0.0, 1.0]``), or not (``program(ranges=False)``): the
offline researcher sees only the program. No constant of the researcher was tuned on them
before 2026-12-06; the CMA-ES move's rate and its rule for never-moved floats were chosen
on them (seeds 10-29 and 0-19; ``engine/agents/offline/cma_move.py``).

Scores are maximised; ``best_known`` is the optimum (or the best known value).
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Param:
    """One tuned value: its name, the library's box and whether it is an int."""

    name: str
    low: float
    high: float
    start: float
    is_int: bool = False


@dataclass(frozen=True)
class Task:
    name: str
    params: tuple[Param, ...]
    score: Callable[[np.ndarray], float | None]  # None: an invalid candidate
    best_known: float
    noise: float = 0.0  # sd of the noise added to the score the search sees

    def program(self, ranges: bool = True) -> str:
        """The initial program: one literal per value, in ``params()``; with ``ranges`` each
        states the box the libraries search (``x0 = 0.4  # in [0.0, 1.0]``), as a user who
        knows it would write it."""
        lines = [f'"""Initial program of the {self.name} task."""', "", "", "def params():"]
        for p in self.params:
            start = str(int(p.start)) if p.is_int else repr(float(p.start))
            box = f"  # in [{p.low!r}, {p.high!r}]" if ranges else ""
            lines.append(f"    {p.name} = {start}{box}")
        lines.append(f"    return [{', '.join(p.name for p in self.params)}]")
        return "\n".join(lines) + "\n"

    def observe(self, values: np.ndarray, salt: str) -> tuple[float | None, float | None]:
        """(the score the search sees, the true score): noise seeded by the candidate."""
        true = self.score(values)
        if true is None or not math.isfinite(true):
            return None, None
        if not self.noise:
            return true, true
        digest = hashlib.sha256(f"{salt}/{values.tolist()}".encode()).digest()
        return true + random.Random(digest).gauss(0.0, self.noise), true


def _quadratic(target: np.ndarray, scale: np.ndarray) -> Callable[[np.ndarray], float]:
    return lambda x: -float(np.sum(((x - target) / scale) ** 2))


def _rosenbrock(x: np.ndarray) -> float:
    return -float(np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2))


_ROTATION = np.linalg.qr(np.random.default_rng(7).normal(size=(6, 6)))[0]
_ELLIPSE_TARGET = np.array([0.7, -1.3, 0.25, -0.4, 1.8, -0.9])
_ELLIPSE_AXES = 10.0 ** (4.0 * np.arange(6) / 5)  # condition number 1e4


def _ellipsoid(x: np.ndarray) -> float:
    return -float(np.sum(_ELLIPSE_AXES * (_ROTATION @ (x - _ELLIPSE_TARGET)) ** 2))


_T = np.linspace(0.0, 10.0, 200)


def _series(terms: float, stride: float, amp: float, freq: float, decay: float) -> np.ndarray:
    ks = 1 + stride * np.arange(int(terms))
    waves = np.sin(np.outer(ks, freq * _T)) / ks[:, None]
    return amp * np.exp(-decay * _T) * waves.sum(axis=0)


_SERIES_DATA = _series(5, 2, 1.6, 1.3, 0.25)  # five odd harmonics: a damped square wave


def _series_fit(x: np.ndarray) -> float | None:
    terms, stride = x[0], x[1]
    if terms != int(terms) or stride != int(stride) or not (1 <= terms <= 50 and stride >= 1):
        return None
    return -float(np.sqrt(np.mean((_series(*x) - _SERIES_DATA) ** 2)))


def _spread(x: np.ndarray) -> float | None:
    if np.any(x < 0.0) or np.any(x > 1.0):  # a point outside the square: invalid
        return None
    points = x.reshape(-1, 2)
    gaps = np.linalg.norm(points[:, None] - points[None], axis=-1)
    return float(np.min(gaps[np.triu_indices(len(points), 1)]))


def _cluster() -> tuple[Param, ...]:
    """12 points scattered in the middle of the square: a valid but
    crowded start (minimum distance 0.02), with one closest pair at a time, not a plateau."""
    rng = random.Random(3)
    cells = [(round(rng.uniform(0.3, 0.7), 2), round(rng.uniform(0.3, 0.7), 2)) for _ in range(12)]
    return tuple(
        Param(f"{axis}{i}", 0.0, 1.0, value)
        for i, cell in enumerate(cells)
        for axis, value in zip("xy", cell, strict=True)
    )


QUAD_TARGET = np.array([3.0, -0.02, 150.0, -7.5, 0.4, -40.0])
QUAD_BOX = (10.0, 0.1, 1000.0, 10.0, 1.0, 100.0)
NOISY_TARGET = np.array([0.8, -2.0, 0.3, 1.5, -0.6])

TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task(  # mixed signs and scales, every literal 0.0: six constants that start alike
            "quadratic",
            tuple(Param(f"c{i}", -b, b, 0.0) for i, b in enumerate(QUAD_BOX)),
            _quadratic(QUAD_TARGET, np.abs(QUAD_TARGET)),
            0.0,
        ),
        Task(  # the user's report: 10 - (x - 3)^2 - (y + 1)^2 from x = y = 0.0
            "user_bowl",
            (Param("x", -10, 10, 0.0), Param("y", -10, 10, 0.0)),
            lambda v: 10.0 - (v[0] - 3.0) ** 2 - (v[1] + 1.0) ** 2,
            10.0,
        ),
        Task(  # the textbook start; two coordinates must cross zero
            "rosenbrock4",
            tuple(Param(f"x{i}", -5, 5, s) for i, s in enumerate((-1.2, 1.0, -1.2, 1.0))),
            _rosenbrock,
            0.0,
        ),
        Task(  # rotated, condition number 1e4, optimum at mixed signs
            "ellipsoid6",
            tuple(Param(f"x{i}", -5, 5, 1.0) for i in range(6)),
            _ellipsoid,
            0.0,
        ),
        Task(  # mixed integer: harmonic count and stride, amplitude, frequency, damping
            "series_fit",
            (
                Param("terms", 1, 12, 1, is_int=True),
                Param("stride", 1, 4, 1, is_int=True),
                Param("amp", 0.0, 5.0, 1.0),
                Param("freq", 0.1, 4.0, 1.0),
                Param("decay", 0.0, 2.0, 0.0),
            ),
            _series_fit,
            0.0,
        ),
        Task(  # constrained geometry: maximise the least distance of 12 points in a square
            "spread12",
            _cluster(),
            _spread,
            0.3887,  # the proven optimum for 12 points in the unit square
        ),
        Task(  # a noisy score (sd 0.05); judged by the true score of the best-looking one
            "noisy_sphere",
            tuple(Param(f"x{i}", -5, 5, 0.5) for i in range(5)),
            _quadratic(NOISY_TARGET, np.ones(5)),
            0.0,
            noise=0.05,
        ),
    )
}
