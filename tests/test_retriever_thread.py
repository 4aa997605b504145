"""RetrieverThread: the retriever's database work runs in its own thread, never on the loop."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from cognition.embedder import HashEmbedder
from cognition.retriever import CognitionRetriever
from cognition.retriever_thread import RetrieverThread
from cognition.settings import CognitionSettings
from engine.agents.base import Knowledge
from engine.store.records import DONE, Node
from engine.store.run_store import RunStore


class _SlowRetriever:
    """Writes an event (0.3 s slow) per call and says which thread ran it."""

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self.threads: set[int] = set()

    async def retrieve(self, node_id: int, context: list[Node]) -> list[Knowledge]:
        self.threads.add(threading.get_ident())
        time.sleep(0.3)  # a slow commit, synchronous inside the retriever as in cognition/
        self.store.add_event("cognition", f"retrieved for #{node_id}", node_id)
        await asyncio.sleep(0)  # its own awaits run on its own loop
        return [Knowledge(1, "t", "c", 0.5)]

    async def propose(self, node_id: int, proposals: list[dict[str, str]]) -> None:
        await asyncio.sleep(10)  # cancelled by the test

    async def novelty(self, node_id: int, motivation: str) -> str | None:
        return None


def test_calls_run_in_the_retriever_thread_and_the_loop_keeps_ticking(tmp_path: Path) -> None:
    RunStore.create(tmp_path / "run").close()
    threaded = RetrieverThread(tmp_path / "run", _SlowRetriever)

    async def main() -> tuple[list[list[Knowledge]], float, bool]:
        gaps: list[float] = []
        stop = asyncio.Event()

        async def ticker() -> None:
            while not stop.is_set():
                start = time.monotonic()
                await asyncio.sleep(0.01)
                gaps.append(time.monotonic() - start)

        tick = asyncio.create_task(ticker())
        found = [await threaded.retrieve(i, []) for i in (1, 2, 3)]
        proposing = asyncio.create_task(threaded.propose(1, []))
        await asyncio.sleep(0.05)
        proposing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await proposing
        stop.set()
        await tick
        await threaded.aclose()
        return found, max(gaps), proposing.cancelled()

    found, max_gap, cancelled = asyncio.run(main())
    assert [k[0].title for k in found] == ["t", "t", "t"]
    assert max_gap < 0.15, max_gap  # three 0.3 s writes, none on the loop
    assert cancelled
    assert threaded.inner.threads and threading.get_ident() not in threaded.inner.threads
    events = RunStore.open(tmp_path / "run").events()
    assert [e["message"] for e in events] == [f"retrieved for #{i}" for i in (1, 2, 3)]


def test_the_cognition_retriever_works_through_the_thread(tmp_path: Path) -> None:
    store = RunStore.create(tmp_path / "run")
    node = Node(step=0, name="root", code="x = 1", status=DONE, score=1.0, motivation="start")
    store.insert_node(node)
    settings = CognitionSettings(score_threshold=-1.0, auto_approve=True)

    def factory(own: RunStore) -> CognitionRetriever:
        return CognitionRetriever(own, settings, embedder=HashEmbedder(64))

    threaded = RetrieverThread(tmp_path / "run", factory)

    async def main() -> list[Knowledge]:
        await threaded.propose(node.id, [{"title": "Use SLSQP", "content": "Polish with SLSQP."}])
        knowledge = await threaded.retrieve(node.id, [node])
        await threaded.aclose()
        return knowledge

    knowledge = asyncio.run(main())
    assert [k.title for k in knowledge] == ["Use SLSQP"]
    rows = list(store.db.query("SELECT node_id FROM retrievals"))
    assert rows == [{"node_id": node.id}]  # committed by the retriever's own connection


def test_no_retriever_means_none(tmp_path: Path) -> None:
    RunStore.create(tmp_path / "run").close()
    threaded = RetrieverThread(tmp_path / "run", lambda store: None)
    assert threaded.inner is None
    threaded.close()
    threaded.close()  # idempotent


@pytest.mark.parametrize("flag", [[], ["--no-cognition"]])
def test_a_run_without_cognition_starts_no_retriever_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flag: list[str]
) -> None:
    """--no-cognition (novelty check off too): no thread, no store, no model load."""
    from conftest import make_toy_task

    import engine.app.run
    from engine.cli import main

    started: list[RetrieverThread] = []

    class Recording(RetrieverThread):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            started.append(self)

    monkeypatch.setattr(engine.app.run, "RetrieverThread", Recording)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    task = make_toy_task(tmp_path)
    run_dir = tmp_path / "run"
    args = ["run", str(task), "--steps", "1", "--quiet", "--run-dir", str(run_dir), *flag]
    assert main(args) == 0
    assert len(started) == (0 if flag else 1)
    assert not any(t.name == "asi-evolve-cognition" for t in threading.enumerate())
