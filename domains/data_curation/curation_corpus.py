"""The corpora a cleaner is scored on: built-in or brought by the user, cached as Arrow.

A corpus is a ``datasets.Dataset`` with the columns ``text`` (what the cleaner sees),
``reference`` (what it should return; "" = drop the document) and ``noise`` (the label
the per-type breakdown groups by). Two variants exist: ``dev`` (explore stage) and
``heldout`` (verify stage: other source documents, other seed, other templates).

Sources (task.yaml ``settings.corpus``):

- ``source: builtin``: standard-library docstrings and language-reference sections with
  injected, labelled noise (see curation_noise.py).
- ``source: disk | jsonl | parquet`` with ``path``: the user's documents, read with
  ``datasets.load_from_disk`` / ``Dataset.from_json`` / ``Dataset.from_parquet``.
  ``text_field`` names the text column. With ``reference_field`` the corpus is already
  labelled (its ``noise_field``, if given, labels the breakdown) and ``heldout_path``
  (same format) is the verify variant (else the same corpus). Without it the texts are
  taken as clean and get the built-in noise, split into dev / heldout / lm like the
  built-in documents.

Generated corpora are cached under ``$ASI_EVOLVE_CACHE`` (default
``~/.cache/asi-evolve/data_curation``) in a directory named after a hash of everything
that shapes them; a new corpus is written to a temporary name and renamed into place,
so parallel evaluators never read half a corpus.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import curation_noise
import curation_sources
import datasets

GENERATOR_VERSION = 1  # bump when the noise generator changes: old caches are then unused
SOURCES = ("builtin", "disk", "jsonl", "parquet")


class CorpusError(Exception):
    """The configured corpus cannot be used; the message is one line."""


def cache_root() -> Path:
    env = os.environ.get("ASI_EVOLVE_CACHE")
    base = Path(env) if env else Path.home() / ".cache" / "asi-evolve"
    return base / "data_curation"


def load_variant(settings: dict[str, Any], variant: str) -> datasets.Dataset:
    """The ``dev`` or ``heldout`` corpus these settings describe (built once, then cached)."""
    datasets.disable_progress_bars()  # evaluator logs are for the Analyzer, not progress bars
    corpus = _corpus_settings(settings)
    if corpus["source"] != "builtin" and corpus.get("reference_field"):
        path = corpus.get("heldout_path") if variant == "heldout" else None
        return _labelled(corpus, path or corpus["path"])
    key = {
        "kind": "noisy",
        "variant": variant,
        "corpus": corpus,
        "n_docs": int(settings.get("n_docs", 1000)),
        "seed": int(settings.get("heldout_seed" if variant == "heldout" else "seed", 0)),
        "python": sys.version_info[:2],
        "version": GENERATOR_VERSION,
    }

    def build() -> datasets.Dataset:
        parts = _source_parts(corpus)
        sources = parts[variant][: key["n_docs"]]
        if not sources:
            raise CorpusError(f"the {variant} part of the corpus has no documents")
        docs = curation_noise.make_corpus(sources, curation_noise.POOLS[variant], key["seed"])
        return datasets.Dataset.from_dict(
            {
                "text": [d.text for d in docs],
                "reference": [d.reference for d in docs],
                "noise": [d.noise for d in docs],
            }
        )

    return _cached(key, build)


def lm_text(settings: dict[str, Any]) -> str:
    """Clean text, disjoint from both variants where possible, to train reference LMs on."""
    corpus = _corpus_settings(settings)
    limit = int(settings.get("lm_train_chars", 400_000))
    if corpus["source"] != "builtin" and corpus.get("reference_field"):
        texts = [r for r in _labelled(corpus, corpus["path"])["reference"] if r]
    else:
        key = {
            "kind": "lm",
            "variant": "lm",
            "corpus": corpus,
            "python": sys.version_info[:2],
            "version": GENERATOR_VERSION,
        }
        part = _cached(
            key, lambda: datasets.Dataset.from_dict({"text": _source_parts(corpus)["lm"]})
        )
        texts = part["text"]
    out, size = [], 0
    for text in texts:
        out.append(text)
        size += len(text) + 2
        if size >= limit:
            break
    return "\n\n".join(out)


def _corpus_settings(settings: dict[str, Any]) -> dict[str, Any]:
    corpus = dict(settings.get("corpus") or {"source": "builtin"})
    source = corpus.setdefault("source", "builtin")
    if source not in SOURCES:
        raise CorpusError(f"corpus.source must be one of {', '.join(SOURCES)}, not {source!r}")
    corpus.setdefault("text_field", "text")
    if source != "builtin":
        if not corpus.get("path"):
            raise CorpusError(f"corpus.source {source!r} needs corpus.path")
        corpus["path"] = str(Path(os.path.expanduser(str(corpus["path"]))).resolve())
        if corpus.get("heldout_path"):
            held = os.path.expanduser(str(corpus["heldout_path"]))
            corpus["heldout_path"] = str(Path(held).resolve())
    return corpus


def _read_user(corpus: dict[str, Any], path: str) -> datasets.Dataset:
    source = corpus["source"]
    if not os.path.exists(path):
        raise CorpusError(f"corpus path {path} does not exist")
    try:
        if source == "disk":
            data = datasets.load_from_disk(path)
            if isinstance(data, datasets.DatasetDict):
                if "train" not in data:
                    raise CorpusError(f"{path} holds a DatasetDict without a 'train' split")
                data = data["train"]
        else:
            reader = (
                datasets.Dataset.from_json if source == "jsonl" else datasets.Dataset.from_parquet
            )
            data = reader(path, cache_dir=str(cache_root() / "hf"))
    except CorpusError:
        raise
    except Exception as exc:  # noqa: BLE001 - datasets raises many kinds; report one line
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
        raise CorpusError(f"cannot read {source} corpus {path}: {reason}") from None
    field = corpus["text_field"]
    if field not in data.column_names:
        raise CorpusError(f"corpus {path} has no {field!r} column (has {data.column_names})")
    return data


def _labelled(corpus: dict[str, Any], path: str) -> datasets.Dataset:
    data = _read_user(corpus, path)
    ref_field, noise_field = corpus["reference_field"], corpus.get("noise_field")
    for name in (ref_field, noise_field):
        if name and name not in data.column_names:
            raise CorpusError(f"corpus {path} has no {name!r} column (has {data.column_names})")
    texts = [str(t or "") for t in data[corpus["text_field"]]]
    refs = [str(r or "") for r in data[ref_field]]
    if noise_field:
        noise = [str(n or "clean") for n in data[noise_field]]
    else:
        noise = ["labelled"] * len(texts)
    return datasets.Dataset.from_dict({"text": texts, "reference": refs, "noise": noise})


def _source_parts(corpus: dict[str, Any]) -> dict[str, list[str]]:
    if corpus["source"] == "builtin":
        return curation_sources.reference_documents()
    data = _read_user(corpus, corpus["path"])
    parts: dict[str, list[str]] = {name: [] for name, _ in curation_sources.PART_SHARES}
    for text in data[corpus["text_field"]]:
        if text and str(text).strip():
            parts[curation_sources.part_of(str(text))].append(str(text))
    return parts


def _cached(key: dict[str, Any], build: Any) -> datasets.Dataset:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
    final = cache_root() / f"{key['kind']}-{key['variant']}-{digest[:16]}"
    if final.is_dir():
        return datasets.load_from_disk(str(final))
    final.parent.mkdir(parents=True, exist_ok=True)
    data = build()
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=final.parent))
    try:
        data.save_to_disk(str(tmp / "data"))
        (tmp / "data" / "key.json").write_text(json.dumps(key, default=str), encoding="utf-8")
        try:
            os.rename(tmp / "data", final)
        except OSError:  # another evaluator won the race: use its copy
            if not final.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return datasets.load_from_disk(str(final))
