"""The engine process has one database connection, used by one thread (docs/architecture.md).

The cognition retriever and the heartbeat reach the database through the engine's db thread
(``engine/store/writer.py``); the loop never waits on a commit. An audit hook in a real run
counts the read-write connections to the run database.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from conftest import REPO

from cognition.embedder import HashEmbedder
from cognition.retriever import CognitionRetriever
from cognition.settings import CognitionSettings
from engine.agents.base import Knowledge
from engine.store.records import DONE, Node
from engine.store.run_store import RunStore
from engine.store.writer import StoreThread

COUNT_CONNECTS = """
import sys
connects = []
def hook(event, args):
    if event == "sqlite3.connect":
        connects.append(str(args[0]))
sys.addaudithook(hook)
from engine.cli import main
code = main(sys.argv[2:])
rw = [c for c in connects if c.split("?")[0].endswith("/evolve.db") and "mode=ro" not in c]
with open(sys.argv[1], "w") as out:
    out.write("\\n".join(rw))
sys.exit(code)
"""


def test_a_run_opens_one_read_write_connection(toy_task: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    script, report = tmp_path / "count.py", tmp_path / "connects.txt"
    script.write_text(COUNT_CONNECTS)
    config = tmp_path / "c.yaml"
    config.write_text("backup_every: 2\nbackup_seconds: 0\ncognition:\n  embedder: hash\n")
    env = {**os.environ, "TOY_DELAY": "0"}
    env.pop("OPENAI_BASE_URL", None)
    for _ in range(2):  # a new run, then a resume
        done = subprocess.run(
            [sys.executable, str(script), str(report), "run", str(toy_task), "--run-dir",
             str(run), "--steps", "6", "--workers", "2", "--config", str(config)],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        # One read-write connection for the whole life of the engine process (the read-only
        # ones are probes: the version check at open, check_intact's header check).
        assert len(report.read_text().splitlines()) == 1, report.read_text()
        config.write_text("cognition:\n  embedder: hash\n")
    assert RunStore.open(run).steps_done() == 6


class _SlowStore(RunStore):
    """Every event takes 0.3 s to commit (a slow disk) and says which thread wrote it."""

    threads: set[int] = set()

    def add_event(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        self.threads.add(threading.get_ident())
        time.sleep(0.3)
        super().add_event(*args, **kwargs)


def test_the_retriever_works_through_the_db_thread_and_the_loop_keeps_ticking(
    tmp_path: Path,
) -> None:
    RunStore.create(tmp_path / "run").close()
    store = _SlowStore.open(tmp_path / "run")
    node = Node(step=0, name="root", code="x = 1", status=DONE, score=1.0, motivation="start")
    store.insert_node(node)
    settings = CognitionSettings(score_threshold=-1.0, auto_approve=True)
    retriever = CognitionRetriever(store, settings, embedder=HashEmbedder(64))
    db = StoreThread.adopt(store)
    retriever.attach(db)

    async def main() -> tuple[list[Knowledge], float]:
        gaps: list[float] = []
        stop = asyncio.Event()

        async def ticker() -> None:
            while not stop.is_set():
                start = time.monotonic()
                await asyncio.sleep(0.01)
                gaps.append(time.monotonic() - start)

        tick = asyncio.create_task(ticker())
        await retriever.propose(node.id, [{"title": "Use SLSQP", "content": "Polish with it."}])
        knowledge = await retriever.retrieve(node.id, [node])
        stop.set()
        await tick
        return knowledge, max(gaps)

    knowledge, max_gap = asyncio.run(main())
    db.close()
    assert [k.title for k in knowledge] == ["Use SLSQP"]
    assert max_gap < 0.15, max_gap  # 0.3 s commits, none of them on the loop
    assert _SlowStore.threads and threading.get_ident() not in _SlowStore.threads
    rows = list(store.db.query("SELECT node_id FROM retrievals"))
    assert rows == [{"node_id": node.id}]  # the store is the caller's again after close()
    store.close()
