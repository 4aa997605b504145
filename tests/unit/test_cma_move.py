"""The offline Researcher's CMA-ES move (engine/agents/offline/cma_move.py)."""

from __future__ import annotations

import random

import numpy as np

from engine.agents.offline.cma_move import cma_move
from engine.agents.offline.literals import find_literals

PROGRAM = "A = 0.5\nB = -0.3\nN = 16\nTOL = 1e-9\nR = 0.2\n"


def texts(a: float, b: float, n: int = 16, r: float = 0.2) -> list[str]:
    return [repr(a), repr(b), str(n), "1e-9", repr(r)]


def history(count: int = 24, seed: int = 0) -> list[tuple[float, list[str]]]:
    """Nodes of a run in the order it made them, scored by a bowl around (0.6, -0.2)."""
    rng = np.random.default_rng(seed)
    points = []
    for _ in range(count):
        a, b = 0.5 + rng.normal(0, 0.1), -0.3 + rng.normal(0, 0.1)
        points.append((-((a - 0.6) ** 2) - (b + 0.2) ** 2, texts(a, b)))
    return points


def test_the_same_visible_nodes_and_seed_give_the_same_proposal() -> None:
    literals, _ = find_literals(PROGRAM)
    nodes = history()
    first = cma_move(literals, nodes, True, random.Random("s/7/0"))
    again = cma_move(literals, [(s, list(t)) for s, t in nodes], True, random.Random("s/7/0"))
    assert first and first == again
    other = cma_move(literals, nodes, True, random.Random("s/8/0"))
    assert other != first  # another step (or attempt) draws anew


def test_floats_move_ints_and_tolerances_do_not() -> None:
    literals, _ = find_literals(PROGRAM)
    for seed in range(20):
        moves = cma_move(literals, history(seed=seed), True, random.Random(seed))
        assert moves and set(moves) <= {0, 1, 4}  # A, B and R; never N or TOL
        for text in moves.values():
            assert "." in text or "e" in text  # still a float literal


def test_the_replay_moves_the_mean_toward_the_fitter_nodes() -> None:
    """Told a history that improves toward (0.6, -0.2), the asks land nearer it than the start."""
    literals, _ = find_literals(PROGRAM)
    nodes = history(count=48)
    asks = []
    for seed in range(30):
        moves = cma_move(literals, nodes, True, random.Random(seed))
        asks.append([float(moves.get(0, "0.5")), float(moves.get(1, "-0.3"))])
    mean = np.mean(asks, axis=0)
    assert np.linalg.norm(mean - [0.6, -0.2]) < np.linalg.norm(np.array([0.5, -0.3]) - [0.6, -0.2])


def test_ints_never_move() -> None:
    literals, _ = find_literals("N = 16\nM = range(16)\nA = 0.5\nB = 0.25\n")
    nodes = [
        (float(-abs(a - 0.7)), ["16", "16", repr(a), "0.25"]) for a in np.linspace(0.5, 0.8, 16)
    ]
    for seed in range(10):
        assert cma_move(literals, nodes, True, random.Random(seed)).keys() <= {2, 3}


def test_no_move_without_two_nodes() -> None:
    literals, _ = find_literals(PROGRAM)
    assert cma_move(literals, history(count=1), True, random.Random(0)) == {}


def test_the_researcher_makes_cma_moves_from_a_family_and_repeats_them_per_step() -> None:
    """With eight or more nodes of the parent's family visible, some proposals are CMA-ES
    asks that change floats only, and a step's proposal depends only on (seed, step)."""
    import asyncio

    from engine.agents.base import ResearchContext
    from engine.agents.offline.researcher import OfflineResearcher
    from engine.store.records import DONE, Node

    program = "def f():\n    n = 16\n    a = 0.5\n    b = -0.3\n    return n, a, b\n"
    family = [
        Node(
            step=i,
            id=i,
            status=DONE,
            score=s,
            code=program.replace("0.5", t[0]).replace("-0.3", t[1]),
        )
        for i, (s, t) in enumerate(history(count=12), start=1)
    ]
    parent = family[-1]

    def proposals(seed: int) -> list:
        researcher = OfflineResearcher(seed=seed)
        out = []
        for step in range(40):
            ctx = ResearchContext(
                "t", "d", parent, [parent], [], step=step, node_id=100 + step, elite=family[::-1]
            )
            out.append(asyncio.run(researcher.propose(ctx)))
        return out

    first = proposals(3)
    cmas = [p for p in first if p.metadata["operator"] == "cma"]
    assert cmas
    for proposal in cmas:
        assert {c["old"] for c in proposal.metadata["changes"]} <= {t for t in parent_texts(parent)}
        assert "n = 16" in proposal.code
    assert [p.code for p in proposals(3)] == [p.code for p in first]


def parent_texts(parent) -> set[str]:
    literals, _ = find_literals(parent.code)
    return {lit.text for lit in literals if not lit.is_int}


def test_cmaes_is_imported_beside_the_first_evaluation_not_before() -> None:
    """cmaes imports scipy.stats (0.5-2 s): building the offline agents must not, their
    warm-up (run beside the initial evaluation) does."""
    import subprocess
    import sys

    script = (
        "import asyncio, sys\n"
        "from engine.agents import setup\n"
        "agents = setup.build_offline_agents(0)\n"
        "print('cmaes' in sys.modules, 'scipy' in sys.modules)\n"
        "async def warm():\n"
        "    await asyncio.gather(*(w() for w in agents.warmers))\n"
        "asyncio.run(warm())\n"
        "print('cmaes' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False", "True"]
