"""The numpy MiniLM encoder against the torch (sentence-transformers) path it replaces.

Stored vectors carry the embedder's name, not the backend, so a run embedded through torch
and searched through numpy compares the two directly: they must agree to 1e-4 cosine."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from cognition.embedder import MiniLMEmbedder, SentenceTransformerEmbedder
from cognition.numpy_bert import erf

TEXTS = [
    "circle packing in a unit square",
    "",
    "x",
    "Use SLSQP with explicit non-overlap constraints; restart 3-5 times from jittered grids.",
    "Ünïcödé, 中文 and emoji 🙂 survive the tokenizer",
    "long " * 400,  # beyond max_seq_length (256 tokens): truncated the same way
    "Hexagonal packing has density 0.9069; boundary effects dominate for small n.",
]


@pytest.fixture(scope="module")
def both() -> tuple[np.ndarray, np.ndarray]:
    numpy_vectors = MiniLMEmbedder().encode(TEXTS)
    torch_embedder = SentenceTransformerEmbedder(MiniLMEmbedder().path, device="cpu")
    return numpy_vectors, torch_embedder.encode(TEXTS)


def test_numpy_matches_torch(both: tuple[np.ndarray, np.ndarray]) -> None:
    numpy_vectors, torch_vectors = both
    assert numpy_vectors.shape == torch_vectors.shape == (len(TEXTS), 384)
    assert numpy_vectors.dtype == np.float32
    cosines = (numpy_vectors * torch_vectors).sum(axis=1)
    assert cosines.min() > 1 - 1e-4, cosines
    assert np.allclose(np.linalg.norm(numpy_vectors, axis=1), 1.0, atol=1e-5)


def test_batching_does_not_change_vectors(both: tuple[np.ndarray, np.ndarray]) -> None:
    """Length-sorted batches with padding give each text the vector it gets alone."""
    numpy_vectors, _ = both
    embedder = MiniLMEmbedder(batch_size=2)
    alone = np.vstack([embedder.encode([t]) for t in TEXTS[:4]])
    batched = embedder.encode(TEXTS)
    assert np.abs(batched - numpy_vectors).max() < 1e-5
    assert np.abs(alone - numpy_vectors[:4]).max() < 1e-5


def test_erf_matches_math() -> None:
    x = np.linspace(-6, 6, 2001, dtype=np.float64)
    expected = np.array([math.erf(v) for v in x])
    assert np.abs(erf(x) - expected).max() < 2e-7


def test_search_path_never_imports_torch() -> None:
    """The point of the numpy encoder: a cold process encodes without torch."""
    code = (
        "import sys\n"
        "from cognition.embedder import MiniLMEmbedder\n"
        "v = MiniLMEmbedder().encode(['hello world'])\n"
        "assert v.shape == (1, 384)\n"
        "print(sorted(m for m in ('torch', 'sentence_transformers', 'transformers') "
        "if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]", out.stderr


def test_loaded_and_load() -> None:
    embedder = MiniLMEmbedder()
    embedder.load()
    assert embedder.loaded
