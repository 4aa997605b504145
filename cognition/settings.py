"""The ``cognition:`` and ``novelty:`` sections of a run configuration, checked.

``RunConfig`` keeps both sections as plain mappings; this module gives them types and
defaults and turns a bad value into a one-line ``CognitionError`` before a run starts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any

from cognition.embedder import (
    Embedder,
    HashEmbedder,
    MiniLMEmbedder,
    OpenAIEmbedder,
    SentenceTransformerEmbedder,
)
from cognition.items import CognitionError

EMBEDDERS = ("minilm", "sentence-transformers", "openai", "hash")


@dataclass(frozen=True)
class CognitionSettings:
    embedder: str = "minilm"  # minilm | sentence-transformers | openai | hash (tests only)
    model_path: str | None = None  # sentence-transformers: a local model directory
    base_url: str | None = None  # openai: default $OPENAI_BASE_URL
    model: str = "text-embedding-3-small"  # openai: the embedding model's name
    api_key_env: str = "OPENAI_API_KEY"
    device: str = "cpu"  # the GPU is kept for the experiments
    batch_size: int = 32
    top_k: int = 5  # per context node
    score_threshold: float = 0.3  # minimum cosine for an item to be retrieved
    max_items: int | None = None  # cap on items per round after de-duplication
    # Analyzer-proposed (run-derived) items: at most this many per query's top_k and per round,
    # so that they cannot crowd out the seed priors (None: no cap, ranked like any item).
    max_derived: int | None = 2
    duplicate_threshold: float = 0.9  # cosine above which a new item is flagged
    auto_approve: bool = False  # Analyzer proposals become active without a person
    novel_threshold: float = 0.45  # report: below this similarity to everything, "novel"

    def make_embedder(self) -> Embedder:
        if self.embedder == "minilm":
            return MiniLMEmbedder(device=self.device, batch_size=self.batch_size)
        if self.embedder == "sentence-transformers":
            if not self.model_path:
                raise CognitionError("cognition.model_path is required for sentence-transformers")
            return SentenceTransformerEmbedder(self.model_path, self.device, self.batch_size)
        if self.embedder == "openai":
            base_url = self.base_url or os.environ.get("OPENAI_BASE_URL")
            if not base_url:
                raise CognitionError("cognition.base_url (or OPENAI_BASE_URL) is required")
            return OpenAIEmbedder(base_url, self.model, self.api_key_env, self.batch_size)
        return HashEmbedder()


@dataclass(frozen=True)
class NoveltySettings:
    threshold: float | None = None  # cosine above which a motivation is a duplicate
    max_retries: int = 3  # read by the engine: how often the Researcher is asked again


_FLOATS = {"score_threshold", "duplicate_threshold", "novel_threshold", "threshold"}
_INTS = {"batch_size", "top_k", "max_items", "max_derived", "max_retries"}
_OPTIONAL = {"model_path", "base_url", "max_items", "max_derived", "threshold"}


def cognition_settings(raw: dict[str, Any] | None) -> CognitionSettings:
    settings = CognitionSettings(**_checked(raw or {}, CognitionSettings, "cognition"))
    if settings.embedder not in EMBEDDERS:
        raise CognitionError(
            f"cognition.embedder must be one of {', '.join(EMBEDDERS)}, got {settings.embedder!r}"
        )
    if settings.top_k < 1 or settings.batch_size < 1:
        raise CognitionError("cognition.top_k and cognition.batch_size must be >= 1")
    if settings.max_items is not None and settings.max_items < 1:
        raise CognitionError("cognition.max_items must be >= 1")
    if settings.max_derived is not None and settings.max_derived < 0:
        raise CognitionError("cognition.max_derived must be >= 0")
    return settings


def novelty_settings(raw: dict[str, Any] | None) -> NoveltySettings:
    settings = NoveltySettings(**_checked(raw or {}, NoveltySettings, "novelty"))
    if settings.max_retries < 0:
        raise CognitionError("novelty.max_retries must be >= 0")
    return settings


def _checked(raw: dict[str, Any], cls: type, section: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise CognitionError(f"{section} must be a mapping")
    known = {f.name: f for f in fields(cls)}
    out: dict[str, Any] = {}
    for key, value in raw.items():
        where = f"{section}.{key}"
        if key not in known:
            raise CognitionError(f"unknown setting {where!r}")
        if value is None and key in _OPTIONAL:
            out[key] = None
        elif key in _FLOATS:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise CognitionError(f"{where} must be a number, got {value!r}")
            if not -1.0 <= value <= 1.0:
                raise CognitionError(f"{where} is a cosine similarity: in [-1, 1], got {value}")
            out[key] = float(value)
        elif key in _INTS:
            if isinstance(value, bool) or not isinstance(value, int):
                raise CognitionError(f"{where} must be an integer, got {value!r}")
            out[key] = value
        elif key == "auto_approve":
            if not isinstance(value, bool):
                raise CognitionError(f"{where} must be true or false, got {value!r}")
            out[key] = value
        else:
            if not isinstance(value, str) or not value:
                raise CognitionError(f"{where} must be a non-empty string, got {value!r}")
            out[key] = value
    return out
