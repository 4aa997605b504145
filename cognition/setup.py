"""How a run gets its cognition base: the three calls ``engine/cli.py`` makes.

1. ``prepare`` before anything is written: checks the ``cognition:`` / ``novelty:`` settings and
   reads the task's ``cognition.yaml`` (a bad file is a one-line error, exit 2).
2. ``seed`` once, when a new run is created (never on resume). Seeds are stored without
   vectors: the first retrieval embeds them in a worker thread, so creating a run never waits
   for a model to load.
3. ``retriever`` when the engine is built: the cognition retriever, unless both retrieval
   (``use_cognition``) and the novelty check are off.
"""

from __future__ import annotations

from typing import Any

from cognition.base import CognitionBase
from cognition.importer import load_file
from cognition.items import ACTIVE, SEED, Draft
from cognition.retriever import CognitionRetriever
from cognition.settings import cognition_settings, novelty_settings
from engine.store import RunStore


def prepare(config: Any, task: Any | None) -> list[Draft]:
    """Check the settings; the task's seed items when a new run will use them."""
    settings = cognition_settings(config.cognition)
    novelty = novelty_settings(config.novelty)
    if config.use_cognition or novelty.threshold is not None:
        settings.make_embedder()  # checks a model path or an endpoint; loads nothing
    if task is None or not config.use_cognition or task.cognition_file is None:
        return []
    return load_file(task.cognition_file, "yaml")


def seed(store: RunStore, config: Any, drafts: list[Draft]) -> None:
    if not drafts:
        return
    base = CognitionBase(store.db, cognition_settings(config.cognition))
    items = base.add(drafts, None, SEED, ACTIVE)
    store.add_event("cognition", f"seeded {len(items)} items from the task's cognition.yaml")


def retriever(store: RunStore, config: Any, current: Any) -> Any:
    settings = cognition_settings(config.cognition)
    novelty = novelty_settings(config.novelty)
    if not config.use_cognition and novelty.threshold is None:
        return current
    return CognitionRetriever(store, settings, novelty, retrieval=config.use_cognition)


def describe(store: RunStore, config: Any) -> str:
    """One banner line: what the cognition base will do in this run."""
    settings = cognition_settings(config.cognition)
    novelty = novelty_settings(config.novelty)
    check = "off" if novelty.threshold is None else f"threshold {novelty.threshold}"
    if not config.use_cognition:
        return f"cognition: off (ablation) · novelty check {check}"
    active = len(CognitionBase(store.db, settings, writable=False).items(status=ACTIVE))
    approve = "auto-approve" if settings.auto_approve else "proposals pending approval"
    return (
        f"cognition: {active} active items · {settings.embedder} embeddings · "
        f"top {settings.top_k} ≥ {settings.score_threshold} · {approve} · novelty check {check}"
    )
