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
4. The retriever's ``warm_up`` then loads the embedding model and embeds the knowledge while
   the engine evaluates the initial program (``Engine._main``): a run's first evaluation
   never waits for a model, and the first round never waits for the seeds' embeddings.
"""

from __future__ import annotations

import logging
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
