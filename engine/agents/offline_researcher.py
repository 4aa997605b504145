"""The built-in Researcher used when no LLM is configured: a numeric-literal mutator.

Without a model the only safe way to change a program is to leave its structure alone
and move its constants. Literals are found with ``tokenize`` (numbers inside strings,
docstrings and comments are never touched) and replaced in place, keeping the rest of
the source byte-identical.

Operators: *mutate* moves 1-3 constants (floats by a log-normal relative step with a
heavy tail or an additive step relative to their size; ints, often sizes or indices,
rarely and by a little); *crossover* takes each differing literal from the parent or a
same-skeleton context node, leaning to the fitter one; *step* repeats the parent's own
move when it paid off.

UCB1 with its usual exploration constant builds on nearly every fresh node, good or
bad, so the operator carries its own hill climbing: each proposal records its *base*
(the node its moves are measured from) and the moves. A child of a node that came out
worse than its base undoes those moves before trying something else (often the mirror
image), so a lineage behaves like a (1+1) evolution strategy whatever node it gets.

Signs are preserved: a NUMBER token carries no sign, and writing ``-x`` in its place
could change how the expression parses (``-x ** 2``).
"""

from __future__ import annotations

import io
import math
import random
import re
import tokenize
from dataclasses import dataclass
from typing import Any

from engine.agents.base import AgentError, Proposal, ResearchContext
from engine.agents.evolve_block import MarkerError, layout
from engine.records import DONE, Node

INT_WEIGHT = 0.08  # an int constant is this many times as likely to be picked as a float
TIE_RATE = 0.5  # chance that equal float literals (likely one constant) move together
COUNT_WEIGHTS = {1: 0.6, 2: 0.3, 3: 0.1}  # how many constants one mutation moves
SIGMA, WIDE_SIGMA, ADD_SCALE = 0.25, 0.8, 0.3  # log-space, log-space, relative additive
P_SMALL, P_WIDE = 0.6, 0.15  # chances of the small and the wide multiplicative step
STEP_RATE = 0.5  # after a gain: chance to repeat the move
MIRROR_RATE = 0.5  # after undoing: chance to try the opposite move (else a fresh mutation)
CROSSOVER_RATE, FITTER_CROSSOVER_RATE = 0.15, 0.35  # the latter when a partner is fitter
FITTER_BIAS = 0.7  # chance to take a differing literal from the fitter node
STRETCH = (0.5, 1.5)  # a repeated or mirrored move is this many times the last one
DIGITS = 4  # significant digits of a new float literal
_SKIP = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.ENDMARKER}


@dataclass
class Literal:
    """One NUMBER token: where it sits in the source (character offsets) and its value."""

    start: int
    end: int
    line: int
    text: str
    value: float
    is_int: bool


def find_literals(code: str) -> tuple[list[Literal], tuple]:
    """The real numeric literals of ``code`` and its skeleton (tokens, numbers masked).

    Two programs with the same skeleton differ only in their constants. In a program
    with EVOLVE-BLOCK markers only literals inside the blocks count; the others are
    frozen and stay part of the skeleton.
    """
    try:
        regions = layout(code)
    except MarkerError as exc:
        raise AgentError(f"the parent program's EVOLVE-BLOCK markers are broken: {exc}") from None
    line_starts = [0] + [m.end() for m in re.finditer("\n", code)]
    literals: list[Literal] = []
    skeleton: list[tuple[int, str]] = []
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, SyntaxError) as exc:
        raise AgentError(f"cannot tokenize the parent program: {exc}") from None
    for tok in tokens:
        if tok.type in _SKIP:
            continue
        if tok.type != tokenize.NUMBER or (regions and not regions.editable(tok.start[0])):
            skeleton.append((tok.type, "" if tok.type == tokenize.INDENT else tok.string))
            continue
        skeleton.append((tok.type, "#"))
        value = _parse(tok.string)
        if value is not None:
            (row, col), (end_row, end_col) = tok.start, tok.end
            start, end = line_starts[row - 1] + col, line_starts[end_row - 1] + end_col
            literals.append(Literal(start, end, row, tok.string, value, _is_int(tok.string)))
    return literals, tuple(skeleton)


def replace_literals(code: str, literals: list[Literal], new_texts: dict[int, str]) -> str:
    """``code`` with literal ``k`` replaced by ``new_texts[k]``; all else untouched."""
    out, pos = [], 0
    for k in sorted(new_texts, key=lambda k: literals[k].start):
        out += [code[pos : literals[k].start], new_texts[k]]
        pos = literals[k].end
    return "".join(out) + code[pos:]


def format_float(value: float, digits: int = DIGITS) -> str:
    """A short literal that reads back as a float (``0.3``, ``1e-05``; never ``3``)."""
    text = f"{value:.{digits}g}"
    return text if any(c in text for c in ".en") else text + ".0"


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
        changes = _changes(literals, new_texts, [lit.text for lit in literals])
        moved = {k: t for k, t in enumerate(self.final) if t != self.base[k]}
        first = changes[0]
        slug = f"{self.operator}-l{first['line']}-{re.sub(r'[^0-9a-zA-Z]+', '_', first['new'])}"
        if len(changes) > 1:
            slug += f"-plus{len(changes) - 1}"
        note = self.note or f"Mutated #{parent.id}"
        return Proposal(
            code=replace_literals(parent.code, literals, new_texts),
            name=slug[:48],
            motivation=f"{note}: {_describe(changes)}.",
            metadata={
                "operator": self.operator,
                "changes": changes,
                "source_ids": self.sources,
                # Lineage bookkeeping read by this node's children (see the module doc).
                "base_id": self.base_id,
                "base_score": self.base_score,
                "moves": _changes(literals, moved, self.base),
            },
        )


class OfflineResearcher:
    """Mutates, steps or recombines the numeric literals of the parent program."""

    label = "offline"

    def __init__(self, seed: int | None = None) -> None:
        self.rng = random.Random(seed)

    async def propose(self, ctx: ResearchContext) -> Proposal:
        parent = ctx.parent
        literals, skeleton = find_literals(parent.code)
        if not literals:
            raise AgentError(f"parent #{parent.id} has no numeric literal to change")
        plan = self._plan(ctx, literals, skeleton)
        if plan.final == [lit.text for lit in literals]:  # e.g. a mirror back onto the parent
            plan = Plan(plan.final, list(plan.final), parent.id, parent.score, [parent.id])
            plan.apply(self._mutate(plan.final, literals))
        return plan.proposal(parent, literals)

    def _plan(self, ctx: ResearchContext, literals: list[Literal], skeleton: tuple) -> Plan:
        """Choose the operator; the plan's ``final`` holds the new literal texts."""
        parent = ctx.parent
        plan = Plan([lit.text for lit in literals], [], parent.id, parent.score, [parent.id])
        gain = self._gain(parent, ctx.maximize)
        last = _locate(literals, parent.metadata.get("moves"))
        moves: dict[int, str] = {}
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
        plan.apply(moves or self._mutate(plan.base, literals))
        return plan

    def _gain(self, parent: Node, maximize: bool) -> float:
        """How much the parent's moves gained over its base (0.0 when unknown or tiny)."""
        base = parent.metadata.get("base_score")
        if parent.score is None or not isinstance(base, int | float):
            return 0.0
        gain = parent.score - base if maximize else base - parent.score
        return gain if abs(gain) > 1e-9 * max(1.0, abs(base)) else 0.0

    def _mutate(self, texts: list[str], literals: list[Literal]) -> dict[int, str]:
        # A constant written several times is one parameter: pick distinct values, not
        # occurrences, or a value repeated six times would soak up most mutations.
        groups: dict[str, list[int]] = {}
        for k, text in enumerate(texts):
            groups.setdefault(text, []).append(k)
        pool = list(groups)
        weights = [INT_WEIGHT if literals[groups[t][0]].is_int else 1.0 for t in pool]
        count = self.rng.choices(list(COUNT_WEIGHTS), weights=list(COUNT_WEIGHTS.values()))[0]
        moves: dict[int, str] = {}
        for _ in range(min(count, len(pool))):
            i = self.rng.choices(range(len(pool)), weights=weights)[0]
            text, members = pool[i], groups[pool.pop(i)]
            weights.pop(i)
            new = self._perturb(text, literals[members[0]].is_int)
            tied = not literals[members[0]].is_int and self.rng.random() < TIE_RATE
            for k in members if tied else [self.rng.choice(members)]:
                moves[k] = new
        return moves

    def _perturb(self, text: str, is_int: bool) -> str:
        """A new literal text: different from ``text``, same sign."""
        value = _parse(text) or 0.0
        for _ in range(20):
            new = self._perturb_int(value) if is_int else self._perturb_float(value)
            if new != text:
                return new
        return str(int(value) + 1) if is_int else format_float(value * 1.5 + 0.1)

    def _perturb_int(self, value: float) -> str:
        step = self.rng.choice((1, 1, 1, 2, 3)) * self.rng.choice((-1, 1))
        return str(max(0, int(value) + step))

    def _perturb_float(self, value: float) -> str:
        roll = self.rng.random()
        if value != 0 and roll < P_SMALL:  # the common case: a moderate relative step
            new = value * math.exp(self.rng.gauss(0.0, SIGMA))
        elif value != 0 and roll < P_SMALL + P_WIDE:  # heavy tail: jump across magnitudes
            new = value * math.exp(self.rng.gauss(0.0, WIDE_SIGMA))
        else:  # additive, relative to the literal's own size (moves zeros too)
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
                _parse(old_text), _parse(new_text), stretch, literals[k].is_int, forward
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


def _locate(literals: list[Literal], moves: Any) -> dict[int, tuple[str, str]]:
    """Literal index -> (old, new) for recorded moves that still match the parent's code."""
    found: dict[int, tuple[str, str]] = {}
    for move in moves if isinstance(moves, list) else []:
        for k, lit in enumerate(literals):
            if k not in found and lit.line == move.get("line") and lit.text == move.get("new"):
                found[k] = (str(move.get("old")), lit.text)
                break
    return found


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


def _better(a: float | None, b: float | None, maximize: bool) -> bool:
    if a is None or b is None:
        return False
    return a > b if maximize else a < b


def _parse(text: str) -> float | None:
    if not text or text[-1] in "jJ":
        return None
    try:
        value = float(int(text, 0)) if _is_int(text) else float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _is_int(text: str) -> bool:
    lowered = text.lower()
    return lowered.startswith(("0x", "0o", "0b")) or not any(c in lowered for c in ".ej")


def _changes(
    literals: list[Literal], new_texts: dict[int, str], old_texts: list[str]
) -> list[dict[str, Any]]:
    return [
        {"line": literals[k].line, "old": old_texts[k], "new": new_texts[k]}
        for k in sorted(new_texts)
    ]


def _describe(changes: list[dict[str, Any]]) -> str:
    return "; ".join(f"line {c['line']} `{c['old']}` -> `{c['new']}`" for c in changes)
