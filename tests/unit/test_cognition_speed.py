"""Why ``cognition search`` and ``report`` are fast (issue 13), tested as mechanisms.

The wall-clock target (< 3 s in a cold process) is measured by
``benchmarks/cognition_speed.py``; on a loaded two-core CI machine a timing assertion would be
flaky, so these tests check what makes it fast instead: stored vectors are reused (only the
query is embedded; the report embeds nothing the run already embedded), and a cold process
never imports torch."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

from cognition.embedder import HashEmbedder
from cognition.items import ACTIVE, SEED, Draft
from cognition.retriever import CognitionRetriever
from cognition.settings import CognitionSettings
from engine.cli import main
from engine.store.records import DONE, Node
from engine.store.run_store import RunStore


class Counting(HashEmbedder):
    """The hash embedder, recording every text it is asked to embed."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []

    def encode(self, texts: list[str]) -> np.ndarray:
        self.texts += texts
        return super().encode(texts)


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> Counting:
    embedder = Counting()
    monkeypatch.setattr(CognitionSettings, "make_embedder", lambda self: embedder)
    return embedder


def _run(tmp_path: Path, embedder: Counting) -> Path:
    """A run as the engine leaves it: seeds embedded by retrieval, motivations cached after
    the retriever's novelty call (deferred, flushed as the engine does before it stops),
    retrievals recorded."""
    run_dir = tmp_path / "run"
    store = RunStore.create(run_dir)
    store.set_meta("task", "toy")
    store.set_meta("direction", "maximize")
    store.set_meta("config", {"cognition": {"embedder": "hash"}})
    retriever = CognitionRetriever(store, embedder=embedder)  # novelty check off
    seeds = [Draft("Hexagonal rows", "pack circles in hexagonal rows"), Draft("SLSQP", "polish")]
    retriever.base.add(seeds, None, SEED, ACTIVE)
    root = Node(step=0, status=DONE, score=1.0, analysis="the ring layout scored one")
    root.id = store.insert_node(root)
    parent = root
    for step, idea in enumerate(["hexagonal rows in the middle", "slsqp polish of centers"], 1):
        node = Node(step=step, parent_ids=[parent.id], context_ids=[parent.id])
        node.id = store.insert_node(node)
        asyncio.run(retriever.retrieve(node.id, [parent]))

        async def check(node_id: int, idea: str) -> str | None:
            duplicate = await retriever.novelty(node_id, idea)
            await retriever.flush()
            return duplicate

        assert asyncio.run(check(node.id, idea)) is None
        store.update_node(
            node.id, motivation=idea, status=DONE, score=1.0 + step, analysis=f"{idea}: better"
        )
        parent = store.get_node(node.id)
    store.close()
    return run_dir


def test_search_embeds_only_the_query(tmp_path: Path, counting: Counting) -> None:
    run_dir = _run(tmp_path, counting)
    counting.texts.clear()
    with redirect_stdout(io.StringIO()) as out:
        assert main(["cognition", "search", str(run_dir), "hexagonal", "--json"]) == 0
    assert counting.texts == ["hexagonal"]  # the items' stored vectors are reused
    assert json.loads(out.getvalue())[0]["title"] == "Hexagonal rows"


def test_report_embeds_nothing_the_run_embedded(tmp_path: Path, counting: Counting) -> None:
    run_dir = _run(tmp_path, counting)
    counting.texts.clear()
    with redirect_stdout(io.StringIO()) as out:
        assert main(["report", str(run_dir), "--json"]) == 0
    report = json.loads(out.getvalue())
    assert report["provenance"]["all"]["designs"] == 2
    # Only the context nodes' motivations used as experience but never as a query remain
    # (here: none, the root has no motivation and the rest were cached by ``novelty``).
    assert counting.texts == []


def test_cold_search_process_never_imports_torch(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    store = RunStore.create(run_dir)
    store.set_meta("config", {"cognition": {"embedder": "minilm"}})
    store.close()
    assert main(["cognition", "add", str(run_dir), "--title", "t", "--content", "hexagonal"]) == 0
    code = (
        "import sys\n"
        "from engine.cli import main\n"
        f"main(['cognition', 'search', {str(run_dir)!r}, 'hexagonal packing'])\n"
        "print('heavy:', sorted(m for m in ('torch', 'sentence_transformers', 'transformers') "
        "if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "#1" in result.stdout and "heavy: []" in result.stdout


def test_each_distinct_text_is_embedded_once() -> None:
    """The cache: the same vectors as without it, and repeated texts never re-encoded."""
    from cognition.embedder import HashEmbedder, VectorCache

    calls: list[list[str]] = []
    inner = HashEmbedder()

    def encode(texts: list[str]) -> np.ndarray:
        calls.append(texts)
        return inner.encode(texts)

    cache = VectorCache(size=3)
    texts = ["alpha beta", "gamma", "alpha beta", "delta"]
    out = cache.encode(texts, encode)
    assert np.array_equal(out, inner.encode(texts))
    assert calls == [["alpha beta", "gamma", "delta"]]  # the repeat within the batch too
    assert np.array_equal(cache.encode(["gamma"], encode), inner.encode(["gamma"]))
    assert len(calls) == 1 and cache.hits == 2 and cache.misses == 3
    cache.encode(["epsilon"], encode)  # size 3: the least recently used ("alpha beta") goes
    cache.encode(["alpha beta"], encode)
    assert calls[-1] == ["alpha beta"]


def test_embedding_runs_on_one_blas_thread() -> None:
    """Where threadpoolctl can see the BLAS pool, it is one thread while we embed."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from cognition.embedder import one_blas_thread

    if not threadpoolctl.threadpool_info():
        pytest.skip("no BLAS pool visible to threadpoolctl")
    with one_blas_thread():
        inside = [
            i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"
        ]
    assert inside and set(inside) == {1}
