"""The offline Researcher's model move (engine/agents/offline/elite_model.py)."""

from __future__ import annotations

import math
import random
import statistics

from engine.agents.offline.elite_model import model_move
from engine.agents.offline.literals import find_literals

PROGRAM = "A = 0.5\nB = 0.3\nN = 16\nTOL = 1e-9\nS = 0.2\nC = 0.7\n"


def texts(a: float, b: float, n: int = 16, tol: float = 1e-9, s: float = 0.2) -> list[str]:
    return [repr(a), repr(b), str(n), repr(tol), repr(s), "0.7"]


def test_only_floats_that_vary_move_and_a_mixed_sign_one_may_cross_zero() -> None:
    literals, _ = find_literals(PROGRAM)
    points = [
        (2.0, texts(0.5, 0.3)),
        (1.9, texts(0.52, 0.31, n=17, tol=1e-10, s=-0.2)),  # S changes sign: linear space
        (1.8, texts(0.47, 0.29, n=15, tol=2e-9)),
    ]
    signs = set()
    for seed in range(50):
        moves = model_move(literals, points, True, random.Random(seed), 2.0)
        # A, B and S move; N (an int), TOL (a tolerance) and C (equal) do not.
        assert set(moves) <= {0, 1, 4} and moves
        for k, text in moves.items():
            assert "." in text or "e" in text  # still a float literal
            assert k == 4 or float(text) > 0  # A and B agree on a sign: log space keeps it
        signs |= {math.copysign(1.0, float(moves[4]))} if 4 in moves else set()
    assert signs == {-1.0, 1.0}


def test_steps_follow_the_spread_of_the_elite() -> None:
    """Draws are centred on the parent and scale with how far apart the fit nodes are."""
    literals, _ = find_literals(PROGRAM)

    def spread(width: float) -> float:
        points = [(3.0 - i, texts(0.5 * (1 + width * d), 0.3)) for i, d in enumerate((0, 1, -1))]
        rng = random.Random(1)
        draws = [model_move(literals, points, True, rng, 1.0) for _ in range(400)]
        logs = [math.log(float(d[0]) / 0.5) for d in draws if 0 in d]  # 4 digits may round back
        assert len(logs) > 380
        assert abs(statistics.mean(logs)) < 4 * statistics.stdev(logs) / math.sqrt(len(logs))
        return statistics.stdev(logs)

    wide, narrow = spread(0.2), spread(0.02)
    assert 7 < wide / narrow < 14  # a 10 x narrower elite, 10 x finer steps


def test_no_move_without_two_points_or_a_varying_float() -> None:
    literals, _ = find_literals(PROGRAM)
    rng = random.Random(0)
    assert model_move(literals, [(1.0, texts(0.5, 0.3))], True, rng, 2.0) == {}
    same = [(1.0, texts(0.5, 0.3, n=16)), (0.5, texts(0.5, 0.3, n=17))]
    assert model_move(literals, same, True, rng, 2.0) == {}


def test_the_ranking_follows_the_direction_of_the_score() -> None:
    """The weights favour the best points: maximizing and minimizing weigh opposite ends."""
    literals, _ = find_literals(PROGRAM)
    points = [(float(i), texts(0.5 * (1 + 0.1 * i), 0.3)) for i in range(6)]
    for maximize in (True, False):
        a = [model_move(literals, points, maximize, random.Random(s), 1.0) for s in range(3)]
        b = [model_move(literals, points, maximize, random.Random(s), 1.0) for s in range(3)]
        assert a == b  # the draw depends only on the generator
    up = model_move(literals, points, True, random.Random(7), 1.0)
    down = model_move(literals, points, False, random.Random(7), 1.0)
    assert up != down
