"""The offline Researcher's start-up move: every float at once, on the scale of its range.

The other moves are local: a mutation moves 1-3 constants by a step sized on their own
magnitude, and the model and CMA-ES moves need a few nodes of the parent's family before
they fit anything. From a poor start that is slow: on the search suite's point-spread task
(``benchmarks/search_quality.py``: 12 points crowded in the middle of a square, 24
coordinates) ours reached 0.131 at 100 evaluations where Optuna's TPE, whose first 10 trials
are random draws in the box, reached 0.170. When the program states a range for every
float it may move (``x = 0.4  # in [0, 1]``, ``literals.py``) the scale of the box is
known, so the first ``STEPS`` steps of a run do what the libraries do at their start:

* every such float at once moves by a Gaussian step of ``SIGMA`` times its range's width
  (1/6, the starting step Optuna's CMA-ES sampler takes on a box), around the parent's
  value, kept inside the range; ints (counts, structure) stay as they are, and so do
  tolerances (below ``TINY``), which need no range;
* a float without a range, or a range with an infinite end, turns the move off: the box
  is then unknown, and a step on the wrong scale costs more than it finds;
* the result starts a lineage of its own (the Researcher records no base), so its children
  neither repeat nor undo a jump that was never a direction.

A uniform draw in the whole box (TPE's start) was tried first: the point-spread median at 200
went 0.193 -> 0.213 on seeds 0-19, but a random frequency takes the series-fit task out of
its start's basin (-0.084 -> -0.200; seeds 0-39, 5 or 10 steps, every step or every other:
-0.12 to -0.20). Gaussian steps of 0.1/0.15/0.2/0.3 of the width gave series-fit -0.084 /
-0.062 / -0.102 / -0.194 and point-spread 0.200 / 0.203 / 0.206 / 0.217 (seeds 0-39, 10
steps); 1/6 was taken from CMA-ES rather than from these. The figures for the final move
are in ``benchmarks/search_quality.py``'s docstring.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from engine.agents.offline.literal_moves import TINY, clamp
from engine.agents.offline.literals import Literal, format_float, parse

STEPS = 10  # the run's first steps that take this move (Optuna TPE's start-up trials: 10)
SIGMA = 1 / 6  # the step, as a share of each range's width (Optuna's CMA-ES sigma0)


def startup_move(
    literals: Sequence[Literal],
    step: int,
    rng: random.Random,
) -> dict[int, str]:
    """New texts for every float parameter of the parent at step ``step``, or {} when the
    step is past the start-up or a float parameter states no finite range.

    A fixed setting (``Literal.fixed``: a range of one value) is no parameter. The values
    are clamped into their ranges here (``literal_moves.clamp``), so the
    Researcher's clamp after every move changes nothing and the lineage starts at exactly
    these texts.
    """
    if step > STEPS:
        return {}
    floats = [
        k
        for k, lit in enumerate(literals)
        if not lit.is_int and not lit.fixed and not 0 < abs(lit.value) < TINY
    ]
    bounded = all(math.isfinite(literals[k].high - literals[k].low) for k in floats)
    if not floats or not bounded:
        return {}
    moves = {}
    for k in floats:
        lit = literals[k]
        text = clamp(lit, format_float(rng.gauss(lit.value, SIGMA * (lit.high - lit.low))))
        if parse(text) != lit.value:  # a draw clamped back onto the parent's value is none
            moves[k] = text
    return moves
