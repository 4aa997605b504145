"""The TUI's population model ranks the reported best as ``Standings`` over every node does,
while it keeps only a handful of rows for it, incrementally."""

from __future__ import annotations

import random

import pytest

from engine.store.reader import NodeRow
from engine.store.standing import StageNames, Standings
from tui.model import Population

NAMES = StageNames("explore", "verify")


def row(i: int, score: float | None, status: str = "done", verify=None) -> NodeRow:  # noqa: ANN001
    return NodeRow(i, i - 1, f"n{i}", None, score, status, 1.0, 0, None, float(i), verify=verify)


def verified(v: float | None) -> tuple:
    return (True, v, None)


def test_best_verified_is_kept_incrementally() -> None:
    pop = Population(maximize=True, names=NAMES)
    pop.apply([row(1, 0.5, verify=verified(0.55)), row(2, 0.9, verify=verified(0.61))])
    pop.apply([row(3, 0.97, verify=verified(0.52)), row(4, 0.8, verify=(None, None, "no"))])
    assert pop.best_verified is not None and pop.best_verified.id == 2
    assert pop.best is not None and pop.best.id == 3
    assert pop.root is not None and pop.root.id == 1 and pop.flagged() == 1
    best = pop.standings([]).best()
    assert best is not None and (best.node_id, best.stage, best.verified) == (2, "verify", True)
    pop.apply([row(2, 0.9, "pruned", verify=verified(0.61))])  # the best verified is pruned
    assert pop.best_verified is not None and pop.best_verified.id == 1
    pop.apply([row(1, 0.5, verify=verified(0.4))])  # the baseline is re-verified lower
    assert pop.flagged() == 0  # 0.52 and 0.61 are above it now
    assert pop.best_verified is not None and pop.best_verified.id == 3


@pytest.mark.parametrize("maximize", [True, False])
def test_the_reported_best_is_the_one_of_every_node(maximize: bool) -> None:
    rng = random.Random(21)
    pop = Population(maximize=maximize, names=NAMES)
    rows: dict[int, NodeRow] = {}
    for _ in range(40):  # batches of new and changed nodes
        batch = []
        for _ in range(rng.randint(1, 12)):
            i = rng.randint(1, 60)
            score = rng.choice([None, round(rng.random(), 2)])
            status = rng.choice(["done", "done", "failed", "pruned", "running"])
            verify = rng.choice(
                [None, (None, None, "gate"), (False, None, None), verified(round(rng.random(), 2))]
            )
            batch.append(row(i, score, status, verify))
        pop.apply(batch)
        rows.update({r.id: r for r in batch})
        every = Standings((r.standing_row(NAMES) for r in rows.values()), NAMES, maximize)
        window = rng.sample(sorted(rows), min(5, len(rows)))
        mine = pop.standings(window)
        assert mine.best() == every.best()
        assert mine.baseline == every.baseline
        assert pop.flagged() == len(every.flagged())
        for i in window:
            assert mine.of(i) == every.of(i)
