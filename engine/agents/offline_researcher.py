"""The built-in Researcher used when no LLM is configured: an evolution strategy on literals.

Without a model the only safe way to change a program is to leave its structure alone and
move its constants (``engine.agents.literals`` finds and replaces them). The moves are the
ones a plain evolution strategy has, with nothing specific to any task:

* *mutate* moves 1-3 parameters. A parameter is a distinct literal value: a constant
  written several times (a count in ``range(16)`` and ``/ 16``, a repeated scale) often
  moves as one, all occurrences together, else one occurrence alone. Floats take a
  log-normal relative step, sometimes a heavy-tailed jump or an additive step; ints step by
  ±1 (rarely ±2, ±3). Ints are picked less often than floats, 0, 1 and 2 hardly ever (see
  ``_weight``), and more often from a parent that is the fittest of its context. The
  additive step is sized on the program's own scale (the median of its float constants)
  as well as on the literal's, so a constant far smaller than its siblings (a margin of
  0.01 among coordinates near 0.5) can reach their range in a few steps instead of
  creeping up by 30 % at a time.
* *model* draws the floats from a Gaussian fitted to the run's fittest same-skeleton nodes
  (``engine.agents.elite_model``): fine steps when they agree, wide ones when they do not.
* *probe* tries a structural neighbour of a node that is the fittest of its context: one
  count or size (an int above 2) one up or down, everywhere it is written, nothing else.
  Random mutations rarely make exactly that move from exactly that node, and it is often
  the one that unlocks a better layout.
* *step* repeats the parent's own move, stretched, when it paid off.
* *undo* reverts a move that lost against its base, often trying the mirror image.
* *crossover* takes each differing literal from the parent or a same-skeleton context
  node, leaning to the fitter one.

Lineage bookkeeping lives in each proposal's metadata: its *base* (the node its moves are
measured from) and the moves. A child of a node that came out worse than its base undoes
those moves first, so whatever node the sampler hands over, a lineage behaves like a (1+1)
evolution strategy. (A per-lineage step size was tried and dropped: only nodes that gained
are built on, so the shrinking after failures never reaches a child; it measured no better.)

Reproducibility: the random draws of a proposal come from a generator seeded by (seed,
step, attempt), so a step's proposal depends only on what the step sees, never on how
many proposals other workers made before it.
"""

from __future__ import annotations

import math
import random
import re
import statistics
from dataclasses import dataclass
from typing import Any

from engine.agents.base import AgentError, Proposal, ResearchContext
from engine.agents.elite_model import model_move
from engine.agents.literals import (
    Literal,
    changes,
    describe,
    find_literals,
    format_float,
    groups,
    locate,
    parse,
    replace_literals,
)
from engine.records import DONE, Node

__all__ = ["OfflineResearcher", "find_literals", "format_float"]

# How likely a parameter is to be picked, relative to an ordinary float. 0, 1 and 2 are
# indices, exponents and complements far more often than tunable constants (the reason
# magic-number lints ignore them); other ints are counts and sizes; floats below TINY are
# tolerances whose exact value rarely matters.
INT_WEIGHT, SMALL_INT_WEIGHT, TINY_WEIGHT, TINY = 0.08, 0.02, 0.2, 1e-6
STRUCT_BOOST = 4.0  # int weights times this when the parent is the fittest of its context
TIE_RATE, INT_TIE_RATE = 0.5, 0.8  # chance that all occurrences of a value move together
COUNT_WEIGHTS = {1: 0.6, 2: 0.3, 3: 0.1}  # how many parameters one mutation moves
INT_STEPS = {1: 0.7, 2: 0.2, 3: 0.1}  # size of an int move
SIGMA, WIDE_SIGMA, ADD_SCALE = 0.25, 0.8, 0.3  # log-space, log-space, relative additive
COMMON_SHARE = 0.3  # an additive step is at least this share of the program's common scale
P_SMALL, P_WIDE = 0.6, 0.15  # chances of the small and of the wide multiplicative step
STEP_RATE = 0.5  # after a gain: chance to repeat the move
MIRROR_RATE = 0.5  # after undoing: chance to try the opposite move (else a fresh mutation)
CROSSOVER_RATE, FITTER_CROSSOVER_RATE = 0.15, 0.35  # the latter when a partner is fitter
FITTER_BIAS = 0.7  # chance to take a differing literal from the fitter node
STRETCH = (0.5, 1.5)  # a repeated or mirrored move is this many times the last one
PROBE_RATE = 0.2  # chance of a structural probe from a parent fittest of its context
MODEL_RATE, MODEL_POINTS, MODEL_SCALE = 0.3, 4, 2.0  # model move: chance, least points, scale
ELITE_SIZE = 10  # fittest nodes the sampler hands over for the model move


@dataclass
class Plan:
    """A proposal in the making: literal texts of its base and of the result."""

    base: list[str]  # the literals its moves are measured from (the parent's, or undone)
    final: list[str]
    base_id: Any
    base_score: float | None
    sources: list[Any]
    operator: str = "mutate"
    note: str = ""

    def apply(self, moves: dict[int, str]) -> None:
        for k, text in moves.items():
            self.final[k] = text

    def proposal(self, parent: Node, literals: list[Literal]) -> Proposal:
        new_texts = {k: t for k, t in enumerate(self.final) if t != literals[k].text}
        records = changes(literals, new_texts, [lit.text for lit in literals])
        moved = {k: t for k, t in enumerate(self.final) if t != self.base[k]}
        first = records[0]
        slug = f"{self.operator}-l{first['line']}-{re.sub(r'[^0-9a-zA-Z]+', '_', first['new'])}"
        if len(records) > 1:
            slug += f"-plus{len(records) - 1}"
        note = self.note or f"Mutated #{parent.id}"
        return Proposal(
            code=replace_literals(parent.code, literals, new_texts),
            name=slug[:48],
            motivation=f"{note}: {describe(records)}.",
            metadata={
                "operator": self.operator,
                "changes": records,
                "source_ids": self.sources,
                # Lineage bookkeeping read by this node's children (see the module doc).
                "base_id": self.base_id,
                "base_score": self.base_score,
                "moves": changes(literals, moved, self.base),
            },
        )


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
        plan = self._plan(ctx, literals, skeleton)
        if plan.final == [lit.text for lit in literals]:  # e.g. a mirror back onto the parent
            plan = Plan(plan.final, list(plan.final), parent.id, parent.score, [parent.id])
            plan.apply(self._mutate(plan.final, literals, _int_scale(parent, ctx)))
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
        probe = gain >= 0 and _fittest(parent, ctx) and self.rng.random() < PROBE_RATE
        if probe and (moves := self._probe(plan.base, literals)):
            plan.operator, plan.note = "probe", f"Probing a structural neighbour of #{parent.id}"
            plan.apply(moves)
            return plan
        if self.rng.random() < MODEL_RATE:
            points = self._same_skeleton(ctx, literals, skeleton)
            if len(points) >= MODEL_POINTS and (
                moves := model_move(literals, points, ctx.maximize, self.rng, MODEL_SCALE)
            ):
                plan.operator = "model"
                plan.note = f"Drew #{parent.id}'s constants from {len(points)} fit nodes' spread"
                plan.apply(moves)
                return plan
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

    def _probe(self, texts: list[str], literals: list[Literal]) -> dict[int, str]:
        """One int above 2 (a count or size) one up or down, in all its occurrences."""
        by_value = groups(texts)
        pool = [t for t, ks in by_value.items() if _count_like(literals[ks[0]])]
        if not pool:
            return {}
        text = self.rng.choice(pool)
        new = str(int(literals[by_value[text][0]].value) + self.rng.choice((-1, 1)))
        return {k: new for k in by_value[text]}

    def _same_skeleton(
        self, ctx: ResearchContext, literals: list[Literal], skeleton: tuple
    ) -> list[tuple[float, list[str]]]:
        """(score, literal texts) of the parent and the elite nodes that share its skeleton."""
        parent = ctx.parent
        points = [(parent.score, [lit.text for lit in literals])]
        for node in ctx.elite:
            if node.id == parent.id or node.status != DONE or node.score is None:
                continue
            try:
                other, other_skeleton = find_literals(node.code)
            except AgentError:
                continue
            if other_skeleton == skeleton:
                points.append((node.score, [lit.text for lit in other]))
        return points

    def _gain(self, parent: Node, maximize: bool) -> float:
        """How much the parent's moves gained over its base (0.0 when unknown or tiny)."""
        base = parent.metadata.get("base_score")
        if parent.score is None or not isinstance(base, int | float):
            return 0.0
        gain = parent.score - base if maximize else base - parent.score
        return gain if abs(gain) > 1e-9 * max(1.0, abs(base)) else 0.0

    def _mutate(
        self, texts: list[str], literals: list[Literal], int_scale: float = 1.0
    ) -> dict[int, str]:
        # Pick distinct values, not occurrences, or a value repeated six times would soak
        # up most mutations.
        by_value = groups(texts)
        common = _common_scale(texts, literals)
        pool = list(by_value)
        weights = [_weight(literals[by_value[t][0]], int_scale) for t in pool]
        count = self._draw(COUNT_WEIGHTS)
        moves: dict[int, str] = {}
        for _ in range(min(count, len(pool))):
            i = self.rng.choices(range(len(pool)), weights=weights)[0]
            text, members = pool[i], by_value[pool.pop(i)]
            weights.pop(i)
            is_int = literals[members[0]].is_int
            new = self._perturb(text, is_int, common)
            tied = self.rng.random() < (INT_TIE_RATE if is_int else TIE_RATE)
            for k in members if tied else [self.rng.choice(members)]:
                moves[k] = new
        return moves

    def _draw(self, weights: dict[int, float]) -> int:
        return self.rng.choices(list(weights), weights=list(weights.values()))[0]

    def _perturb(self, text: str, is_int: bool, common: float) -> str:
        """A new literal text: different from ``text``, same sign.

        ``common`` is the program's common scale (see ``_common_scale``).
        """
        value = parse(text) or 0.0
        for _ in range(20):
            new = self._perturb_int(value) if is_int else self._perturb_float(value, common)
            if new != text:
                return new
        return str(int(value) + 1) if is_int else format_float(value * 1.5 + 0.1)

    def _perturb_int(self, value: float) -> str:
        step = self._draw(INT_STEPS) * self.rng.choice((-1, 1))
        return str(max(0, int(value) + step))

    def _perturb_float(self, value: float, common: float) -> str:
        roll = self.rng.random()
        if value != 0 and roll < P_SMALL:  # the common case: a moderate relative step
            new = value * math.exp(self.rng.gauss(0.0, SIGMA))
        elif value != 0 and roll < P_SMALL + P_WIDE:  # heavy tail: jump across magnitudes
            new = value * math.exp(self.rng.gauss(0.0, WIDE_SIGMA))
        else:  # additive: on the literal's own size or the program's scale (moves zeros too)
            if abs(value) >= TINY:
                scale = max(abs(value), COMMON_SHARE * common)
            else:  # a tolerance (or zero) keeps its own magnitude
                scale = abs(value) if value != 0 else 0.1
            new = math.copysign(abs(value + self.rng.gauss(0.0, ADD_SCALE * scale)), value)
        return format_float(new if math.isfinite(new) else value)

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
            text = _step_value(
                parse(old_text), parse(new_text), stretch, literals[k].is_int, forward
            )
            if text is not None and text != texts[k]:
                moves[k] = text
        return moves

    def _partner(self, parent: Node, skeleton: tuple, ctx: ResearchContext) -> tuple | None:
        """A same-skeleton context node to cross over with (a fitter one is likelier), or None."""
        partners = []
        for node in ctx.context:
            if node.id == parent.id or node.status != DONE or node.code == parent.code:
                continue
            try:
                other, other_skeleton = find_literals(node.code)
            except AgentError:
                continue
            if other_skeleton == skeleton:
                partners.append((node, [lit.text for lit in other]))
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


def _weight(literal: Literal, int_scale: float = 1.0) -> float:
    """How likely ``literal``'s value is to be picked as the parameter to move."""
    value = abs(literal.value)
    if literal.is_int:
        return (SMALL_INT_WEIGHT if value <= 2 else INT_WEIGHT) * int_scale
    return TINY_WEIGHT if 0 < value < TINY else 1.0


def _count_like(literal: Literal) -> bool:
    """An int above 2: a count or a size (0, 1 and 2 are indices, exponents, complements)."""
    return literal.is_int and literal.value > 2


def _common_scale(texts: list[str], literals: list[Literal]) -> float:
    """The median magnitude of the program's float constants (tolerances left out), or 0.

    Constants of one program often share a unit (coordinates in a unit square, rates of
    one optimiser), so this says how big an additive step on any of them may sensibly be.
    """
    values = [
        abs(value)
        for text, lit in zip(texts, literals, strict=True)
        if not lit.is_int and (value := parse(text)) is not None and abs(value) >= TINY
    ]
    return statistics.median(values) if values else 0.0


def _step_value(
    old: float | None, new: float | None, stretch: float, is_int: bool, forward: bool
) -> str | None:
    """One more step ``old -> new`` from ``new`` (forward) or from ``old`` the other way.

    Geometric for same-sign floats (so the sign is kept), linear otherwise.
    """
    if old is None or new is None:
        return None
    try:
        if is_int or old * new <= 0:
            value = new + (new - old) * stretch if forward else old - (new - old) * stretch
            if is_int:
                return str(max(0, round(value)))
            value = math.copysign(value, new or old)
        else:
            value = new * (new / old) ** stretch if forward else old * (old / new) ** stretch
    except (OverflowError, ZeroDivisionError):
        return None
    return format_float(value) if math.isfinite(value) else None


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
    return a > b if maximize else a < b
