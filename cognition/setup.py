"""How a run gets its cognition base: the calls the composition root makes.

The settings arrive parsed (``engine/app/plan.py`` reads the ``cognition:`` and ``novelty:``
sections once into ``CognitionSettings`` and ``NoveltySettings``).

1. ``prepare`` before anything is written: reads the task's ``cognition.yaml`` (a bad file is
   a one-line error, exit 2) and checks that the embedder can be built (it loads nothing).
2. ``seed`` once, when a new run is created (never on resume). Seeds are stored without
   vectors: the first retrieval embeds them in a worker thread, so creating a run never waits
   for a model to load.
3. ``retriever`` when the engine is built: the cognition retriever, when retrieval or the
   novelty check is on.
4. ``load_model`` right after: loads the embedding model before the first round, announcing
   it first, so a pause at startup is explained instead of looking like a hang.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from cognition.base import CognitionBase
from cognition.importer import load_file
from cognition.items import ACTIVE, SEED, Draft
from cognition.retriever import CognitionRetriever
from cognition.settings import CognitionSettings, NoveltySettings
from engine.store.run_store import RunStore

log = logging.getLogger(__name__)


def prepare(
    settings: CognitionSettings, novelty: NoveltySettings, use_cognition: bool, task: Any | None
) -> list[Draft]:
    """Check the embedder; the task's seed items when a new run will use them."""
    if use_cognition or novelty.threshold is not None:
        settings.make_embedder()  # checks a model path or an endpoint; loads nothing
    if task is None or not use_cognition or task.cognition_file is None:
        return []
    return load_file(task.cognition_file, "yaml")


def seed(store: RunStore, settings: CognitionSettings, drafts: list[Draft]) -> None:
    if not drafts:
        return
    items = CognitionBase(store.db, settings).add(drafts, None, SEED, ACTIVE)
    store.add_event("cognition", f"seeded {len(items)} items from the task's cognition.yaml")


def retriever(
    store: RunStore, settings: CognitionSettings, novelty: NoveltySettings, retrieval: bool
) -> CognitionRetriever:
    return CognitionRetriever(store, settings, novelty, retrieval=retrieval)


def load_model(store: RunStore, retriever: Any, say: Callable[[str], None]) -> None:
    """Load the retriever's embedding model now, saying so before and after.

    A model that cannot be loaded does not stop the run: retrieval already degrades to "no
    knowledge" with an event per round, so this only reports it once up front."""
    if not isinstance(retriever, CognitionRetriever):
        return
    embedder = retriever.base.embedder
    load = getattr(embedder, "load", None)
    if load is None or getattr(embedder, "loaded", False):
        return  # nothing to load (hash, an endpoint) or already in memory
    say(f"cognition: loading the embedding model ({embedder.name}) ...")
    start = time.perf_counter()
    try:
        load()
    except Exception as exc:  # noqa: BLE001 - knowledge is optional; the run goes on
        message = f"cannot load the embedding model: {' '.join(str(exc).split())[:300]}"
        log.warning(message)
        store.add_event("cognition", message)
        say(f"cognition: {message}; rounds go on without knowledge")
        return
    say(f"cognition: embedding model loaded in {time.perf_counter() - start:.1f}s")


def describe(
    store: RunStore, settings: CognitionSettings, novelty: NoveltySettings, use_cognition: bool
) -> str:
    """One banner line: what the cognition base will do in this run."""
    check = "off" if novelty.threshold is None else f"threshold {novelty.threshold}"
    if not use_cognition:
        return f"cognition: off (ablation) · novelty check {check}"
    active = len(CognitionBase(store.db, settings, writable=False).items(status=ACTIVE))
    approve = "auto-approve" if settings.auto_approve else "proposals pending approval"
    return (
        f"cognition: {active} active items · {settings.embedder} embeddings · "
        f"top {settings.top_k} ≥ {settings.score_threshold} · {approve} · novelty check {check}"
    )
