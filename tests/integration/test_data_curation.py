"""The data curation domain: scorer, corpus, evaluator gates, user corpora, end to end.

Everything runs on a copy of the domain with tiny settings (60 source documents per
variant) and a private corpus cache, so the whole file takes well under a minute.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from engine.store.run_store import RunStore

pytestmark = pytest.mark.domains
pytest.importorskip("datasets", reason="the data_curation domain needs pip install -e '.[domains]'")

ROOT = Path(__file__).resolve().parents[2]
DOMAIN = ROOT / "domains" / "data_curation"
sys.path.insert(0, str(DOMAIN))

import curation_corpus  # noqa: E402
import curation_noise  # noqa: E402
import curation_score  # noqa: E402

TINY = {
    "n_docs": 60,
    "check_docs": 20,
    "lm_train_chars": 30000,
    "lm_eval_chars": 20000,
    "child_timeout": 20,
    "neural": {"enabled": False},
}
NEURAL = {"enabled": True, "steps": 15, "eval_chars": 2000}  # one test turns it on
STRONG = {  # a careful setting of the initial program's knobs
    "MAX_TAG_CHARS": 60.0,
    "ENTITY_FIX": 1.0,
    "MOJIBAKE_FIX": 1.0,
    "LINE_MIN_ALPHA": 0.55,
    "LINE_MIN_VOWELS": 0.12,
    "BOILERPLATE_RATIO": 0.5,
    "MAX_LINE_REPEATS": 1.0,
    "DOC_MIN_WORDS": 30.0,
    "DOC_MIN_ALPHA": 0.6,
    "DUP_SIMILARITY": 0.5,
}


def with_knobs(code: str, **knobs: float) -> str:
    for name, value in knobs.items():
        code, n = re.subn(rf"^{name} = [0-9.]+", f"{name} = {value}", code, flags=re.M)
        assert n == 1, name
    return code


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny copy of the domain and a private corpus cache, shared by the module."""
    base = tmp_path_factory.mktemp("curation")
    task = base / "task"
    shutil.copytree(DOMAIN, task, ignore=shutil.ignore_patterns("__pycache__"))
    spec = yaml.safe_load((task / "task.yaml").read_text())
    spec["settings"].update(TINY)
    for stage in spec["stages"]:  # fewer verify runs in the end-to-end test
        if stage.get("promote"):
            stage["promote"] = {"top_k": 1}
    (task / "task.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    cache = base / "cache"
    cache.mkdir()
    environ = {
        **os.environ,
        "ASI_EVOLVE_CACHE": str(cache),
        "ASI_EVOLVE_TASK_DIR": str(task),
        "OMP_NUM_THREADS": "1",
    }
    return {
        "base": base,
        "task": task,
        "cache": cache,
        "env": environ,
        "settings": spec["settings"],
    }


def variant(env: dict, name: str, **settings: object) -> dict:
    """``env`` with a copy of its task whose settings are changed."""
    task = env["base"] / name
    shutil.copytree(env["task"], task, dirs_exist_ok=True)
    spec = yaml.safe_load((task / "task.yaml").read_text())
    spec["settings"].update(settings)
    (task / "task.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return {**env, "task": task, "env": {**env["env"], "ASI_EVOLVE_TASK_DIR": str(task)}}


def evaluate(env: dict, code: str, stage: str | None = None, name: str = "p") -> dict:
    work = env["base"] / f"work_{name}_{stage}"
    work.mkdir(exist_ok=True)
    program = work / "program.py"
    program.write_text(code)
    cmd = [sys.executable, str(env["task"] / "evaluate.py"), str(program)]
    if stage:
        cmd[2:2] = ["--stage", stage]
    proc = subprocess.run(
        cmd, cwd=work, env=env["env"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads((work / "results.json").read_text())


# --- scorer -----------------------------------------------------------------------------


def test_scorer_noop_zero_dropall_zero_perfect_hundred() -> None:
    texts = ["good words here <b>x</b>", "junk junk", "plain clean text"]
    refs = ["good words here x", "", "plain clean text"]
    labels = ["html", "garbage_page", "clean"]
    assert curation_score.score_corpus(texts, refs, labels, texts).score == 0.0
    dropped = curation_score.score_corpus(texts, refs, labels, [None] * 3)
    assert dropped.score == 0.0 and dropped.kept == 0.0 and dropped.removed == 1.0
    perfect = curation_score.score_corpus(texts, refs, labels, [refs[0], None, refs[2]])
    assert perfect.score == pytest.approx(100.0)
    # Words a cleaner invents count as surviving noise.
    added = curation_score.score_corpus(texts, refs, labels, [refs[0] + " invented", None, refs[2]])
    assert added.kept == 1.0 and added.removed < 1.0
    rows = curation_score.breakdown(perfect)
    assert rows["garbage_page"]["dropped"] == 1.0 and rows["html"]["removed"] == 1.0


def test_corpus_labels_are_exact(env: dict) -> None:
    dev = curation_corpus.load_variant(env["settings"], "dev")
    seen = set(dev["noise"])
    assert {"clean", "html", "mojibake", "near_duplicate", "fragment"} <= seen
    for row in dev:
        if row["noise"] == "mojibake":  # exactly repairable
            assert row["text"].encode("cp1252").decode("utf-8") == row["reference"]
        if row["noise"] in curation_noise.DROP_TYPES:
            assert row["reference"] == ""
        if row["noise"] == "clean":
            assert row["text"] == row["reference"]
    scored = curation_score.score_corpus(
        dev["text"], dev["reference"], dev["noise"], [r or None for r in dev["reference"]]
    )
    assert scored.score == pytest.approx(100.0)


@pytest.mark.slow
def test_corpus_deterministic_and_heldout_differs(
    env: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = curation_corpus.load_variant(env["settings"], "dev")
    monkeypatch.setenv("ASI_EVOLVE_CACHE", str(tmp_path))  # rebuilt from scratch
    again = curation_corpus.load_variant(env["settings"], "dev")
    assert first["text"] == again["text"] and first["noise"] == again["noise"]
    held = curation_corpus.load_variant(env["settings"], "heldout")
    assert not set(r for r in held["reference"] if r) & set(first["reference"])
    dev_text = "\n".join(first["text"])
    assert not any(line in dev_text for line in curation_noise.HELDOUT.nav_lines)


# --- evaluator ----------------------------------------------------------------------------


@pytest.mark.slow
def test_initial_noop_dropall_and_strong(env: dict) -> None:
    initial = (DOMAIN / "initial.py").read_text()
    start = evaluate(env, initial, name="initial")
    assert start["valid"] and 5 < start["score"] < 60, start.get("error")
    m = start["metrics"]
    assert "removed_html" in m and "kept_clean" in m and "check_f1" not in m
    assert set(start["breakdown"]) >= {"html", "clean"} and start["samples"]
    again = evaluate(env, initial, "explore", name="initial2")  # deterministic (timings aside)
    assert again["score"] == start["score"] and again["breakdown"] == start["breakdown"]
    assert again["samples"] == start["samples"]

    noop = evaluate(env, "def clean(doc):\n    return doc\n", "explore", name="noop")
    assert noop["valid"] and noop["score"] == 0.0

    drop = evaluate(env, "def clean(doc):\n    return None\n", "explore", name="drop")
    assert not drop["valid"] and "good text was kept" in drop["error"]

    strong = evaluate(env, with_knobs(initial, **STRONG), "explore", name="strong")
    assert strong["valid"] and strong["score"] > 80 and strong["score"] > start["score"] + 30

    neural = variant(env, "neural_task", neural=NEURAL)
    verify = evaluate(neural, with_knobs(initial, **STRONG), "verify", name="strong")
    assert verify["valid"] and verify["score"] > 70 and "heldout_kept" in verify["metrics"]
    assert verify["metrics"]["heldout_neural_bpb"] > 0  # the neural check ran


@pytest.mark.slow
def test_cheating_and_broken_candidates_are_caught(env: dict) -> None:
    initial = with_knobs((DOMAIN / "initial.py").read_text(), **STRONG)
    punct = initial.replace(
        "def clean(doc: str) -> str | None:\n",
        "def clean(doc: str) -> str | None:\n    r = _clean(doc)\n"
        "    return None if r is None else re.sub(r'[^\\w\\s]', ' ', r)\n\n\n"
        "def _clean(doc: str) -> str | None:\n",
        1,
    )
    res = evaluate(env, punct, "explore", name="punct")
    assert not res["valid"] or res["score"] < 5, res
    raiser = (
        "def clean(doc):\n    if len(doc) % 9 == 0:\n        raise ValueError('boom')\n"
        "    return doc\n"
    )
    res = evaluate(env, raiser, "check", name="raiser")
    assert not res["valid"] and "ValueError: boom" in res["error"]
    res = evaluate(env, "import sys\nsys.exit(3)\n", "check", name="exit")
    assert not res["valid"] and "failed to load" in res["error"]
    res = evaluate(env, "def clean(doc):\n    return 42\n", "check", name="type")
    assert not res["valid"] and "returned int" in res["error"]
    slow = variant(env, "hang_task", child_timeout=2)
    res = evaluate(slow, "def clean(doc):\n    while True:\n        pass\n", "check", name="hang")
    assert not res["valid"] and res["error"].startswith("timeout")
    # The candidate sees a plain list of texts: no references, no labels.
    peek = (
        "import json, os, sys\nseen = json.load(open(sys.argv[2]))\n"
        "print('PEEK', all(isinstance(t, str) for t in seen), len(seen))\n"
        "print('ENV', [k for k in os.environ if k.startswith('ASI_EVOLVE')])\n"
        "try:\n    import curation_noise\n    print('GENERATOR visible')\n"
        "except ImportError:\n    pass\n"
        "def clean(doc):\n    return doc\n"
    )
    res = evaluate(env, peek, "check", name="peek")
    assert "PEEK True 20" in res["logs"] and "ENV []" in res["logs"]
    assert "GENERATOR" not in res["logs"]


@pytest.mark.slow
def test_memorising_the_dev_templates_does_not_transfer(env: dict) -> None:
    knobs = {**STRONG, "BOILERPLATE_RATIO": 1.01}  # no general boilerplate rule ...
    strong = with_knobs((DOMAIN / "initial.py").read_text(), **knobs)
    memo = repr(set(curation_noise.DEV.nav_lines + curation_noise.DEV.page_lines))  # ... a list
    cheat = strong.replace(
        "def _junk_line(line: str) -> bool:\n",
        f"def _junk_line(line: str) -> bool:\n    if line in {memo}:\n        return True\n",
        1,
    )
    dev = evaluate(env, cheat, "explore", name="memo")["metrics"]
    held = evaluate(env, cheat, "verify", name="memo")["metrics"]
    assert dev["removed_boilerplate"] > 0.9 and held["heldout_removed_boilerplate"] < 0.5


# --- user corpora -----------------------------------------------------------------------


def _user_docs() -> list[str]:
    return [f"Document number {i} talks about topic {i} at some length. " * 12 for i in range(40)]


def test_user_corpora_jsonl_parquet_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    monkeypatch.setenv("ASI_EVOLVE_CACHE", str(tmp_path / "cache"))
    docs = _user_docs()
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text("".join(json.dumps({"body": d}) + "\n" for d in docs))
    settings = {
        "corpus": {"source": "jsonl", "path": str(jsonl), "text_field": "body"},
        "seed": 1,
        "heldout_seed": 2,
    }
    dev = curation_corpus.load_variant(settings, "dev")
    plain = [
        r for r, n in zip(dev["reference"], dev["noise"], strict=True) if r and n != "mojibake"
    ]  # mojibake references carry typographic quotes
    assert len(dev) >= 15 and plain and set(plain) <= set(docs)
    assert curation_corpus.lm_text(settings)

    labelled = datasets.Dataset.from_dict(
        {"text": ["a <b>b</b>", "junk"], "clean": ["a b", ""], "kind": ["html", "junk"]}
    )
    parquet = tmp_path / "l.parquet"
    labelled.to_parquet(str(parquet))
    disk = tmp_path / "disk"
    labelled.save_to_disk(str(disk))
    for source, path in (("parquet", parquet), ("disk", disk)):
        settings = {
            "corpus": {
                "source": source,
                "path": str(path),
                "reference_field": "clean",
                "noise_field": "kind",
            }
        }
        got = curation_corpus.load_variant(settings, "heldout")
        assert got["reference"] == ["a b", ""] and got["noise"] == ["html", "junk"]

    with pytest.raises(curation_corpus.CorpusError, match="no 'missing' column"):
        curation_corpus.load_variant(
            {"corpus": {"source": "disk", "path": str(disk), "text_field": "missing"}}, "dev"
        )
    with pytest.raises(curation_corpus.CorpusError, match="does not exist"):
        curation_corpus.load_variant(
            {"corpus": {"source": "jsonl", "path": str(tmp_path / "nope.jsonl")}}, "dev"
        )


def test_bad_settings_are_one_line(env: dict, tmp_path: Path) -> None:
    task = tmp_path / "task"
    shutil.copytree(env["task"], task)
    spec = yaml.safe_load((task / "task.yaml").read_text())
    spec["settings"]["corpus"] = {"source": "jsonl", "path": str(tmp_path / "none.jsonl")}
    (task / "task.yaml").write_text(yaml.safe_dump(spec))
    (tmp_path / "p.py").write_text("def clean(doc):\n    return doc\n")
    proc = subprocess.run(
        [sys.executable, str(task / "evaluate.py"), str(tmp_path / "p.py")],
        cwd=tmp_path,
        env={**env["env"], "ASI_EVOLVE_TASK_DIR": str(task)},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


# --- end to end -------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_run_two_steps(env: dict) -> None:
    run_dir = env["base"] / "run"
    config = env["base"] / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {"seed": 0, "engineer": {"sandbox_writable": [str(env["cache"]), "~/.cache"]}}
        )
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "engine.cli",
            "run",
            str(env["task"]),
            "--steps",
            "2",
            "--workers",
            "1",
            "--run-dir",
            str(run_dir),
            "--config",
            str(config),
            "--quiet",
        ],
        cwd=ROOT,
        env=env["env"],
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    status = subprocess.run(
        [sys.executable, "-m", "engine.cli", "status", str(run_dir), "--json"],
        cwd=ROOT,
        env=env["env"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    info = json.loads(status.stdout)
    failed = [n.error for n in RunStore.open(run_dir, readonly=True).nodes() if n.status != "done"]
    # A mutated candidate may be refused (e.g. it drops too much data); the engine must not be.
    assert info["done"] + info["failed"] == 3 and info["best_score"] > 0, failed
    engine_side = ("engine error", "researcher:", "timed out", "sandbox", "lost")
    assert not [e for e in failed if any(word in e for word in engine_side)], failed
