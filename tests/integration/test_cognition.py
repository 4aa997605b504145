"""The cognition base with the real offline MiniLM model: neighbours, retrieval, growth,
novelty. The model is loaded once per session (the embedder caches it per process)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, cli, make_toy_task

from cognition.embedder import Embedder, MiniLMEmbedder
from cognition.importer import load_file
from cognition.items import ACTIVE, PENDING, REJECTED, RETRIEVALS, SEED, Item
from cognition.retriever import CognitionRetriever
from cognition.settings import CognitionSettings, NoveltySettings
from engine.agents.base import Agents, Proposal, Report, ResearchContext
from engine.agents.offline.change_effects import ChangeEffects
from engine.cli import main
from engine.execution.engineer import Engineer, Limits
from engine.loop.engine import Engine
from engine.samplers import make_sampler
from engine.samplers.settings import SamplerSettings
from engine.store.records import DONE, FAILED, Node
from engine.store.run_store import RunStore
from engine.task import load_task

SEED_FILE = REPO / "domains" / "circle_packing" / "cognition.yaml"


@pytest.fixture(scope="module")
def minilm() -> Embedder:
    embedder = MiniLMEmbedder()
    embedder.encode(["warm up"])  # load once for the whole module
    return embedder


@pytest.fixture(scope="module")
def seed_file() -> Path:
    """The circle-packing seed knowledge the product ships."""
    assert SEED_FILE.is_file()
    return SEED_FILE


def _store(tmp_path: Path) -> RunStore:
    store = RunStore.create(tmp_path / "run")
    store.set_meta("task", "circle_packing")
    return store


def _seeded(tmp_path: Path, seed_file: Path, minilm: Embedder, **settings) -> CognitionRetriever:
    store = _store(tmp_path)
    retriever = CognitionRetriever(
        store, CognitionSettings(**settings), NoveltySettings(), embedder=minilm
    )
    # As a new run is seeded: stored without vectors, embedded on first use.
    retriever.base.add(load_file(seed_file), None, SEED, ACTIVE)
    return retriever


def _node(store: RunStore, step: int, motivation: str = "", analysis: str = "") -> Node:
    node = Node(step=step, code="X = 1\n", motivation=motivation, analysis=analysis, status=DONE)
    store.insert_node(node)
    return node


def _text(item: Item) -> str:
    return f"{item.title} {item.content}".lower()


def test_embedder_is_normalised_384(minilm: Embedder) -> None:
    vectors = minilm.encode(["a", "circle packing in a square", ""])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors[:2], axis=1), 1.0, atol=1e-5)


def test_neighbours_on_circle_packing_seeds(tmp_path: Path, seed_file: Path, minilm) -> None:
    base = _seeded(tmp_path, seed_file, minilm).base
    assert len(base.items(status=ACTIVE)) >= 12

    def top(query: str) -> list[Item]:
        return base.search(minilm.encode([query])[0], top_k=5, threshold=0.0)

    slsqp = top("use SLSQP with non-overlap constraints")
    assert "slsqp" in _text(slsqp[0]) and "overlap" in _text(slsqp[0])
    assert "differential evolution" not in slsqp[0].title.lower()
    hexagonal = top("hexagonal packing density")
    assert "hexagonal" in _text(hexagonal[0]) and "densit" in _text(hexagonal[0])
    corners = top("place the large circles in the corners of the square")
    assert "corner" in _text(corners[0])
    assert all(a.score >= b.score for a, b in zip(slsqp, slsqp[1:], strict=False))


def test_retrieval_records_provenance(tmp_path: Path, seed_file: Path, minilm) -> None:
    retriever = _seeded(tmp_path, seed_file, minilm, top_k=2, score_threshold=0.3)
    store = retriever.store
    parent = _node(
        store, 0, analysis="Next: optimize with SLSQP under explicit non-overlap constraints."
    )
    other = _node(store, 1, motivation="Arrange the circles in hexagonal rows for density.")
    child = Node(step=2, parent_ids=[parent.id], context_ids=[parent.id, other.id])
    store.insert_node(child)

    knowledge = asyncio.run(retriever.retrieve(child.id, [parent, other]))

    assert knowledge and len({k.id for k in knowledge}) == len(knowledge)  # de-duplicated
    assert len(knowledge) <= 4  # top_k per context node
    assert all(k.score >= 0.3 for k in knowledge)
    assert [k.score for k in knowledge] == sorted((k.score for k in knowledge), reverse=True)
    rows = {r["item_id"]: r for r in store.db[RETRIEVALS].rows_where("node_id = ?", [child.id])}
    assert set(rows) == {k.id for k in knowledge}
    by_id = {k.id: k for k in knowledge}
    for item_id, row in rows.items():
        assert row["score"] == pytest.approx(by_id[item_id].score)
        assert row["query_node_id"] in (parent.id, other.id)
    queries: dict[int, object] = {}  # each query's best item (knowledge is sorted by score)
    for k in knowledge:
        queries.setdefault(rows[k.id]["query_node_id"], k)
    assert "slsqp" in _text(retriever.base.get(queries[parent.id].id))
    assert "hexagonal" in _text(retriever.base.get(queries[other.id].id))
    # Seeds were embedded on first use; the query texts are cached for the next rounds.
    assert not retriever.base.stale()
    assert store.db["node_vectors"].count == 2


def test_pending_approve_reject(tmp_path: Path, seed_file: Path, minilm) -> None:
    retriever = _seeded(tmp_path, seed_file, minilm)
    store, base = retriever.store, retriever.base
    source = _node(store, 1, analysis="evaluated")
    proposals = [
        {
            "title": "Jitter centers before polishing",
            "content": "Randomly perturb circle "
            "centers by 1e-3 and re-run the local optimizer to escape shallow local optima.",
        },
        {
            "title": "Penalty on the sum of radii",
            "content": "Replace hard constraints with a quadratic penalty and anneal its weight.",
        },
    ]
    asyncio.run(retriever.propose(source.id, proposals))
    jitter, penalty = base.items(status=PENDING)
    assert jitter.origin == "analyzer" and jitter.node_id == source.id
    assert "node #" in jitter.source

    asker = _node(store, 2, analysis="Perturb the circle centers randomly and re-optimize.")
    target = Node(step=3, context_ids=[asker.id])
    store.insert_node(target)

    def retrieved() -> set[int]:
        return {k.id for k in asyncio.run(retriever.retrieve(target.id, [asker]))}

    assert jitter.id not in retrieved()  # pending: never retrieved
    base.set_status([jitter.id], ACTIVE)
    assert jitter.id in retrieved()
    base.set_status([jitter.id], REJECTED)
    assert jitter.id not in retrieved()
    assert penalty.status == PENDING


def test_duplicate_proposals_are_dropped_with_a_counted_event(
    tmp_path: Path, seed_file: Path, minilm
) -> None:
    """Issue 13: duplicates never reach the pending list, whether they repeat an approved
    item, a pending one, an earlier proposal of the batch, or the same text in other case."""
    retriever = _seeded(tmp_path, seed_file, minilm, auto_approve=True)
    base = retriever.base
    original = next(i for i in base.items() if "slsqp" in i.title.lower() and "overlap" in _text(i))
    source = _node(retriever.store, 1, analysis="x")
    copy = {"title": original.title, "content": original.content.replace("SLSQP", "SLSQP ")}
    fresh = {
        "title": "Anneal the radius growth",
        "content": "Grow all radii together slowly "
        "while a spring model pushes overlapping circles apart.",
    }
    shouted = {"title": fresh["title"].upper(), "content": fresh["content"]}
    asyncio.run(retriever.propose(source.id, [copy, fresh, shouted]))
    (new,) = base.items(origin="analyzer")
    assert new.title == fresh["title"] and new.status == ACTIVE  # auto_approve
    base.set_status([new.id], PENDING)
    reworded = {"title": "Anneal the radius growth", "content": fresh["content"] + " "}
    asyncio.run(retriever.propose(source.id, [reworded]))  # same as a pending item
    assert [i.id for i in base.items(origin="analyzer")] == [new.id]
    events = [e["message"] for e in retriever.store.events() if e["kind"] == "cognition"]
    dropped = [m for m in events if m.startswith("proposal dropped")]
    assert len(dropped) == 3 and retriever.dropped == 3
    assert f"near-duplicate of #{original.id} (cosine" in dropped[0]
    assert "same text as an earlier proposal" in dropped[1]
    assert f"same text as #{new.id}" in dropped[2] and "3 duplicate proposal(s)" in dropped[2]


def test_analyzer_insights_kept_apart_by_claim_restatements_dropped(
    tmp_path: Path, seed_file: Path, minilm
) -> None:
    """The offline Analyzer's insights share a template. Other constants stay apart under
    ``duplicate_threshold``; the opposite claim about the same constant is above it (MiniLM
    hardly tells raising from lowering) and is kept by its claim tag; the same claim with newer
    numbers revises the pending item (one item, the newer numbers); free text without a claim
    is still compared by cosine."""
    code = "import numpy as np\nRING = 0.3\nEPS = 1e-12\nN_OUTER = 8\n"
    parent = Node(step=0, id=1, code=code, score=1.0, status=DONE)

    def insight(line: int, old: str, new: str, scores: list[float]) -> dict:
        effects = ChangeEffects()
        out: list[dict] = []
        for i, score in enumerate(scores):
            change = {"line": line, "old": old, "new": new}
            child = Node(step=1, id=10 + i, code=code, score=score, status=DONE)
            child.metadata = {"changes": [change]}
            out += effects.proposals(effects.observe(child, parent, True), "circle_packing")
        return out[0]

    retriever = _seeded(tmp_path, seed_file, minilm)
    source = _node(retriever.store, 1, analysis="x")
    first = [
        insight(2, "0.3", "0.35", [1.05, 1.03, 1.04]),
        insight(3, "1e-12", "2e-12", [1.05, 1.03, 1.04]),
        insight(4, "8", "9", [1.1, 1.2, 1.3]),
    ]
    asyncio.run(retriever.propose(source.id, first))
    pending = retriever.base.items(status=PENDING)
    assert len(pending) == 3 and retriever.dropped == 0
    opposite = insight(2, "0.3", "0.25", [1.05, 1.03, 1.04])  # lowering RING helped too
    vectors = minilm.encode([_text(pending[0]), opposite["title"] + "\n" + opposite["content"]])
    assert float(vectors[0] @ vectors[1]) > retriever.settings.duplicate_threshold
    again = insight(2, "0.3", "0.32", [1.01, 1.02, 1.06, 1.0])  # raising RING, new numbers
    assert again["content"] != first[0]["content"]
    paraphrase = {"title": pending[1].title, "content": pending[1].content + " Worth a try."}
    asyncio.run(retriever.propose(source.id, [opposite, again, paraphrase]))
    kept = retriever.base.items(status=PENDING)
    assert [i.title for i in kept] == [p.title for p in pending] + [
        "Lowering `RING = …` (line 2) helped"
    ]
    assert kept[-1].duplicate_of is None  # decided by the claim, not flagged by the cosine
    assert kept[0].id == pending[0].id and kept[0].content == again["content"]  # newer numbers
    events = [e["message"] for e in retriever.store.events() if e["kind"] == "cognition"]
    assert f"item #{pending[0].id} revised with the evidence so far" in " ".join(events)
    dropped = [m for m in events if m.startswith("proposal dropped")]
    assert f"near-duplicate of #{pending[1].id} (cosine" in dropped[0]
    assert retriever.dropped == 1


def test_contradicting_insights_merge_into_one_proposal_with_the_net_evidence(
    tmp_path: Path, seed_file: Path, minilm
) -> None:
    """ "Raising X helped" and later "raising X hurt" (the evidence turned) never wait side
    by side: the pending item is revised to what the evidence says now. Once a person has
    decided the older one, the contradiction is a new proposal that names it."""
    code = "import numpy as np\nMARGIN = 0.3\n"
    parent = Node(step=0, id=1, code=code, score=1.0, status=DONE)
    effects = ChangeEffects()
    said: list[dict] = []
    # Three nodes raising MARGIN gain, then six lose more: the net verdict turns to "hurt".
    for i, score in enumerate([1.05, 1.03, 1.04, 0.9, 0.85, 0.8, 0.9, 0.88, 0.86]):
        child = Node(step=1, id=10 + i, code=code, score=score, status=DONE)
        child.metadata = {"changes": [{"line": 2, "old": "0.3", "new": "0.4"}]}
        said += effects.proposals(effects.observe(child, parent, True), "toy")
    assert [p["title"] for p in said] == [
        "Raising `MARGIN = …` (line 2) helped",
        "Raising `MARGIN = …` (line 2) hurt",
    ]
    retriever = _seeded(tmp_path, seed_file, minilm)
    source = _node(retriever.store, 1, analysis="x")
    asyncio.run(retriever.propose(source.id, [said[0]]))
    asyncio.run(retriever.propose(source.id, [said[1]]))
    merged = [i for i in retriever.base.items(status=PENDING) if "MARGIN" in i.title]
    assert len(merged) == 1 and merged[0].title == said[1]["title"]
    assert "over 8 nodes (3 of 8 improved" in merged[0].content  # the net evidence: both ways
    # A person rejects it; the evidence turns back: a new proposal, naming the decided one.
    retriever.base.set_status([merged[0].id], "rejected")
    asyncio.run(retriever.propose(source.id, [said[0]]))
    again = [i for i in retriever.base.items(status=PENDING) if "MARGIN" in i.title]
    assert len(again) == 1 and again[0].id != merged[0].id
    assert f"(Revises #{merged[0].id}, rejected: {merged[0].title}.)" in again[0].content


class _Failing:
    name = "broken"

    def encode(self, texts: list[str]) -> np.ndarray:
        raise RuntimeError("endpoint down")


def test_embedder_failure_never_stops_the_round(tmp_path: Path) -> None:
    store = _store(tmp_path)
    retriever = CognitionRetriever(
        store, novelty=NoveltySettings(threshold=0.9), embedder=_Failing()
    )
    retriever.base.add(load_file_text("items: [{title: a, content: b}]", tmp_path), None, SEED)
    node = _node(store, 1, analysis="something")
    assert asyncio.run(retriever.retrieve(node.id, [node])) == []
    assert asyncio.run(retriever.novelty(node.id, "an idea")) is None
    asyncio.run(retriever.propose(node.id, [{"title": "t", "content": "c"}]))
    assert retriever.base.items(status=PENDING)[0].duplicate_of is None  # kept, unchecked
    messages = " | ".join(e["message"] for e in store.events() if e["kind"] == "cognition")
    assert "retrieval failed: endpoint down" in messages
    assert "novelty check skipped" in messages and "stored unchecked" in messages


def load_file_text(text: str, tmp_path: Path):  # noqa: ANN201 - list[Draft]
    path = tmp_path / "items.yaml"
    path.write_text(text)
    return load_file(path)


# ---------------------------------------------------------------- novelty in the loop
class _Repeater:
    """A researcher that keeps proposing the same idea (with different code)."""

    label = "repeater"

    def __init__(self) -> None:
        self.calls = 0

    async def propose(self, ctx: ResearchContext) -> Proposal:
        self.calls += 1
        return Proposal(
            code=f"X = {2.0 + self.calls / 100}\n",
            name=f"try{self.calls}",
            motivation="Move X closer to three, where the score peaks.",
        )


class _Analyzer:
    label = "toy"

    async def analyze(self, inp) -> Report:  # noqa: ANN001
        return Report(analysis=f"score {inp.node.score}")


class _CountingEngineer(Engineer):
    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.codes: list[str] = []

    async def run_stage(self, code: str, stage, workdir: Path, **kwargs):  # noqa: ANN001, ANN003, ANN201
        self.codes.append(code)
        return await super().run_stage(code, stage, workdir, **kwargs)


def test_novelty_rejection_spends_no_evaluation(tmp_path: Path, minilm) -> None:
    task = load_task(make_toy_task(tmp_path / "tasks"))
    run_dir = tmp_path / "run"
    store = RunStore.create(run_dir)
    store.set_meta("task", task.name)
    researcher = _Repeater()
    retriever = CognitionRetriever(store, novelty=NoveltySettings(threshold=0.9), embedder=minilm)
    engineer = _CountingEngineer(task, Limits())
    engine = Engine(
        store=store,
        task=task,
        run_dir=run_dir,
        agents=Agents(researcher=researcher, analyzer=_Analyzer(), retriever=retriever),
        sampler=make_sampler(SamplerSettings(), store, True, 0),
        engineer=engineer,
        steps_total=3,
        workers=1,
        novelty_retries=2,
    )
    asyncio.run(engine.run())

    root, first, *rest = list(store.nodes())
    assert first.status == DONE
    assert len(rest) == 2
    for node in rest:
        assert node.status == FAILED and node.error == f"duplicate of #{first.id}"
        assert len(node.metadata["rejected_proposals"]) == 3  # the first try + 2 retries
        assert not (run_dir / "nodes" / str(node.step)).exists()
    assert len(engineer.codes) == 2  # the initial program and the one new idea
    assert researcher.calls == 1 + 2 * 3
    novelty_events = [e for e in store.events() if e["kind"] == "novelty"]
    assert len(novelty_events) == 6
    # The motivations were embedded once each and cached, not per check.
    assert store.db["node_vectors"].count <= len(list(store.nodes()))
    assert json.loads(store.db["nodes"].get(first.id)["metadata"])["knowledge"] == []


def test_novelty_compares_with_tried_ideas_only(tmp_path: Path, minilm) -> None:
    store = _store(tmp_path)
    retriever = CognitionRetriever(store, novelty=NoveltySettings(threshold=0.9), embedder=minilm)
    tried = _node(store, 1, motivation="Warm-start SLSQP from the best layout.")
    crashed = _node(store, 2, motivation="Use a hexagonal lattice of 26 circles.")
    store.update_node(crashed.id, status=FAILED, error="crash")
    new = Node(step=3)
    store.insert_node(new)

    def check(motivation: str) -> str | None:
        return asyncio.run(retriever.novelty(new.id, motivation))

    assert check("Warm-start SLSQP from the best layout.") == f"duplicate of #{tried.id}"
    assert check("Use a hexagonal lattice of 26 circles.") is None  # a failed idea may retry
    assert check("Grow radii with a physics simulation of repelling disks.") is None
    store.update_node(tried.id, status="pruned")
    assert check("Warm-start SLSQP from the best layout.") is None  # pruned: out of the search


def test_cli_search_with_the_default_embedder(tmp_path: Path, seed_file: Path, minilm, capsys):
    run = _store(tmp_path)
    run.close()
    run_dir = str(tmp_path / "run")
    assert main(["cognition", "import", run_dir, str(seed_file), "--json"]) == 0
    capsys.readouterr()
    assert (
        main(
            [
                "cognition",
                "search",
                run_dir,
                "use SLSQP with non-overlap constraints",
                "--json",
                "--top-k",
                "3",
            ]
        )
        == 0
    )
    found = json.loads(capsys.readouterr().out)
    assert len(found) <= 3 and "SLSQP" in found[0]["title"] and found[0]["score"] > 0.3
    # The real entry point, in a fresh process: offline, and nothing on stderr but errors.
    result = cli("cognition", "search", run_dir, "hexagonal packing density", "--json")
    assert result.returncode == 0 and result.stderr == ""
    top = json.loads(result.stdout)[0]
    assert "hexagonal" in (top["title"] + top["content"]).lower()
