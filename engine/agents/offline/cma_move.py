"""The offline Researcher's CMA-ES move: the run's own history replayed through CMA-ES.

CMA-ES (the ``cmaes`` package, which Optuna's CMA-ES sampler runs) adapts a step size and a
covariance from the generations it has seen, which the elite model (``elite_model.py``)
does not: that one fits one Gaussian to the fittest nodes and knows nothing of the order
they came in. The Researcher keeps no state between proposals, so a step's proposal depends
only on what the step sees (see ``researcher.py``); this move therefore rebuilds a CMA-ES
at every proposal from the nodes the step is shown and asks it once:

* the history is the parent and the elite and context nodes with its skeleton and ints
  (``elite_points.history_points``), in node order: the order the run found them;
* a fresh ``CMA`` starts at the oldest of them and is told them in generations of its
  population size (a last, partial generation is left out); each tell moves its mean
  toward the fitter half and adapts its step size and covariance, as it would have had
  it proposed them itself;
* the search space is each float over its own scale: its magnitude in the oldest point,
  at least ``COMMON_SHARE`` of the program's common scale (``literal_moves.common_scale``),
  so a start of 0.0 among coordinates near 0.5 moves on their scale, not on nothing;
* a literal that must keep its sign (``Literal.signed``) keeps it; ints are never touched,
  and neither are tolerances (below ``TINY`` in every point) nor a float the family never
  moved: CMA-ES would move it on its magnitude's scale, which a constant the fit needs
  near 0.0 cannot afford (the generic quadratic task stalled at -0.78 instead of 0 on
  seeds 0-19 with it moved, ``benchmarks/search_quality.py``).

The generator of the ``CMA`` is seeded from the proposal's own generator, so the same
visible nodes and the same (seed, step, attempt) always give the same proposal.

Measured 2026-12-06 and the settings chosen on tuning seeds (search suite 10-29 or 0-19,
circle packing 0-39): the move at 30 % of the proposals the model move leaves (before the
model move it took the surrogate's turns, which solve the quadratic task: 50 % there gave
quadratic -1.2 on seeds 0-4); SIGMA0 0.1/0.6, a history of any ints with the counts as
rounded CMA-ES parameters (circle packing 1.97 and 1.87 against 2.02: counts such as n = 26
move and fail), a draw centred on the parent instead of the CMA-ES mean, and a scale from
the family's spread (loses the ellipsoid and spread gains) were no better. The figures are
in ``benchmarks/search_quality.py`` and ``benchmarks/circle_packing_quality.py``.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Sequence
from typing import Any

import numpy as np

from engine import direction
from engine.agents.offline.literal_moves import TINY, common_scale
from engine.agents.offline.literals import Literal, format_float, parse

SIGMA0 = 0.3  # the starting step, in units of each float's own scale
COMMON_SHARE = 0.3  # a float's scale is at least this share of the program's common scale
MEAN_MAX = 1e30  # cmaes refuses a larger mean; such a program is left to the other moves


def _cma() -> Any:
    """``cmaes.CMA``, imported on first use: the package imports scipy.stats (0.5-2 s), which
    an offline run pays in a thread beside its initial evaluation (``warm_up``), not before
    its first evaluation starts, and a run that never takes this move need not pay."""
    from cmaes import CMA

    return CMA


async def warm_up() -> str:
    """Import cmaes in a thread (the engine runs this beside the initial evaluation)."""
    await asyncio.to_thread(_cma)
    return ""


def cma_move(
    literals: Sequence[Literal],
    history: Sequence[tuple[float, Sequence[str]]],
    maximize: bool,
    rng: random.Random,
) -> dict[int, str]:
    """New texts for the parent's floats: one ask of a CMA-ES told ``history``.

    ``history`` holds (score, literal texts) of nodes with the parent's skeleton and ints,
    in the order the run made them, the parent among them. Returns {} when no float can
    move.
    """
    floats = [k for k, lit in enumerate(literals) if not lit.is_int]
    if len(history) < 2 or not floats:
        return {}
    values = np.array([[parse(texts[k]) or 0.0 for k in floats] for _, texts in history])
    tolerance = np.all((np.abs(values) > 0) & (np.abs(values) < TINY), axis=0)
    columns = [k for j, k in enumerate(floats) if not tolerance[j]]
    if not columns:
        return {}
    values = values[:, ~tolerance]
    varying = np.ptp(values, axis=0) > 0  # one the family never moved is left alone
    if not np.any(varying):
        return {}
    columns = [k for k, v in zip(columns, varying, strict=True) if v]
    values = values[:, varying]
    common = common_scale(list(history[0][1]), list(literals))
    scale = np.maximum(np.abs(values[0]), COMMON_SHARE * common)
    scale[scale == 0] = 1.0
    x = values / scale
    if not np.all(np.abs(x) < MEAN_MAX):
        return {}
    fitness = direction.fitness(np.array([s for s, _ in history], dtype=float), maximize)
    optimizer = _cma()(mean=x[0].copy(), sigma=SIGMA0, seed=rng.getrandbits(31))
    size = optimizer.population_size
    try:
        for start in range(0, len(x) - size + 1, size):  # whole generations, in node order
            optimizer.tell([(x[i], -float(fitness[i])) for i in range(start, start + size)])
        new = optimizer.ask() * scale
    except (ValueError, np.linalg.LinAlgError, AssertionError):  # a degenerate replay
        return {}
    moves = {}
    for k, value in zip(columns, new.tolist(), strict=True):
        lit = literals[k]
        if not math.isfinite(value):
            continue
        if not lit.signed and lit.value != 0:
            value = math.copysign(abs(value), lit.value)
        text = format_float(value)
        if text != lit.text:
            moves[k] = text
    return moves
