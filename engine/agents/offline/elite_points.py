"""Which scored nodes inform the offline Researcher's model move, and as what.

The model move (``elite_model.py``) needs two sets of (score, literal texts), both taken
from the elite the sampler hands over (``ResearchContext.elite``, fittest first):

* the *spread* points shape its Gaussian (``spread_points``): where good settings of the
  floats lie and which move together;
* the *fit* points train its quadratic surrogate (``fit_points``): which way is up.

Only nodes with the parent's skeleton (the program with its numeric literals masked)
qualify, so literal k means the same constant in every point. The fit set also requires the
parent's ints: a count change moves the whole landscape, and such nodes would mislead a
model of it. The spread set starts wide (any ints: a mixed spread explores) and narrows to
the parent's own family once that has ``OWN_POINTS`` members. Measured on offline circle
packing (300 candidates): mixed points throughout gave a median best of 1.995 on seeds
160-319, the switch 2.028 (``benchmarks/circle_packing_quality.py``); own points from the start
were worse before the surrogate existed (1.946-1.965 against 1.967 on 40 seeds).
"""

from __future__ import annotations

import functools

from engine.agents.base import AgentError, ResearchContext
from engine.agents.offline.literals import Literal, find_literals
from engine.store.records import DONE, Node

MODEL_ELITE = 10  # the fittest this many elite nodes shape the model move's Gaussian
OWN_POINTS = 8  # with this many nodes of the parent's own ints, the Gaussian uses only them

Points = list[tuple[float, list[str]]]


def spread_points(
    ctx: ResearchContext, literals: list[Literal], skeleton: tuple, fit: Points
) -> Points:
    """The parent and the nodes whose spread shapes the model move's Gaussian.

    Once ``fit`` (``fit_points``) has ``OWN_POINTS`` members, the parent and the
    ``MODEL_ELITE`` fittest of them; before, the parent and the ``MODEL_ELITE`` fittest
    elite nodes of its skeleton, whatever their ints. Empty for an unscored parent.
    """
    parent = ctx.parent
    if parent.score is None:  # nothing to rank it by
        return []
    if len(fit) >= OWN_POINTS:
        return fit[: 1 + MODEL_ELITE]
    points = [(parent.score, [lit.text for lit in literals])]
    for node, texts in same_skeleton(ctx.elite[:MODEL_ELITE], parent, skeleton):
        if node.score is not None:
            points.append((node.score, texts))
    return points


def fit_points(ctx: ResearchContext, literals: list[Literal], skeleton: tuple) -> Points:
    """The parent and every elite node with its skeleton *and* ints, fittest first."""
    parent = ctx.parent
    if parent.score is None:
        return []
    own = [lit.text for lit in literals]
    ints = [k for k, lit in enumerate(literals) if lit.is_int]
    points = [(parent.score, own)]
    for node, texts in same_skeleton(ctx.elite, parent, skeleton):
        if node.score is not None and all(texts[k] == own[k] for k in ints):
            points.append((node.score, texts))
    return points


def history_points(ctx: ResearchContext, literals: list[Literal], skeleton: tuple) -> Points:
    """The parent and the elite and context nodes with its skeleton and ints, in the order
    the run made them (the CMA-ES move replays them: ``cma_move.py``)."""
    parent = ctx.parent
    if parent.score is None:
        return []
    own = [lit.text for lit in literals]
    ints = [k for k, lit in enumerate(literals) if lit.is_int]
    found = {parent.id: (parent, own)}
    for node, texts in same_skeleton([*ctx.elite, *ctx.context], parent, skeleton):
        if node.score is not None and all(texts[k] == own[k] for k in ints):
            found.setdefault(node.id, (node, texts))
    ordered = sorted(found.values(), key=lambda item: (item[0].step, item[0].id or 0))
    return [(node.score, texts) for node, texts in ordered]


def same_skeleton(nodes: list[Node], parent: Node, skeleton: tuple) -> list[tuple[Node, list[str]]]:
    """(node, literal texts) of the done ``nodes`` other than ``parent`` with its skeleton."""
    found = []
    for node in nodes:
        if node.id == parent.id or node.status != DONE:
            continue
        try:
            texts, other_skeleton = _texts(node.code)
        except AgentError:
            continue
        if other_skeleton == skeleton:
            found.append((node, list(texts)))
    return found


@functools.lru_cache(maxsize=256)
def _texts(code: str) -> tuple[tuple[str, ...], tuple]:
    """Literal texts and skeleton of ``code``: the elite is the same few nodes step after
    step, so each is tokenized once, not at every proposal."""
    literals, skeleton = find_literals(code)
    return tuple(lit.text for lit in literals), skeleton
