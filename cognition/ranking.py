"""Ranking retrieved items: by cosine to the query alone, with run-derived items capped.

Nothing but relevance orders the items: no boost for an origin, a status or an approval. One
exception limits rather than boosts: items the Analyzer derived from the run itself share
the run's vocabulary with every query (node analyses), so they score high whatever the query
is about; ``max_derived`` of them at most take a query's ``top_k`` slots, the rest go to the
next most relevant items (the seed priors, a person's items).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Hit:
    """An item found for a query, and which context node's text was the query."""

    item_id: int
    score: float
    query_node_id: int | None = None


def top_hits(
    ids: np.ndarray,
    matrix: np.ndarray,
    vector: np.ndarray,
    top_k: int,
    threshold: float,
    query_node_id: int | None = None,
    derived: np.ndarray | None = None,
    max_derived: int | None = None,
) -> list[Hit]:
    """The best ``top_k`` rows of ``matrix`` by cosine to ``vector``, at least ``threshold``;
    at most ``max_derived`` of them among the rows marked in ``derived`` (the slots they
    cannot take go to the next best other rows)."""
    if len(ids) == 0:
        return []
    scores = matrix @ np.asarray(vector, dtype=np.float32)
    if derived is not None and max_derived is not None and derived.any():
        order = np.argsort(-scores, kind="stable")
        order = order[scores[order] >= threshold]
        taken = np.cumsum(derived[order])
        order = order[~derived[order] | (taken <= max_derived)][:top_k]
        return [Hit(int(ids[i]), float(scores[i]), query_node_id) for i in order]
    k = min(top_k, len(ids))
    best = np.argpartition(-scores, k - 1)[:k]
    best = best[np.argsort(-scores[best], kind="stable")]
    return [
        Hit(int(ids[i]), float(scores[i]), query_node_id) for i in best if scores[i] >= threshold
    ]
