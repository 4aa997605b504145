"""The offline Researcher's start-up move (``engine/agents/offline/startup.py``)."""

from __future__ import annotations

import asyncio
import random

from engine.agents.base import ResearchContext
from engine.agents.offline.literals import find_literals
from engine.agents.offline.researcher import OfflineResearcher
from engine.agents.offline.startup import SIGMA, STEPS, startup_move
from engine.store.records import DONE, Node

BOXED = (
    "a = 0.5  # in [0, 1]\n"
    "b = -2.0  # in [-10, 10]\n"
    "c = 1.0  # in [1, 1]\n"  # fixed: no parameter
    "n = 7  # in [3, 20]\n"  # an int: structure, left alone
    "tol = 1e-09\n"  # a tolerance needs no range
    "x = a * b + n + tol\n"
)


def propose(code: str, step: int, seed: int = 0):
    parent = Node(step=0, code=code, id=1, score=1.0, status=DONE)
    ctx = ResearchContext("t", "d", parent, [parent], [], step=step, node_id=step + 1)
    return asyncio.run(OfflineResearcher(seed=seed).propose(ctx))


def test_every_bounded_float_moves_at_once_on_its_ranges_scale() -> None:
    literals, _ = find_literals(BOXED)
    rng = random.Random(0)
    draws = [startup_move(literals, 1, rng) for _ in range(2000)]
    assert all(set(d) <= {0, 1} for d in draws)  # a and b; never c, n or tol
    draws = [d for d in draws if len(d) == 2]  # a draw rounded onto the parent is none
    assert len(draws) > 1990
    a = [float(d[0]) for d in draws]
    b = [float(d[1]) for d in draws]
    assert min(a) >= 0 and max(a) <= 1 and min(b) >= -10 and max(b) <= 10
    inside = [v for v in b if -10 < v < 10]
    spread = (sum((v + 2.0) ** 2 for v in inside) / len(inside)) ** 0.5
    assert 0.8 * SIGMA * 20 < spread < 1.2 * SIGMA * 20  # a step of 1/6 of the width
    assert sum(v == -10 for v in b) > 5  # draws past a bound land on it (0.8 %)


def test_the_move_needs_a_range_for_every_float_and_ends_after_the_start_up() -> None:
    literals, _ = find_literals(BOXED)
    assert startup_move(literals, STEPS, random.Random(0))
    assert not startup_move(literals, STEPS + 1, random.Random(0))
    free, _ = find_literals(BOXED + "d = 0.3\n")  # one float without a range
    assert not startup_move(free, 1, random.Random(0))
    half, _ = find_literals("a = 0.5  # in [0, inf]\n")
    assert not startup_move(half, 1, random.Random(0))


def test_a_start_up_proposal_starts_a_lineage_of_its_own() -> None:
    first = propose(BOXED, 1)
    assert first.metadata["operator"] == "startup"
    assert first.metadata["base_score"] is None and first.metadata["moves"] == []
    values = [lit.value for lit in find_literals(first.code)[0]]
    assert values[2:] == [1.0, 7, 1e-09] and values[:2] != [0.5, -2.0]
    later = {propose(BOXED, STEPS + 1, seed).metadata["operator"] for seed in range(20)}
    assert "startup" not in later
    # Without a range on every float the run starts with the ordinary moves.
    assert propose(BOXED + "d = 0.3\n", 1).metadata["operator"] != "startup"


def test_a_draw_clamped_onto_the_parent_is_no_move() -> None:
    """``x = 1.  # in [0, 1]``: half the draws land back on 1 (written 1.0); such a draw
    is dropped, and a start-up with nothing left falls through to the other moves instead
    of proposing the parent again."""
    literals, _ = find_literals("x = 1.  # in [0, 1]\n")
    rng = random.Random(0)
    draws = [startup_move(literals, 1, rng) for _ in range(200)]
    assert {} in draws and all(float(d[0]) < 1 for d in draws if d)
    for seed in range(40):
        assert propose("x = 1.  # in [0, 1]\n", 1, seed).code != "x = 1.  # in [0, 1]\n"
