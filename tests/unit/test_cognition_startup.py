"""The embedding model loads while the initial program is evaluated (issue 22; issue 13
asked that a pause at start be explained: the run says so before the load begins).

The run is a real process (the engine installs signal handlers and a subreaper, not for a
test process); a fake embedder whose ``load`` sleeps is injected the way the tests inject
embedders elsewhere, by replacing ``CognitionSettings.make_embedder``."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import REPO

from cognition.embedder import HashEmbedder
from cognition.retriever import CognitionRetriever
from engine.store.run_store import RunStore

RUNNER = textwrap.dedent(
    """
    import json, sys, time
    from cognition.embedder import HashEmbedder
    from cognition.settings import CognitionSettings

    class SlowEmbedder(HashEmbedder):
        loaded = False

        def load(self):
            start = time.time()
            time.sleep(1.5)
            self.loaded = True
            print("<MODEL LOAD>", json.dumps([start, time.time()]), flush=True)

    CognitionSettings.make_embedder = lambda self: SlowEmbedder()
    from engine.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


@pytest.mark.slow
def test_the_model_loads_while_the_initial_program_is_evaluated(
    tmp_path: Path, toy_task: Path
) -> None:
    run = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-c", RUNNER, "run", str(toy_task), "--steps", "1", "--run-dir", str(run)],
        cwd=REPO,
        env={**os.environ, "TOY_DELAY": "2.0"},  # the initial program's evaluation: 2 s
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()

    def index(fragment: str) -> int:
        found = [i for i, line in enumerate(lines) if fragment in line]
        assert found, f"{fragment!r} not in:\n{result.stdout}"
        return found[0]

    assert index("loads while the initial program is evaluated") < index("<MODEL LOAD>")
    # Ready during the initial program's evaluation, before its result.
    assert index("<MODEL LOAD>") < index("embedding model ready") < index("step    0")
    load_start, load_end = json.loads(lines[index("<MODEL LOAD>")].split(" ", 2)[-1])
    db = sqlite3.connect(run / "evolve.db")
    root_started = db.execute("SELECT started_at FROM nodes WHERE step = 0").fetchone()[0]
    db.close()
    assert root_started < load_end  # the evaluation did not wait for the model


class _Broken(HashEmbedder):
    loaded = False

    def load(self) -> None:
        raise OSError("model.safetensors: truncated")


class _Counting(HashEmbedder):
    def __init__(self) -> None:
        super().__init__()
        self.loaded = False
        self.loads = 0

    def load(self) -> None:
        self.loads += 1
        self.loaded = True


def _retriever(tmp_path: Path, embedder: HashEmbedder) -> tuple[RunStore, CognitionRetriever]:
    store = RunStore.create(tmp_path / "run")
    return store, CognitionRetriever(store, embedder=embedder)


def test_a_broken_model_is_reported_once_and_the_run_goes_on(tmp_path: Path) -> None:
    store, retriever = _retriever(tmp_path, _Broken())
    line = asyncio.run(retriever.warm_up())  # no exception: knowledge is optional
    assert "truncated" in line and "without knowledge" in line
    events = [e["message"] for e in store.db.query("SELECT message FROM events")]
    assert any("cannot load the embedding model" in m for m in events)
    store.close()


@pytest.mark.parametrize("already", [False, True])
def test_loads_once(tmp_path: Path, already: bool) -> None:
    embedder = _Counting()
    embedder.loaded = already
    store, retriever = _retriever(tmp_path, embedder)
    assert asyncio.run(retriever.warm_up()).startswith("cognition: embedding model ready")
    asyncio.run(retriever.warm_up())
    assert embedder.loads == (0 if already else 1)
    store.close()
