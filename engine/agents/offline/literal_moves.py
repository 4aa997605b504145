"""How one parameter of the offline Researcher moves: which one, and by how much.

The Researcher (``offline_researcher.py``) decides *what* to do with a parent: repeat, undo,
recombine, probe or mutate. This module holds the steps themselves, so that their sizes sit
next to one another and the reasons for them:

* *which*: 0, 1 and 2 are indices, exponents and complements far more often than tunable
  constants (the reason magic-number lints ignore them), unless written as a named setting
  (``terms = 1``, ``Literal.named``); other ints are counts and sizes;
  floats below ``TINY`` are tolerances whose exact value rarely matters (``weight``);
* *how far*: floats take a log-normal relative step, sometimes a heavy-tailed jump or an
  additive step sized on the literal and on the program's common scale (``common_scale``,
  the median float magnitude), so a constant far smaller than its siblings (a margin of
  0.01 among coordinates near 0.5) reaches their range in a few steps instead of creeping
  up by 30 % at a time; ints step by +-1, rarely +-2 or +-3 (``perturb``);
* a repeated or mirrored move (``step_value``) is geometric for same-sign floats, so a
  sign never flips, and linear otherwise.

Every draw comes from the generator passed in: the Researcher seeds it per (seed, step).
"""

from __future__ import annotations

import math
import random
import statistics

from engine.agents.offline.literals import Literal, format_float, parse

# How likely a parameter is to be picked, relative to an ordinary float (see the doc).
INT_WEIGHT, SMALL_INT_WEIGHT, TINY_WEIGHT, TINY = 0.08, 0.02, 0.2, 1e-6
INT_STEPS = {1: 0.7, 2: 0.2, 3: 0.1}  # size of an int move
SIGMA, WIDE_SIGMA, ADD_SCALE = 0.25, 0.8, 0.3  # log-space, log-space, relative additive
COMMON_SHARE = 0.3  # an additive step is at least this share of the program's common scale
P_SMALL, P_WIDE = 0.6, 0.15  # chances of the small and of the wide multiplicative step
P_FLIP = 0.05  # chance that a signed non-zero float flips its sign (else the moves above)
ZERO_RANGE = (-3.0, 2.5)  # log10 range of the additive step that takes a 0.0 away from zero
JUMP, P_JUMP = (1.0, 2.0), 0.2  # log10 widening of a heavy-tailed additive step, its chance


def draw(rng: random.Random, weights: dict[int, float]) -> int:
    """One key of ``weights``, drawn with the given weights."""
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def perturb(literal: Literal, text: str, common: float, rng: random.Random) -> str:
    """A new text for ``literal`` (now written ``text``): different from it.

    ``common`` is the program's common scale (see ``common_scale``). The sign may change
    only where ``literal.signed`` allows it and, for ints, only from a negative value. A
    stated range is applied afterwards (``clamp``, by the Researcher): drawing again here
    until a draw stays inside was measured worse on the series_fit task (ints at their lower
    bound then moved up more often: median -0.084 -> -0.157 on seeds 0-19, -0.076 -> -0.204
    on 20-39, -0.161 -> -0.105 on 40-79).
    """
    value = parse(text) or 0.0
    for _ in range(20):
        if literal.is_int:
            new = _perturb_int(value, rng)
        else:
            new = _perturb_float(value, common, rng, literal.signed)
        if new != text:
            return new
    return str(int(value) + 1) if literal.is_int else format_float(value * 1.5 + 0.1)


def _perturb_int(value: float, rng: random.Random) -> str:
    step = draw(rng, INT_STEPS) * rng.choice((-1, 1))
    new = int(value) + step
    return str(new if value < 0 else max(0, new))


def _perturb_float(value: float, common: float, rng: random.Random, signed: bool) -> str:
    roll = rng.random()
    if value != 0 and signed and rng.random() < P_FLIP:
        new = -value
    elif value != 0 and roll < P_SMALL:  # the common case: a moderate relative step
        new = value * math.exp(rng.gauss(0.0, SIGMA))
    elif value != 0 and roll < P_SMALL + P_WIDE:  # heavy tail: jump across magnitudes
        new = value * math.exp(rng.gauss(0.0, WIDE_SIGMA))
    elif 0 < abs(value) < TINY:  # a tolerance keeps its own magnitude and sign
        new = math.copysign(abs(value + rng.gauss(0.0, ADD_SCALE * abs(value))), value)
    else:  # additive: on the literal's own size or the program's scale; may cross zero
        if value == 0:
            scale = 10 ** rng.uniform(*ZERO_RANGE) / ADD_SCALE
        else:
            scale = max(abs(value), COMMON_SHARE * common)
        if rng.random() < P_JUMP:
            scale *= 10 ** rng.uniform(*JUMP)
        new = value + rng.gauss(0.0, ADD_SCALE * scale)
        if not signed and value != 0:
            new = math.copysign(abs(new), value)
        elif not signed:
            new = abs(new)
    return format_float(new if math.isfinite(new) else value)


def weight(literal: Literal, int_scale: float = 1.0) -> float:
    """How likely ``literal``'s value is to be picked as the parameter to move."""
    value = abs(literal.value)
    if literal.is_int:
        return (INT_WEIGHT if value > 2 or literal.named else SMALL_INT_WEIGHT) * int_scale
    return TINY_WEIGHT if 0 < value < TINY else 1.0


def count_like(literal: Literal) -> bool:
    """An int above 2, or a named positive one: a count or a size (a bare 0, 1 or 2 is more
    often an index, an exponent or a complement)."""
    return literal.is_int and (literal.value > 2 or (literal.named and literal.value > 0))


def common_scale(texts: list[str], literals: list[Literal]) -> float:
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


def step_value(
    old: float | None,
    new: float | None,
    stretch: float,
    literal: Literal,
    forward: bool,
) -> str | None:
    """One more step ``old -> new`` from ``new`` (forward) or from ``old`` the other way.

    Geometric for same-sign floats, linear otherwise; the result keeps ``new``'s sign
    unless ``literal`` may change sign (``Literal.signed``; ints: only negative ones).
    """
    if old is None or new is None:
        return None
    try:
        if literal.is_int or old * new <= 0:
            value = new + (new - old) * stretch if forward else old - (new - old) * stretch
            if literal.is_int:
                return str(round(value) if min(old, new) < 0 else max(0, round(value)))
            if not literal.signed:
                value = math.copysign(value, new or old)
        else:
            value = new * (new / old) ** stretch if forward else old * (old / new) ** stretch
    except (OverflowError, ZeroDivisionError):
        return None
    return format_float(value) if math.isfinite(value) else None


def clamp(literal: Literal, text: str) -> str:
    """``text`` moved into the range its setting states (``Literal.low``, ``high``), or as is.

    A value past a bound lands on it (the bounds are included), as box-constrained
    optimisers repair a draw: a constant's best value often sits on the edge of its range.
    """
    value = parse(text)
    low, high = literal.low, literal.high
    if value is None or low <= value <= high:
        return text
    bound = low if value < low else high  # finite: the value lies past it
    if not math.isfinite(bound):  # a range of one infinite value: nothing to write
        return text
    if literal.is_int:
        new = math.ceil(bound) if bound == low else math.floor(bound)
        return str(new) if low <= new <= high else text  # no int in the range: leave it
    new_text = format_float(bound)
    return new_text if low <= float(new_text) <= high else repr(float(bound))  # not rounded out
