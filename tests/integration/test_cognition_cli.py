"""``asi-evolve cognition ...`` and ``asi-evolve report``: formats, JSON, errors, provenance.

These tests do not test semantics, so runs use the hash embedder (no model to load)."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from conftest import cli, make_toy_task

from cognition.embedder import OpenAIEmbedder
from cognition.items import CognitionError
from cognition.settings import cognition_settings, novelty_settings
from engine.cli import main
from engine.store.records import DONE, FAILED, Node
from engine.store.run_store import RunStore

YAML = """
items:
  - title: SLSQP with constraints
    content: Optimize with SLSQP and explicit non-overlap constraints.
    tags: [optimization, scipy]
    source: paper
  - title: Hexagonal prior
    content: Hexagonal packing has density 0.9069.
"""
JSONL = (
    '{"title": "Multi-start", "content": "Run 3-5 restarts.", "tags": "opt, restarts"}\n'
    "\n"
    '{"title": "Epsilon", "content": "Use 1e-8 in checks.", "source": "notes"}\n'
)
MARKDOWN = """# Circle packing notes

Introduction text is ignored.

## Corners first
Tags: geometry, prior
Source: https://example.org/packing

Put the big circles at the corners.

```python
## not a heading: inside a code fence
```

## Polish locally
Run a local optimizer after every construction.
"""


def _make_run(tmp_path: Path, **cognition) -> Path:
    run_dir = tmp_path / "run"
    store = RunStore.create(run_dir)
    store.set_meta("task", "toy")
    store.set_meta("direction", "maximize")
    store.set_meta("config", {"cognition": {"embedder": "hash", **cognition}})
    store.close()
    return run_dir


def _digest(run_dir: Path) -> str:
    """The database's content: the file and its write-ahead log (a read-only reader may
    leave an empty log behind, which holds nothing)."""
    h = hashlib.sha256()
    for name in ("evolve.db", "evolve.db-wal"):
        path = run_dir / name
        h.update(path.read_bytes() if path.exists() else b"")
    return h.hexdigest()


def _json(capsys: pytest.CaptureFixture, *argv: str) -> list[dict]:
    capsys.readouterr()  # drop what earlier calls printed
    assert main(list(argv)) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_import_yaml_jsonl_markdown(tmp_path: Path, capsys) -> None:
    run = str(_make_run(tmp_path))
    for name, text in (("a.yaml", YAML), ("b.jsonl", JSONL), ("c.md", MARKDOWN)):
        assert main(["cognition", "import", run, str(_write(tmp_path, name, text))]) == 0
    assert "imported 2 item(s)" in capsys.readouterr().out
    items = _json(capsys, "cognition", "list", run, "--json")
    assert [i["title"] for i in items] == [
        "SLSQP with constraints",
        "Hexagonal prior",
        "Multi-start",
        "Epsilon",
        "Corners first",
        "Polish locally",
    ]
    assert all({"id", "title", "status", "origin"} <= set(i) for i in items)
    assert {(i["status"], i["origin"]) for i in items} == {("active", "user")}
    by_title = {i["title"]: i for i in items}
    assert by_title["SLSQP with constraints"]["tags"] == ["optimization", "scipy"]
    assert by_title["Multi-start"]["tags"] == ["opt", "restarts"]
    assert by_title["Epsilon"]["source"] == "notes"
    corners = by_title["Corners first"]
    assert corners["tags"] == ["geometry", "prior"]
    assert corners["source"] == "https://example.org/packing"
    assert corners["content"].startswith("Put the big circles")
    assert "## not a heading" in corners["content"]
    bare = _write(tmp_path, "bare.yml", "- {title: Bare, content: a bare list}\n")
    assert _json(capsys, "cognition", "import", run, str(bare), "--json")[0]["title"] == "Bare"


def test_add_show_search_remove(tmp_path: Path, capsys) -> None:
    run = str(_make_run(tmp_path, score_threshold=0.0))
    main(["cognition", "import", run, str(_write(tmp_path, "a.yaml", YAML))])
    (added,) = _json(
        capsys,
        "cognition",
        "add",
        run,
        "--title",
        "Bigger radii",
        "--content",
        "Grow radii until contact.",
        "--tags",
        "geometry",
        "--json",
    )
    assert added["origin"] == "user" and added["status"] == "active" and added["id"] == 3
    (shown,) = _json(capsys, "cognition", "show", run, "#3", "--json")
    assert shown["content"] == "Grow radii until contact." and shown["retrievals"] == []
    found = _json(capsys, "cognition", "search", run, "SLSQP non-overlap constraints", "--json")
    assert found[0]["title"] == "SLSQP with constraints"
    assert all("score" in f for f in found)
    assert [f["score"] for f in found] == sorted((f["score"] for f in found), reverse=True)
    top1 = _json(capsys, "cognition", "search", run, "SLSQP", "--top-k", "1", "--json")
    assert len(top1) == 1
    assert main(["cognition", "search", run, "SLSQP"]) == 0
    assert "SLSQP with constraints" in capsys.readouterr().out
    removed = _json(capsys, "cognition", "remove", run, "1", "3", "--json")
    assert [r["id"] for r in removed] == [1, 3]
    assert [i["id"] for i in _json(capsys, "cognition", "list", run, "--json")] == [2]


def test_pending_approve_reject(tmp_path: Path, capsys) -> None:
    run = str(_make_run(tmp_path))
    main(["cognition", "import", run, str(_write(tmp_path, "a.yaml", YAML)), "--status", "pending"])
    assert [i["status"] for i in _json(capsys, "cognition", "pending", run, "--json")] == [
        "pending",
        "pending",
    ]
    assert _json(capsys, "cognition", "approve", run, "1", "--json")[0]["status"] == "active"
    assert _json(capsys, "cognition", "reject", run, "2", "--json")[0]["status"] == "rejected"
    assert _json(capsys, "cognition", "pending", run, "--json") == []
    assert [
        i["id"] for i in _json(capsys, "cognition", "list", run, "--status", "active", "--json")
    ] == [1]
    # A rejected item is never what retrieval returns.
    found = _json(capsys, "cognition", "search", run, "Hexagonal packing density", "--json")
    assert 2 not in [f["id"] for f in found]


def test_import_flags_near_duplicates(tmp_path: Path, capsys) -> None:
    run = str(_make_run(tmp_path))
    twice = (
        YAML + "  - title: SLSQP with constraints\n    content: Optimize with SLSQP and "
        "explicit non-overlap constraints.\n"
    )
    assert main(["cognition", "import", run, str(_write(tmp_path, "a.yaml", twice))]) == 0
    assert "#3 is a near-duplicate of #1" in capsys.readouterr().out
    third = _json(capsys, "cognition", "show", run, "3", "--json")[0]
    assert third["duplicate_of"] == 1 and third["status"] == "pending"


BAD_INPUTS = {
    "not a run dir": (["cognition", "list", "{tmp}"], "not a run directory"),
    "unknown id": (["cognition", "approve", "{run}", "1", "99"], "no cognition item with id 99"),
    "unknown id reject": (["cognition", "reject", "{run}", "42"], "42"),
    "unknown id remove": (["cognition", "remove", "{run}", "7"], "7"),
    "unknown id show": (["cognition", "show", "{run}", "5"], "5"),
    "bad id": (["cognition", "approve", "{run}", "abc"], "not an item id"),
    "malformed yaml": (["cognition", "import", "{run}", "{tmp}/bad.yaml"], "malformed YAML"),
    "item without content": (["cognition", "import", "{run}", "{tmp}/nocontent.yaml"], "content"),
    "malformed jsonl": (["cognition", "import", "{run}", "{tmp}/bad.jsonl"], "line 2"),
    "markdown without sections": (["cognition", "import", "{run}", "{tmp}/empty.md"], "no items"),
    "unknown format": (["cognition", "import", "{run}", "{tmp}/notes.txt"], "unknown format"),
    "bad --format": (["cognition", "import", "{run}", "{tmp}/bad.yaml", "--format", "xml"], "xml"),
    "missing file": (["cognition", "import", "{run}", "{tmp}/nope.yaml"], "no such file"),
    "empty search": (["cognition", "search", "{run}", " "], "non-empty"),
    "bad top-k": (["cognition", "search", "{run}", "x", "--top-k", "0"], "--top-k"),
    "report not a run": (["report", "{tmp}"], "not a run directory"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_exit_2_writes_nothing(tmp_path: Path, capsys, case: str) -> None:
    run = _make_run(tmp_path)
    main(["cognition", "import", str(run), str(_write(tmp_path, "ok.yaml", YAML))])
    _write(tmp_path, "bad.yaml", "items: [unclosed\n")
    _write(tmp_path, "nocontent.yaml", "items:\n  - title: x\n")
    _write(tmp_path, "bad.jsonl", '{"title": "a", "content": "b"}\n{"title": oops}\n')
    _write(tmp_path, "empty.md", "# Only a title\n\nno sections\n")
    _write(tmp_path, "notes.txt", "title: x\n")
    capsys.readouterr()
    before = _digest(run)
    argv, fragment = BAD_INPUTS[case]
    argv = [a.format(tmp=tmp_path, run=run) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0], err
    assert _digest(run) == before
    assert [i["status"] for i in _json(capsys, "cognition", "list", str(run), "--json")] == [
        "active",
        "active",
    ]


def test_real_entry_point_exit_code(tmp_path: Path) -> None:
    run = _make_run(tmp_path)
    before = _digest(run)
    result = cli("cognition", "approve", str(run), "3")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "no cognition item with id 3" in result.stderr
    assert _digest(run) == before


# ------------------------------------------------------------------ report
def test_report_classifies_designs(tmp_path: Path, capsys) -> None:
    run_dir = _make_run(tmp_path)
    main(
        [
            "cognition",
            "add",
            str(run_dir),
            "--title",
            "SLSQP polish",
            "--content",
            "optimize centers with slsqp constraints",
        ]
    )
    store = RunStore.open(run_dir)
    item_text = "SLSQP polish\noptimize centers with slsqp constraints"

    def node(
        step: int,
        parent: int | None,
        motivation: str,
        score: float | None,
        analysis: str = "",
        status: str = DONE,
        error: str = "",
    ) -> int:
        n = Node(
            step=step,
            parent_ids=[parent] if parent else [],
            context_ids=[parent] if parent else [],
            motivation=motivation,
            analysis=analysis,
            score=score,
            status=status,
            error=error,
        )
        return store.insert_node(n)

    root = node(0, None, "initial ring layout", 1.0, analysis="ring layout scored one")
    cog = node(1, root, item_text, 1.5, analysis="slsqp lifted the score by half")
    exp = node(2, cog, "slsqp lifted the score by half", 1.4, analysis="worse")
    novel = node(3, root, "zebra quantum banana", 1.6)
    node(4, root, item_text, None, status=FAILED, error=f"duplicate of #{cog}")
    store.db["retrievals"].insert_all(
        [
            {"node_id": cog, "item_id": 1, "score": 0.8, "query_node_id": root, "ts": 0},
            {"node_id": exp, "item_id": 1, "score": 0.6, "query_node_id": cog, "ts": 0},
        ]
    )
    store.close()
    before = _digest(run_dir)

    report = _json(capsys, "report", str(run_dir), "--json")
    prov = report["provenance"]
    assert prov["all"]["designs"] == 3  # the novelty rejection is not a design
    assert (prov["all"]["cognition"], prov["all"]["experience"], prov["all"]["novel"]) == (1, 1, 1)
    assert prov["all"]["cognition_share"] == pytest.approx(1 / 3)
    assert prov["best"]["designs"] == 1 and prov["best"]["novel"] == 1  # node `novel`: 1.6
    (usage,) = report["items"]
    assert usage["id"] == 1 and usage["retrieved"] == 2 and usage["credited"] == 1
    assert usage["mean_score"] == pytest.approx(0.7)
    assert usage["mean_delta"] == pytest.approx((0.5 + -0.1) / 2)
    assert report["best_node"] == novel
    assert main(["report", str(run_dir)]) == 0
    text = capsys.readouterr().out
    assert "cognition" in text and "experience" in text and "novel" in text and "#1" in text
    assert _digest(run_dir) == before  # the report only reads


# ---------------------------------------------------------------- settings
def test_settings_are_checked() -> None:
    assert cognition_settings({}).top_k == 5 and cognition_settings({}).score_threshold == 0.3
    for raw, fragment in (
        ({"top_k": 0}, "top_k"),
        ({"topk": 3}, "unknown setting 'cognition.topk'"),
        ({"embedder": "word2vec"}, "cognition.embedder"),
        ({"score_threshold": "high"}, "must be a number"),
        ({"auto_approve": "yes"}, "true or false"),
    ):
        with pytest.raises(CognitionError, match=fragment):
            cognition_settings(raw)
    with pytest.raises(CognitionError, match="not a sentence-transformers model"):
        cognition_settings(
            {"embedder": "sentence-transformers", "model_path": "/nope"}
        ).make_embedder()
    with pytest.raises(CognitionError, match="novelty.threshold"):
        novelty_settings({"threshold": 2})


class _Embeddings(BaseHTTPRequestHandler):
    requests: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Embeddings.requests.append(body)
        data = [
            {"object": "embedding", "index": i, "embedding": [float(len(t)), 1.0, 0.0]}
            for i, t in enumerate(body["input"])
        ]
        reply = json.dumps(
            {
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": 1, "total_tokens": 1},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args) -> None:  # noqa: ANN002
        pass


def test_openai_compatible_embedder(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Embeddings)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        settings = cognition_settings({"embedder": "openai", "base_url": url, "model": "e5"})
        embedder = settings.make_embedder()
        assert isinstance(embedder, OpenAIEmbedder) and embedder.name == f"openai:e5@{url}"
        vectors = embedder.encode(["abc", "", "abcdefg"])
    finally:
        server.shutdown()
    assert vectors.shape == (3, 3)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    assert _Embeddings.requests[-1]["model"] == "e5"
    assert vectors[2, 0] > vectors[0, 0]


# ------------------------------------------------------------ run wiring
def _task_with_seeds(tmp_path: Path, seeds: str) -> Path:
    task = make_toy_task(tmp_path / "tasks")
    (task / "cognition.yaml").write_text(seeds)
    return task


def test_run_seeds_once_and_retrieves(tmp_path: Path) -> None:
    pytest.importorskip("engine.agents.offline.analyzer")
    task = _task_with_seeds(tmp_path, YAML)
    config = _write(tmp_path, "cfg.yaml", "cognition: {embedder: hash, score_threshold: -1.0}\n")
    run_dir = tmp_path / "run"
    args = [str(task), "--run-dir", str(run_dir), "--config", str(config), "--quiet"]
    first = cli("run", *args, "--steps", "2")
    assert first.returncode == 0, first.stderr
    assert "cognition: 2 active items" in first.stdout
    second = cli("run", *args, "--steps", "3")
    assert second.returncode == 0, second.stderr
    store = RunStore.open(run_dir, readonly=True)
    seeds = list(store.db["cognition_items"].rows_where("origin = 'seed'"))
    assert [(i["id"], i["status"]) for i in seeds] == [(1, "active"), (2, "active")]  # not reseeded
    retrieved = {r["node_id"] for r in store.db["retrievals"].rows}
    assert len(retrieved) == 3  # every candidate was shown knowledge (threshold -1)
    store.close()


def test_run_with_malformed_seed_file_writes_nothing(tmp_path: Path) -> None:
    pytest.importorskip("engine.agents.offline.analyzer")  # the agents are built first
    task = _task_with_seeds(tmp_path, "items:\n  - title: no content\n")
    result = cli("run", str(task), "--run-dir", str(tmp_path / "run"), "--steps", "1")
    assert result.returncode == 2 and "content" in result.stderr
    assert result.stderr.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_another_embedder_reembeds(tmp_path: Path) -> None:
    from cognition.base import CognitionBase
    from cognition.embedder import HashEmbedder
    from cognition.importer import parse_yaml

    store = RunStore.create(tmp_path / "run")
    old = CognitionBase(store.db, embedder=HashEmbedder(64))
    old.add_texts(parse_yaml(YAML, "inline"), "user")
    new = CognitionBase(store.db, embedder=HashEmbedder(32))
    assert [i for i, _ in new.stale()] == [1, 2]
    found = new.search(new.encode(["SLSQP constraints"])[0], 1, 0.0)
    assert found[0].id == 1 and not new.stale()  # vectors replaced, in the new space
    assert {r["embed_model"] for r in store.db["cognition_items"].rows} == {"hash:32"}
