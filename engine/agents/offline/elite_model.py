"""The offline Researcher's model move: a step drawn from the spread of the fittest nodes.

A literal-mutation strategy with fixed step sizes tunes badly near a sharp optimum: on
circle packing a 1 % change of one layout constant costs about 0.01, so 25 % steps almost
never land close enough, while smaller fixed steps crawl elsewhere. The fittest nodes of the
run already say how far apart good settings of the constants are and which constants move
together. This move fits a Gaussian to them, as CMA-ES and other estimation-of-distribution
methods do, and draws the child's float constants from it around the parent:

* the points are the parent and *elite* nodes (the run's fittest, handed over by the
  sampler: ``ResearchContext.elite``) with the parent's skeleton, so literal k means the
  same constant in every point (the Researcher picks them: the parent's own ints once
  enough nodes share them, else any; ``elite_points.spread_points``);
* a constant is modelled in log space (relative moves) while every point has it with one
  sign and away from zero, else in linear space, where a draw may cross zero (a literal
  that must keep its sign, ``Literal.signed``, keeps it); a tolerance (below ``TINY`` in
  every point) and a constant that does not vary among the points are left alone;
* the covariance is the rank-weighted spread of the points around their weighted mean
  (CMA-ES's log weights), so its size shrinks as the elite converges: steps become fine
  exactly when the optimum is near, and stay wide while the elite disagrees;
* the draw is scaled by ``scale`` (2 measured best: 1 and 3 were worse on 40 seeds);
* when enough scored nodes share the parent's ints (``fit_points``), a quadratic surrogate
  (``surrogate.py``) fitted to them picks the most promising of ``draws`` candidates, so
  the move also knows which way is up; otherwise the first draw is taken.

* with more than ``MAX_COLUMNS`` varying constants, a random ``MAX_COLUMNS`` of them move
  and the rest keep the parent's values: a quadratic surrogate in d constants has
  (d + 1)(d + 2) / 2 coefficients, 325 for 24, far more than the 60 elite points can fix,
  and a draw that moves 24 coordinates at once by the elite's spread mostly leaves the
  valid region (12 points in a square: 85 % of model moves invalid, 50 % with 8 columns;
  median best 0.102 -> 0.127 on seeds 0-19; 4, 6, 10 and 12 columns gave 0.117-0.124).

It needs no gradient and no knowledge of the task, and ints (structure) are never touched.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import numpy as np

from engine import direction
from engine.agents.offline.literal_moves import TINY  # smaller floats are tolerances
from engine.agents.offline.literals import Literal, format_float, parse
from engine.agents.offline.surrogate import fit_model

MAX_COLUMNS = 8  # at most this many constants move in one model move (see the doc)
HUGE = 1e100  # constants beyond this (an unbounded score drives them there) are not modelled


def model_move(
    literals: Sequence[Literal],
    points: Sequence[tuple[float, Sequence[str]]],
    maximize: bool,
    rng: random.Random,
    scale: float,
    fit_points: Sequence[tuple[float, Sequence[str]]] = (),
    draws: int = 1,
) -> dict[int, str]:
    """New texts for the parent's float literals, drawn from the elite's spread.

    ``points`` are (score, literal texts) of same-skeleton nodes, the parent first; the
    draw is centred on the parent. ``fit_points`` (same skeleton and ints) train the
    surrogate that picks one of ``draws`` candidates. Returns {} when the points do not
    vary in any float, and when constants that grew past ``HUGE`` leave the linear algebra
    nothing finite to work with (an unbounded score pulls them there): the other moves go on.
    """
    try:
        return _model_move(literals, points, maximize, rng, scale, fit_points, draws)
    except (np.linalg.LinAlgError, ValueError):
        return {}


def _model_move(
    literals: Sequence[Literal],
    points: Sequence[tuple[float, Sequence[str]]],
    maximize: bool,
    rng: random.Random,
    scale: float,
    fit_points: Sequence[tuple[float, Sequence[str]]],
    draws: int,
) -> dict[int, str]:
    floats = [k for k, lit in enumerate(literals) if not lit.is_int]
    if len(points) < 2 or not floats:
        return {}
    values = _values(points, floats)
    every = np.vstack([values, _values(fit_points, floats)]) if fit_points else values
    if not np.all(np.abs(every) < HUGE):  # squares overflow; LAPACK's SVD may not return
        return {}
    columns = [  # varying among the spread points or the fit points (the peak's)
        j
        for j in range(len(floats))
        if np.ptp(every[:, j]) > 0 and np.max(np.abs(every[:, j])) >= TINY
    ]
    if not columns:
        return {}
    if len(columns) > MAX_COLUMNS:  # a random few of many constants (see MAX_COLUMNS)
        columns = sorted(rng.sample(columns, MAX_COLUMNS))
    logs = np.array(  # per column: log space (True) or linear
        [
            bool(np.all(np.abs(every[:, j]) >= TINY) and np.ptp(np.sign(every[:, j])) == 0)
            for j in columns
        ]
    )
    x = _forward(values[:, columns], logs)
    scores = np.array([score for score, _ in points], dtype=float)
    order = np.argsort(-direction.fitness(scores, maximize), kind="stable")
    weights = np.log(len(points) + 0.5) - np.log(np.arange(1, len(points) + 1))
    weights /= weights.sum()
    ranked = x[order]
    spread = ranked - weights @ ranked
    covariance = (spread.T * weights) @ spread + np.eye(len(columns)) * 1e-8
    candidates = x[0] + scale * np.random.default_rng(rng.getrandbits(64)).multivariate_normal(
        np.zeros(len(columns)), covariance, size=max(1, draws)
    )
    raw = _backward(candidates, logs, values[0, columns])
    fit = (
        (_values(fit_points, floats)[:, columns], [s for s, _ in fit_points])
        if fit_points
        else None
    )
    keep = np.array([not literals[floats[j]].signed for j in columns])
    new = _pick(raw, fit, maximize, keep, values[0, columns])
    moves = {}
    for i, j in enumerate(columns):
        k = floats[j]
        value = float(new[i])
        if not literals[k].signed and values[0, j] != 0:
            value = math.copysign(abs(value), values[0, j])
        text = format_float(value) if math.isfinite(value) else literals[k].text
        if text != literals[k].text:
            moves[k] = text
    return moves


def _values(points: Sequence[tuple[float, Sequence[str]]], floats: list[int]) -> np.ndarray:
    return np.array([[parse(texts[k]) or 0.0 for k in floats] for _, texts in points])


def _backward(x: np.ndarray, logs: np.ndarray, parent: np.ndarray) -> np.ndarray:
    """Rows of the model's space as raw values: log columns with the parent's sign."""
    out = x.astype(float).copy()
    with np.errstate(over="ignore"):
        out[:, logs] = np.sign(parent[logs]) * np.exp(x[:, logs])
    return out


def _forward(values: np.ndarray, logs: np.ndarray) -> np.ndarray:
    """Columns in log space (``logs``) as log magnitudes, the others as they are."""
    out = values.astype(float).copy()
    out[:, logs] = np.log(np.abs(values[:, logs]))
    return out


def _pick(
    candidates: np.ndarray,
    fit: tuple[np.ndarray, list[float]] | None,
    maximize: bool,
    keep: np.ndarray,
    parent: np.ndarray,
) -> np.ndarray:
    """The raw candidate the surrogate rates best, the model's own peak among them (the
    first candidate without a usable surrogate).

    ``fit`` holds the fit points (raw values) and their scores: the surrogate works on the
    constants as the program uses them, where a quadratic score is a quadratic. The peak is
    a candidate only where it keeps the sign of the columns in ``keep`` (literals that may
    not change sign); elsewhere it may cross zero, which the log-space draws never do.
    """
    if len(candidates) == 1 or fit is None:
        return candidates[0]
    x, scores = fit
    y = direction.fitness(np.array(scores, dtype=float), maximize)
    if not np.all(np.isfinite(y)):  # an infinite score: nothing to fit (constants: ``HUGE``)
        return candidates[0]
    model = fit_model(x, y)
    if model is None:
        return candidates[0]
    peak = model.peak(parent)
    if peak is not None and np.all(np.sign(peak[keep]) == np.sign(parent[keep])):
        candidates = np.vstack([candidates, peak])
    predicted = model.predict(candidates)
    predicted[~np.all(np.isfinite(candidates), axis=1)] = -np.inf
    return candidates[int(np.argmax(predicted))]
