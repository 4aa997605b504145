"""Approved run-derived insights must not crowd out the seed priors (issue 13).

Insights the Analyzer derives from a run share the run's vocabulary ("changed the score by
... against the parent") with the node analyses that retrieval uses as queries, so they score
high for *every* query. With the real MiniLM model, six approved insights about optimizer
settings (topic A) filled all five slots of a query about the ring radius of the hexagonal
layout (topic B) before ``max_derived``; with it, the seed priors come back."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

from cognition.embedder import Embedder, MiniLMEmbedder
from cognition.importer import load_file
from cognition.items import ACTIVE, ANALYZER, SEED, CognitionError, Draft
from cognition.ranking import top_hits
from cognition.retriever import CognitionRetriever
from cognition.settings import CognitionSettings, cognition_settings
from engine.store.records import DONE, Node
from engine.store.run_store import RunStore

SEEDS = REPO / "domains" / "circle_packing" / "cognition.yaml"
# What the offline Analyzer proposes (engine/agents/offline/change_effects.py), approved.
TOPIC_A = [
    ("ftol = 1e-9", 41, "+0.012", 5, 4),
    ("maxiter = 200", 43, "+0.02", 4, 3),
    ("penalty = 10.0", 37, "-0.04", 3, 0),
    ("n_starts = 3", 50, "+0.03", 6, 5),
    ("eps = 1e-6", 45, "+0.005", 3, 3),
    ("step = 0.01", 47, "+0.01", 4, 3),
]
# A node analysis (the query retrieval uses) about topic B: the hexagonal layout's radius.
ANALYSIS_B = (
    "- Score 0.9598 (+0.0123 vs parent #3 at 0.9475: better)\n"
    "- Metrics: sum_radii 0.9475 -> 0.9598 (+0.0123); min_gap 0 (=); n_circles 26 (=)\n"
    "- Change line 22 `0.3`->`0.33` moved the score by +0.0123 vs parent #3: keep exploring "
    "in this direction."
)
PLAIN_B = "Put the largest circles in the corners and along the edges, hexagonal rows inside."


@pytest.fixture(scope="module")
def minilm() -> Embedder:
    return MiniLMEmbedder()


def _retriever(tmp_path: Path, minilm: Embedder, **settings) -> CognitionRetriever:
    store = RunStore.create(tmp_path / "run")
    retriever = CognitionRetriever(store, CognitionSettings(**settings), embedder=minilm)
    retriever.base.add(load_file(SEEDS), None, SEED, ACTIVE)
    insights = [
        Draft(
            f"{'Raising' if gain[0] == '+' else 'Lowering'} `{code}` (line {line}) helped",
            f"Changing `{code}` (line {line}) changed the score by {gain} on average against "
            f"the parent over {n} nodes ({good} of {n} improved).",
        )
        for code, line, gain, n, good in TOPIC_A
    ]
    retriever.base.add(insights, None, ANALYZER, ACTIVE)  # approved
    return retriever


def _origins(retriever: CognitionRetriever, minilm: Embedder, query: str) -> list[str]:
    found = retriever.base.search(minilm.encode([query])[0], 5, 0.3)
    return [item.origin for item in found]


def test_without_the_cap_run_derived_insights_fill_every_slot(tmp_path: Path, minilm) -> None:
    """The failure the cap exists for (measured, not assumed)."""
    retriever = _retriever(tmp_path, minilm, max_derived=None)
    assert _origins(retriever, minilm, ANALYSIS_B) == [ANALYZER] * 5


def test_seed_priors_come_back_for_an_unrelated_query(tmp_path: Path, minilm) -> None:
    retriever = _retriever(tmp_path, minilm)  # default max_derived = 2
    origins = _origins(retriever, minilm, ANALYSIS_B)
    assert origins.count(ANALYZER) == 2 and origins.count(SEED) == 3
    found = retriever.base.search(minilm.encode([PLAIN_B])[0], 5, 0.3)
    assert all(item.origin == SEED for item in found)
    titles = " | ".join(item.title for item in found)
    assert "Hexagonal packing" in titles and "corners" in titles


def test_a_round_shows_at_most_max_derived_of_them(tmp_path: Path, minilm) -> None:
    """Several context nodes are several queries; the cap holds for the round's union."""
    retriever = _retriever(tmp_path, minilm)
    store = retriever.store
    context = []
    # Each analysis query alone takes two insights, not the same two: 3 distinct in the union.
    about_a = (
        "- Score 0.95 (-0.01 vs parent #2: worse)\n- Changes line 41 `1e-9`->`3e-9` moved the "
        "score by -0.01 vs parent #2: revert it."
    )
    for step, text in enumerate([ANALYSIS_B, about_a, PLAIN_B], 1):
        node = Node(step=step, status=DONE, score=1.0, analysis=text)
        node.id = store.insert_node(node)
        context.append(node)
    target = Node(step=9, context_ids=[n.id for n in context])
    target.id = store.insert_node(target)
    knowledge = asyncio.run(retriever.retrieve(target.id, context))
    origins = [retriever.base.get(k.id).origin for k in knowledge]
    assert origins.count(ANALYZER) == 2 and origins.count(SEED) >= 3
    assert [k.score for k in knowledge] == sorted((k.score for k in knowledge), reverse=True)


def test_top_hits_ranks_by_cosine_alone_and_gives_capped_slots_away() -> None:
    ids = np.arange(1, 7)
    matrix = np.eye(6, dtype=np.float32)
    vector = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.1], dtype=np.float32)
    derived = np.array([True, False, True, True, False, False])
    hits = top_hits(ids, matrix, vector, 4, 0.3, derived=derived, max_derived=1)
    assert [h.item_id for h in hits] == [1, 2, 5]  # 3 and 4 capped, 6 under the floor
    hits = top_hits(ids, matrix, vector, 3, 0.3, derived=derived, max_derived=None)
    assert [h.item_id for h in hits] == [1, 2, 3]  # no cap: cosine order, no boost
    hits = top_hits(ids, matrix, vector, 3, 0.3, derived=derived, max_derived=0)
    assert [h.item_id for h in hits] == [2, 5]


def test_max_derived_setting_is_checked() -> None:
    assert cognition_settings({"max_derived": None}).max_derived is None
    assert cognition_settings({}).max_derived == 2
    with pytest.raises(CognitionError, match="max_derived must be >= 0"):
        cognition_settings({"max_derived": -1})


def test_a_reader_opened_before_the_tables_sees_them_once_created(tmp_path: Path) -> None:
    """The base remembers only that its tables exist (a retrieval does not ask sqlite_master
    every call): a read-only base opened before the engine created them still finds the
    items written afterwards."""
    import sqlite3

    from cognition.base import CognitionBase
    from engine.store.database import Database

    def connect() -> Database:
        return Database(sqlite3.connect(tmp_path / "run.db", isolation_level=None))

    reader = CognitionBase(connect(), writable=False)
    assert reader.items() == []
    writer = CognitionBase(connect())
    writer.add([Draft("Warm up", "Raise the rate slowly.")], None, origin=SEED)
    assert [item.title for item in reader.items()] == ["Warm up"]


def test_a_budget_is_limited_only_when_a_limit_is_set() -> None:
    """Without a limit the engine does not sum the run's LLM calls before every step."""
    from engine.app.plan import Budget

    assert not Budget().limited
    assert Budget(max_cost_usd=1.0).limited and Budget(max_tokens_total=10).limited
    assert Budget(max_tokens_total=10).reason(
        {"cost_usd": 0.0, "prompt_tokens": 6, "completion_tokens": 4}
    )
