"""``asi-evolve run`` says it is loading the embedding model before it does (issue 13).

The run is a real process (the engine installs signal handlers and a subreaper, not for a
test process); a fake embedder whose ``load`` writes a marker and sleeps is injected the way
the tests inject embedders elsewhere, by replacing ``CognitionSettings.make_embedder``."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import REPO

from cognition.embedder import HashEmbedder
from cognition.retriever import CognitionRetriever
from cognition.setup import load_model
from engine.store.run_store import RunStore

RUNNER = textwrap.dedent(
    """
    import sys, time
    from cognition.embedder import HashEmbedder
    from cognition.settings import CognitionSettings

    class SlowEmbedder(HashEmbedder):
        loaded = False

        def load(self):
            print("<MODEL LOAD STARTS>", flush=True)
            time.sleep(0.3)
            self.loaded = True

    CognitionSettings.make_embedder = lambda self: SlowEmbedder()
    from engine.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def test_run_announces_the_model_load_before_it(tmp_path: Path, toy_task: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", RUNNER, "run", str(toy_task), "--steps", "1"]
        + ["--run-dir", str(tmp_path / "run")],
        cwd=REPO,
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

    announced = index("cognition: loading the embedding model (hash:256) ...")
    assert announced < index("<MODEL LOAD STARTS>") < index("embedding model loaded in")
    assert index("embedding model loaded in") < index("step    0")


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
    said: list[str] = []
    load_model(store, retriever, said.append)  # no exception: knowledge is optional
    assert said[0].startswith("cognition: loading the embedding model")
    assert "truncated" in said[1] and "without knowledge" in said[1]
    events = [e["message"] for e in store.db.query("SELECT message FROM events")]
    assert any("cannot load the embedding model" in m for m in events)
    store.close()


@pytest.mark.parametrize("already", [False, True])
def test_loads_once_and_is_silent_when_nothing_to_load(tmp_path: Path, already: bool) -> None:
    embedder = _Counting()
    embedder.loaded = already
    store, retriever = _retriever(tmp_path, embedder)
    said: list[str] = []
    load_model(store, retriever, said.append)
    assert embedder.loads == (0 if already else 1)
    assert len(said) == (0 if already else 2)
    load_model(store, object(), said.append)  # not a cognition retriever: nothing to do
    assert len(said) == (0 if already else 2)
    store.close()
