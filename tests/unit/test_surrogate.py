"""The quadratic surrogate (engine/agents/offline/surrogate.py) and how the model move uses it."""

from __future__ import annotations

import math
import random
import statistics

import numpy as np

from engine.agents.offline.elite_model import model_move
from engine.agents.offline.literals import find_literals
from engine.agents.offline.surrogate import fit_quadratic, min_points

PROGRAM = "A = 0.5\nB = 0.3\nN = 16\n"
OPTIMUM = (0.62, 0.24)  # where the landscape below peaks


def truth(a: float, b: float) -> float:
    """A curved ridge in log space, peaked at OPTIMUM (a cross term included)."""
    u, v = math.log(a / OPTIMUM[0]), math.log(b / OPTIMUM[1])
    return 3.0 - (u * u + v * v + u * v)


def test_a_full_quadratic_is_recovered_exactly() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(min_points(3, full=True), 3))

    def f(p: np.ndarray) -> np.ndarray:
        return 1 + p[:, 0] - 2 * p[:, 1] ** 2 + 0.5 * p[:, 0] * p[:, 2] + 3 * p[:, 2]

    model = fit_quadratic(x, f(x))
    assert model is not None and model.full
    new = rng.normal(size=(20, 3))
    assert np.allclose(model.predict(new), f(new), atol=1e-4)


def test_few_points_give_a_separable_model_or_none() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(min_points(3), 3))
    model = fit_quadratic(x, (x**2).sum(axis=1))
    assert model is not None and not model.full  # 9 points: no room for 3 cross terms
    assert fit_quadratic(x[:-1], (x[:-1] ** 2).sum(axis=1)) is None
    assert fit_quadratic(x, np.full(len(x), np.nan)) is None


def test_inputs_that_never_vary_are_left_out() -> None:
    rng = np.random.default_rng(2)
    x = np.column_stack([rng.normal(size=8), np.full(8, 0.7), rng.normal(size=8)])
    model = fit_quadratic(x, x[:, 0] ** 2 - x[:, 2])
    assert model is not None and list(model.used) == [0, 2]
    probe = np.array([[0.3, 123.0, -1.0]])  # the constant input does not matter
    assert np.allclose(model.predict(probe), 0.09 + 1.0, atol=1e-6)


def fit_points(n: int, seed: int) -> list[tuple[float, list[str]]]:
    rng = random.Random(seed)
    points = []
    for _ in range(n):
        a, b = 0.5 * math.exp(rng.gauss(0, 0.15)), 0.3 * math.exp(rng.gauss(0, 0.15))
        points.append((truth(a, b), [repr(a), repr(b), "16"]))
    return points


def test_the_surrogate_picks_draws_that_score_higher() -> None:
    """Over many seeds the surrogate's pick beats a blind draw and heads for the optimum;
    minimizing the same scores turns the picks the other way."""
    literals, _ = find_literals(PROGRAM)
    parent = (truth(0.5, 0.3), ["0.5", "0.3", "16"])
    spread = [parent, *fit_points(6, 99)]  # the Gaussian: parent and five elite nodes
    fit = [parent, *fit_points(20, 7)]

    def children(draws: int, maximize: bool) -> list[float]:
        out = []
        for seed in range(60):
            moves = model_move(literals, spread, maximize, random.Random(seed), 2.0, fit, draws)
            a, b = float(moves.get(0, "0.5")), float(moves.get(1, "0.3"))
            out.append(truth(a, b))
        return out

    blind, picked = children(1, True), children(100, True)
    assert statistics.mean(picked) > statistics.mean(blind) + 0.02
    assert statistics.mean(picked) > parent[0]  # the parent sits below the optimum
    worst = children(100, False)  # minimizing: the same model, the other end
    assert statistics.mean(worst) < statistics.mean(blind) - 0.02


def test_points_with_too_few_members_leave_the_draw_blind() -> None:
    literals, _ = find_literals(PROGRAM)
    parent = (truth(0.5, 0.3), ["0.5", "0.3", "16"])
    spread = [parent, *fit_points(6, 99)]
    few = [parent, *fit_points(3, 7)]  # 4 points: fewer than a 2-input quadratic needs
    for seed in range(10):
        blind = model_move(literals, spread, True, random.Random(seed), 2.0)
        assert model_move(literals, spread, True, random.Random(seed), 2.0, few, 100) != {}
        # Without a model the first of the 100 draws is taken: the blind draw itself.
        assert model_move(literals, spread, True, random.Random(seed), 2.0, few, 100) == blind


def test_the_peak_of_a_concave_model_is_its_maximum_and_stays_near_the_points() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(min_points(2, full=True) + 4, 2))
    centre = np.array([0.4, -0.3])
    model = fit_quadratic(x, -((x - centre) ** 2).sum(axis=1) - 0.5 * x[:, 0] * x[:, 1])
    assert model is not None
    peak = model.peak(np.zeros(2), radius=100.0)
    grid = np.array([[a, b] for a in np.linspace(-2, 2, 81) for b in np.linspace(-2, 2, 81)])
    assert np.allclose(peak, grid[np.argmax(model.predict(grid))], atol=0.05)
    far = fit_quadratic(x, -((x - 50.0) ** 2).sum(axis=1))  # the maximum far outside
    pulled = far.peak(np.zeros(2))
    assert np.linalg.norm((pulled - far.mean) / far.scale) <= 4.0 + 1e-9
    bowl = fit_quadratic(x, (x**2).sum(axis=1))  # a minimum: no maximum to go to
    assert bowl.peak(np.zeros(2)) is None


def test_the_model_move_jumps_to_the_peak_across_zero() -> None:
    """On a quadratic score the surrogate (fitted to the constants as written, not their
    logs) proposes the optimum, even where it lies on the other side of zero."""
    literals, _ = find_literals("A = 0.5\nB = 0.3\nN = 16\n")
    rng = random.Random(0)

    def score(a: float, b: float) -> float:
        return -((a - 0.7) ** 2) - 3 * (b + 0.2) ** 2

    fit = [(score(0.5, 0.3), ["0.5", "0.3", "16"])]
    for _ in range(12):
        a, b = 0.5 * math.exp(rng.gauss(0, 0.6)), 0.3 * math.exp(rng.gauss(0, 0.6))
        fit.append((score(a, b), [repr(a), repr(b), "16"]))
    moves = model_move(literals, fit[:6], True, random.Random(1), 2.0, fit, 100)
    assert abs(float(moves[0]) - 0.7) < 1e-3 and abs(float(moves[1]) + 0.2) < 1e-3


def test_a_model_move_over_many_constants_moves_a_random_few() -> None:
    """24 varying constants: each model move changes at most MAX_COLUMNS of them (a
    quadratic in 24 constants has 325 coefficients, beyond 60 points), and over many moves
    every one of them gets its turn."""
    from engine.agents.offline.elite_model import MAX_COLUMNS

    code = "".join(f"X{i} = {0.3 + i / 60:.4f}\n" for i in range(24))
    literals, _ = find_literals(code)
    parent_texts = [lit.text for lit in literals]
    rng = random.Random(5)

    def jitter() -> list[str]:
        return [f"{float(t) * math.exp(rng.gauss(0, 0.1)):.5f}" for t in parent_texts]

    points = [(1.0, parent_texts)] + [(0.9 - i / 100, jitter()) for i in range(12)]
    fit = points + [(0.5 - i / 100, jitter()) for i in range(40)]
    moved: set[int] = set()
    for seed in range(40):
        moves = model_move(literals, points, True, random.Random(seed), 2.0, fit, 100)
        assert 0 < len(moves) <= MAX_COLUMNS < 24
        moved |= set(moves)
    assert moved == set(range(24))
    few = model_move(literals[:6], [(s, t[:6]) for s, t in points], True, random.Random(1), 2.0)
    assert len(few) == 6  # up to MAX_COLUMNS constants all move, as before
