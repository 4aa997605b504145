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
* constants are modelled in log space (relative moves, signs kept); a constant whose sign
  differs among the points, or one below ``TINY`` (a tolerance), is left alone;
* the covariance is the rank-weighted spread of the points around their weighted mean
  (CMA-ES's log weights), so its size shrinks as the elite converges: steps become fine
  exactly when the optimum is near, and stay wide while the elite disagrees;
* the draw is scaled by ``scale`` (2 measured best: 1 and 3 were worse on 40 seeds);
* when enough scored nodes share the parent's ints (``fit_points``), a quadratic surrogate
  (``surrogate.py``) fitted to them picks the most promising of ``draws`` candidates, so
  the move also knows which way is up; otherwise the first draw is taken.

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
from engine.agents.offline.surrogate import fit_quadratic


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
    vary in any float.
    """
    floats = [k for k, lit in enumerate(literals) if not lit.is_int]
    if len(points) < 2 or not floats:
        return {}
    values = np.array([[parse(texts[k]) or 0.0 for k in floats] for _, texts in points])
    signs = np.sign(values)
    columns = [
        j
        for j in range(len(floats))
        if np.all(np.abs(values[:, j]) >= TINY)
        and np.all(signs[:, j] == signs[0, j])
        and np.ptp(values[:, j]) > 0
    ]
    if not columns:
        return {}
    logs = np.log(np.abs(values[:, columns]))
    scores = np.array([score for score, _ in points], dtype=float)
    order = np.argsort(-direction.fitness(scores, maximize), kind="stable")
    weights = np.log(len(points) + 0.5) - np.log(np.arange(1, len(points) + 1))
    weights /= weights.sum()
    ranked = logs[order]
    spread = ranked - weights @ ranked
    covariance = (spread.T * weights) @ spread + np.eye(len(columns)) * 1e-8
    candidates = logs[0] + scale * np.random.default_rng(rng.getrandbits(64)).multivariate_normal(
        np.zeros(len(columns)), covariance, size=max(1, draws)
    )
    new = candidates[_pick(candidates, floats, columns, signs[0], fit_points, maximize)]
    moves = {}
    for i, j in enumerate(columns):
        k = floats[j]
        value = math.copysign(math.exp(new[i]), values[0, j])
        text = format_float(value) if math.isfinite(value) else literals[k].text
        if text != literals[k].text:
            moves[k] = text
    return moves


def _pick(
    candidates: np.ndarray,
    floats: list[int],
    columns: list[int],
    signs: np.ndarray,
    fit_points: Sequence[tuple[float, Sequence[str]]],
    maximize: bool,
) -> int:
    """Index of the candidate the surrogate rates best (0 without a usable surrogate)."""
    if len(candidates) == 1 or not fit_points:
        return 0
    values = np.array(
        [[parse(texts[floats[j]]) or 0.0 for j in columns] for _, texts in fit_points]
    )
    if not np.all(values * signs[columns] > 0):  # a sign differs: log space is meaningless
        return 0
    scores = np.array([score for score, _ in fit_points], dtype=float)
    model = fit_quadratic(np.log(np.abs(values)), direction.fitness(scores, maximize))
    if model is None:
        return 0
    return int(np.argmax(model.predict(candidates)))
