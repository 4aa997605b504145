"""The built-in Researcher used when no LLM is configured: an evolution strategy on literals.

Without a model the only safe way to change a program is to leave its structure alone and
move its constants (``engine.agents.offline.literals`` finds and replaces them). The moves are the
ones a plain evolution strategy has, with nothing specific to any task:

* *startup*: while every float it may move states a range (``# in [0, 1]``), the run's first
  ``startup.STEPS`` steps move all floats at once by a sixth of their range's width, as the
  libraries start on a box (``engine.agents.offline.startup``); each such node starts a
  lineage of its own.
* *mutate* moves 1-3 parameters. Each float occurrence is its own parameter (six ``0.0``
  are six constants that start alike); an int written several times is mostly one count
  (``range(16)`` and ``/ 16``: all occurrences together, else one alone), but a named
  setting (``terms = 1``) is always a parameter of its own. A literal
  includes its unary minus, so values may change sign and cross zero (``literals``). Which
  parameter and by how much is ``engine.agents.offline.literal_moves``; ints are picked
  more often from a parent that is the fittest of its context.
* *model* draws the floats from a Gaussian fitted to the run's fittest same-skeleton nodes
  (``engine.agents.offline.elite_model``): fine steps when they agree, wide ones when they do not;
  a quadratic surrogate fitted to the elite nodes with the parent's ints (the constants as
  written) picks the most promising of ``MODEL_DRAWS`` draws and of its own peak, which may
  lie across zero (which nodes: ``engine.agents.offline.elite_points``).
* *cma* (when the model move was not drawn) replays the parent's family (the visible nodes
  with its skeleton and ints, in the order the run made them) through a fresh CMA-ES and
  asks it once for the floats (``engine.agents.offline.cma_move``): the step size and
  covariance CMA-ES adapts from generations, which the elite model's one Gaussian lacks.
* *probe* tries a structural neighbour of a node that is the fittest of its context: one
  count or size (an int above 2) one up or down, everywhere it is written, nothing else.
  Random mutations rarely make exactly that move from exactly that node, and it is often
  the one that unlocks a better layout. Where the program names two int settings or more
  (``terms = 1``, ``stride = 1``), a probe sometimes (``PAIR_RATE``) moves two of them at
  once: settings that pay only together (a stride that does nothing while there is one
  term, a second term that hurts at the old stride) are out of reach one at a time
  (series_fit at 200, rates 0.2/0.3/0.5 tried on seeds 0-39: median -0.120 -> -0.092 on
  0-19, -0.221 -> -0.077 on 20-39, and on held-out 40-79 -0.189 -> -0.127).
* *step* repeats the parent's own move, stretched, when it paid off.
* *undo* reverts a move that lost against its base, often trying the mirror image.
* *crossover* takes each differing literal from the parent or a same-skeleton context
  node, leaning to the fitter one.

Lineage bookkeeping lives in each proposal's metadata: its *base* (the node its moves are
measured from) and the moves. A child of a node that came out worse than its base undoes
those moves first, so whatever node the sampler hands over, a lineage behaves like a (1+1)
evolution strategy. (A per-lineage step size was tried and dropped: only nodes that gained
are built on, so the shrinking after failures never reaches a child; it measured no better.)

Whatever the move, a value drawn past the range its setting states (``x = 0.4  # in [0, 1]``,
``literals.py``) lands on the bound. On the suite's point-spread task 37 % of the draws had
put a point outside the square (a failed candidate); with the square stated as ranges none
do, and the median at 200 went from 0.127 to 0.193 (``benchmarks/search_quality.py``).

A draw that rebuilds a program the step can see (the parent, its context, the elite) is
replaced by a fresh mutation (up to ``REDRAWS`` times): its score is already known. Programs
of steps still running are not visible, so a repeat of one of them can still happen; the
engine answers those from its cache.

Reproducibility: the random draws of a proposal come from a generator seeded by (seed,
step, attempt), so a step's proposal depends only on what the step sees, never on how
many proposals other workers made before it.
"""

from __future__ import annotations

import random

from engine import direction
from engine.agents.base import AgentError, Proposal, ResearchContext
from engine.agents.offline.cma_move import cma_move
from engine.agents.offline.elite_model import model_move
from engine.agents.offline.elite_points import (
    fit_points,
    history_points,
    same_skeleton,
    spread_points,
)
from engine.agents.offline.literal_moves import (
    clamp,
    common_scale,
    count_like,
    draw,
    perturb,
    step_value,
    weight,
)
from engine.agents.offline.literals import (
    Literal,
    find_literals,
    format_float,
    locate,
    parse,
    replace_literals,
)
from engine.agents.offline.plan import Plan
from engine.agents.offline.startup import startup_move
from engine.store.records import DONE, Node

__all__ = ["OfflineResearcher", "find_literals", "format_float"]

STRUCT_BOOST = 4.0  # int weights times this when the parent is the fittest of its context
INT_TIE_RATE = 0.8  # chance that all occurrences of an int value move together
COUNT_WEIGHTS = {1: 0.6, 2: 0.3, 3: 0.1}  # how many parameters one mutation moves
STEP_RATE = 0.5  # after a gain: chance to repeat the move
MIRROR_RATE = 0.5  # after undoing: chance to try the opposite move (else a fresh mutation)
CROSSOVER_RATE, FITTER_CROSSOVER_RATE = 0.15, 0.35  # the latter when a partner is fitter
FITTER_BIAS = 0.7  # chance to take a differing literal from the fitter node
STRETCH = (0.5, 1.5)  # a repeated or mirrored move is this many times the last one
PROBE_RATE = 0.2  # chance of a structural probe from a parent fittest of its context
PAIR_RATE = 0.2  # with two named int settings or more: chance a probe moves two of them
MODEL_RATE, MODEL_POINTS, MODEL_SCALE = 0.3, 4, 2.0  # model move: chance, least points, scale
CMA_RATE, CMA_POINTS = 0.3, 8  # CMA-ES move (after the model's turn): chance, least nodes
MODEL_DRAWS = 100  # candidates the surrogate chooses from (50-200 measured alike)
REDRAWS = 10  # fresh mutations tried when a draw repeats a program the step can see
ELITE_SIZE = 60  # fittest nodes the sampler hands over: the surrogate fits them all


class OfflineResearcher:
    """Mutates, steps, undoes or recombines the numeric literals of the parent program."""

    label = "offline"
    elite_size = ELITE_SIZE  # the engine hands over this many fittest nodes (ctx.elite)

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self._attempts: dict[int, int] = {}  # step -> proposals made for it (retries)

    async def propose(self, ctx: ResearchContext) -> Proposal:
        self._reseed(ctx.step)
        parent = ctx.parent
        literals, skeleton = find_literals(parent.code)
        if not literals:
            raise AgentError(f"parent #{parent.id} has no numeric literal to change")
        if all(lit.fixed for lit in literals):
            raise AgentError(f"every numeric literal of #{parent.id} is fixed by its range")
        plan = self._plan(ctx, literals, skeleton)
        _clamp(plan, literals)
        seen = {parent.code} | {n.code for n in (*ctx.context, *ctx.elite) if n.code}
        for _ in range(REDRAWS):
            if replace_literals(parent.code, literals, _diff(plan.final, literals)) not in seen:
                break
            # A program the run already has (a mirror back onto the parent, a crossover that
            # rebuilds a context node, a count probed back): its score is known, so a fresh
            # mutation of the parent is worth more.
            texts = [lit.text for lit in literals]
            plan = Plan(texts, list(texts), parent.id, parent.score, [parent.id])
            plan.note = f"Mutated #{parent.id} (a first draw repeated a program the run has)"
            plan.apply(self._mutate(plan.final, literals, _int_scale(parent, ctx)))
            _clamp(plan, literals)
        if not _diff(plan.final, literals):  # every draw clamped back onto the parent
            raise AgentError(f"no change to #{parent.id}'s constants within their ranges")
        return plan.proposal(parent, literals)

    def _reseed(self, step: int) -> None:
        """Draws for (seed, step, attempt): independent of other steps' proposals."""
        if self.seed is None:
            return
        attempt = self._attempts.get(step, 0)
        self._attempts[step] = attempt + 1
        self.rng = random.Random(f"offline-researcher/{self.seed}/{step}/{attempt}")

    def _plan(self, ctx: ResearchContext, literals: list[Literal], skeleton: tuple) -> Plan:
        """Choose the operator; the plan's ``final`` holds the new literal texts."""
        parent = ctx.parent
        gain = self._gain(parent, ctx.maximize)
        plan = Plan([lit.text for lit in literals], [], parent.id, parent.score, [parent.id])
        plan.final = list(plan.base)
        if moves := startup_move(literals, ctx.step, self.rng):
            plan.operator = "startup"
            plan.note = f"Moved all of #{parent.id}'s floats on their ranges' scale (start-up)"
            plan.apply(moves)
            # A lineage of its own: a child neither repeats nor undoes this jump.
            plan.base, plan.base_id, plan.base_score = list(plan.final), None, None
            return plan
        probe = gain >= 0 and _fittest(parent, ctx) and self.rng.random() < PROBE_RATE
        if probe and (moves := self._probe(plan.base, literals)):
            plan.operator, plan.note = "probe", f"Probing a structural neighbour of #{parent.id}"
            plan.apply(moves)
            return plan
        if self.rng.random() < MODEL_RATE:
            fit = fit_points(ctx, literals, skeleton)
            points = spread_points(ctx, literals, skeleton, fit)
            if len(points) >= MODEL_POINTS and (
                moves := model_move(
                    literals, points, ctx.maximize, self.rng, MODEL_SCALE, fit, MODEL_DRAWS
                )
            ):
                plan.operator = "model"
                plan.note = f"Drew #{parent.id}'s constants from {len(points)} fit nodes' spread"
                plan.apply(moves)
                return plan
        if cma := self._cma(ctx, literals, skeleton, plan):
            return cma
        last = locate(literals, parent.metadata.get("moves"))
        moves = {}
        if gain > 0 and last and self.rng.random() < STEP_RATE:
            moves = self._step(plan.base, literals, last, forward=True)
            plan.note = f"#{parent.id}'s last move gained {gain:+.4g}; repeating it"
        elif gain < 0 and last:  # always undo: the sampler may hand over a poor node
            plan.base_id = parent.metadata.get("base_id")
            plan.base_score = parent.metadata["base_score"]
            for k, (old, _) in last.items():  # back to the base's values
                plan.base[k] = old
            if self.rng.random() < MIRROR_RATE:
                moves = self._step(plan.base, literals, last, forward=False)
            how = "trying the opposite move" if moves else "mutating instead"
            plan.note = (
                f"#{parent.id}'s last move lost {gain:+.4g} against #{plan.base_id}; "
                f"undoing it, {how}"
            )
        elif partner := self._partner(parent, skeleton, ctx):
            moves = self._crossover(plan.base, *partner)
            if moves:
                plan.operator, plan.sources = "crossover", [parent.id, partner[0].id]
                plan.note = f"Crossed over #{parent.id} with #{partner[0].id}"
        plan.final = list(plan.base)
        plan.apply(moves or self._mutate(plan.base, literals, _int_scale(parent, ctx)))
        return plan

    def _cma(
        self, ctx: ResearchContext, literals: list[Literal], skeleton: tuple, plan: Plan
    ) -> Plan | None:
        """The CMA-ES move (``cma_move.py``) over the parent's family, or None."""
        parent = ctx.parent
        if self.rng.random() < CMA_RATE:
            history = history_points(ctx, literals, skeleton)
            if len(history) >= CMA_POINTS and (
                moves := cma_move(literals, history, ctx.maximize, self.rng)
            ):
                plan.operator = "cma"
                plan.note = f"CMA-ES replayed over {len(history)} nodes of #{parent.id}'s family"
                plan.apply(moves)
                return plan
        return None

    def _probe(self, texts: list[str], literals: list[Literal]) -> dict[int, str]:
        """One int above 2 (a count or size) one up or down, in all its occurrences (a
        named one alone: see ``_int_groups``)."""
        pool = [ks for ks in _int_groups(texts, literals) if count_like(literals[ks[0]])]
        if not pool:
            return {}
        named = [ks for ks in pool if literals[ks[0]].named]
        if len(named) >= 2 and self.rng.random() < PAIR_RATE:  # two settings at once
            moves = {}
            for members in self.rng.sample(named, 2):
                new = str(int(literals[members[0]].value) + self.rng.choice((-1, 1)))
                moves.update({k: new for k in members})
            return moves
        members = self.rng.choice(pool)
        new = str(int(literals[members[0]].value) + self.rng.choice((-1, 1)))
        return {k: new for k in members}

    def _gain(self, parent: Node, maximize: bool) -> float:
        """How much the parent's moves gained over its base (0.0 when unknown or tiny)."""
        base = parent.metadata.get("base_score")
        if parent.score is None or not isinstance(base, int | float):
            return 0.0
        gain = direction.gain(parent.score, base, maximize)
        return gain if abs(gain) > 1e-9 * max(1.0, abs(base)) else 0.0

    def _mutate(
        self, texts: list[str], literals: list[Literal], int_scale: float = 1.0
    ) -> dict[int, str]:
        """Move 1-3 parameters: a float occurrence alone, an int value everywhere (mostly).

        Each float occurrence is its own parameter: six ``0.0`` are six constants that
        happen to start alike. An int written several times is mostly one count (``range(16)``
        and ``/ 16``), so ints are picked by value, or one occurrence would soak up the rest.
        """
        pool = _parameters(texts, literals)
        weights = [weight(literals[members[0]], int_scale) for members in pool]
        common = common_scale(texts, literals)
        count = draw(self.rng, COUNT_WEIGHTS)
        moves: dict[int, str] = {}
        for _ in range(min(count, len(pool))):
            i = self.rng.choices(range(len(pool)), weights=weights)[0]
            members = pool.pop(i)
            weights.pop(i)
            lit = literals[members[0]]
            new = perturb(lit, texts[members[0]], common, self.rng)
            tied = lit.is_int and self.rng.random() < INT_TIE_RATE
            for k in members if tied else [self.rng.choice(members)]:
                moves[k] = new
        return moves

    def _step(
        self,
        texts: list[str],
        literals: list[Literal],
        last: dict[int, tuple[str, str]],
        forward: bool,
    ) -> dict[int, str]:
        """Each of the ``last`` moves (old, new) again from ``new``, or mirrored around ``old``."""
        stretch = self.rng.uniform(*STRETCH)
        moves = {}
        for k, (old_text, new_text) in last.items():
            text = step_value(parse(old_text), parse(new_text), stretch, literals[k], forward)
            if text is not None and text != texts[k]:
                moves[k] = text
        return moves

    def _partner(self, parent: Node, skeleton: tuple, ctx: ResearchContext) -> tuple | None:
        """A same-skeleton context node to cross over with (a fitter one is likelier), or None."""
        partners = [
            (node, texts)
            for node, texts in same_skeleton(ctx.context, parent, skeleton)
            if node.code != parent.code
        ]
        fitter = [p for p in partners if _better(p[0].score, parent.score, ctx.maximize)]
        rate = FITTER_CROSSOVER_RATE if fitter else CROSSOVER_RATE
        if not partners or self.rng.random() >= rate:
            return None
        node, other = self.rng.choice(fitter or partners)
        return node, other, bool(fitter)

    def _crossover(
        self, texts: list[str], node: Node, other: list[str], fitter: bool
    ) -> dict[int, str]:
        differing = [k for k, text in enumerate(texts) if text != other[k]]
        if len(differing) < 2:  # taking the one difference would just copy the partner
            return {}
        bias = FITTER_BIAS if fitter else 0.5
        taken = [k for k in differing if self.rng.random() < bias] or [self.rng.choice(differing)]
        if len(taken) == len(differing):
            taken.remove(self.rng.choice(taken))
        return {k: other[k] for k in taken}


def _clamp(plan: Plan, literals: list[Literal]) -> None:
    """Every new value inside the range its setting states (``# in [0, 1]``), whatever
    move drew it; one clamped back onto the parent's value keeps the parent's text (``1.``
    rewritten ``1.0`` would be a new program that computes the same)."""
    moves = {}
    for k, text in enumerate(plan.final):
        lit = literals[k]
        if text != lit.text:
            new = clamp(lit, text)
            moves[k] = lit.text if parse(new) == lit.value else new
    plan.apply(moves)


def _diff(texts: list[str], literals: list[Literal]) -> dict[int, str]:
    return {k: t for k, t in enumerate(texts) if t != literals[k].text}


def _parameters(texts: list[str], literals: list[Literal]) -> list[list[int]]:
    """The literal indices that move as one: each float alone, each int value together."""
    floats = [[k] for k, lit in enumerate(literals) if not lit.is_int and not lit.fixed]
    return floats + _int_groups(texts, literals)


def _int_groups(texts: list[str], literals: list[Literal]) -> list[list[int]]:
    """The int occurrences that move as one, in order of first occurrence: all of one value
    (``range(16)`` and ``/ 16`` are one count), except that a named setting (``terms = 1``,
    ``stride = 1``: ``Literal.named``) is its own parameter, however many others share its
    value: its author gave it a name of its own."""
    found: dict[object, list[int]] = {}
    for k, lit in enumerate(literals):
        if lit.is_int and not lit.fixed:
            found.setdefault(("named", k) if lit.named else texts[k], []).append(k)
    return list(found.values())


def _int_scale(parent: Node, ctx: ResearchContext) -> float:
    """How much likelier discrete constants (counts, sizes) are to move from this parent.

    A structural change is judged fairly only against tuned floats, so it is tried mostly
    from a node that is the fittest of its context (STRUCT_BOOST times likelier there).
    """
    return STRUCT_BOOST if _fittest(parent, ctx) else 1.0


def _fittest(parent: Node, ctx: ResearchContext) -> bool:
    """Whether no done context node beats the parent."""
    return not any(
        _better(n.score, parent.score, ctx.maximize) for n in ctx.context if n.status == DONE
    )


def _better(a: float | None, b: float | None, maximize: bool) -> bool:
    if a is None or b is None:
        return False
    return direction.better(a, b, maximize)
