"""The loop's Retriever backed by the cognition base: retrieval, growth, novelty.

* ``retrieve``: each sampled context node is a query (its analysis, or its motivation when it
  has none); each query takes its ``top_k`` active items at or above ``score_threshold``; the
  union is de-duplicated (an item keeps its best score and the query that gave it), ordered by
  score, optionally capped at ``max_items``, and recorded in ``retrievals`` for provenance.
  Analyzer-proposed items take at most ``max_derived`` slots of a query and of the round:
  they share the run's vocabulary with every query and would crowd out the seed priors.
* ``propose``: the Analyzer's proposals become ``pending`` items (``active`` with
  ``auto_approve``). Duplicates of a known item or of an earlier proposal (same text, same
  claim, or cosine above ``duplicate_threshold``: see ``dedupe``) are dropped before they
  reach the pending list, each with an event that counts it.
* ``novelty``: with ``novelty.threshold`` set, a motivation closer than that to an idea already
  tried is refused as ``duplicate of #N`` before any evaluation is spent. Without a threshold
  the motivation's vector is only cached, so that the provenance report need not embed it.

The cognition base helps the search but must never stop it: an embedder failure (a dead
endpoint, a broken model) is logged as an event and the round goes on without knowledge.
Embedding runs in a worker thread. The database is reached through ``_db``: inline by
default (the CLI, tests), and in the engine through its db thread (``attach``), the one
thread that owns the engine's connection, so a retrieval on the event loop never blocks it
on SQLite and never opens a connection of its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from cognition.base import CognitionBase
from cognition.dedupe import claim, duplicates, subject
from cognition.embedder import Embedder
from cognition.items import (
    ACTIVE,
    ANALYZER,
    PENDING,
    CognitionError,
    Draft,
    Item,
    make_draft,
)
from cognition.later import Later
from cognition.node_vectors import Key, NodeVectors
from cognition.novelty import MotivationIndex
from cognition.ranking import Hit, top_hits
from cognition.settings import CognitionSettings, NoveltySettings
from engine.agents.base import Knowledge
from engine.store.records import Node
from engine.store.run_store import RunStore
from engine.text import one_line

log = logging.getLogger(__name__)
T = TypeVar("T")

_CONTENT_KEYS = ("content", "text", "insight", "description", "body")
_TITLE_KEYS = ("title", "name", "summary")


class CognitionRetriever:
    def __init__(
        self,
        store: RunStore,
        settings: CognitionSettings | None = None,
        novelty: NoveltySettings | None = None,
        embedder: Embedder | None = None,
        retrieval: bool = True,
    ) -> None:
        self.store = store
        self.settings = settings or CognitionSettings()
        self.novelty_settings = novelty or NoveltySettings()
        self.retrieval = retrieval  # False: the --no-cognition ablation (novelty still works)
        self.base = CognitionBase(store.db, self.settings, embedder)
        self.vectors = NodeVectors(store.db, self.base.embedder.name)
        self.index = MotivationIndex()
        self._novelty_lock = asyncio.Lock()
        self._refresh_lock = asyncio.Lock()
        self.dropped = 0  # duplicate proposals dropped by this retriever
        self._db_thread: Any = None  # engine.store.writer.StoreThread once attached
        self._later = Later(self._node_vectors)  # motivations cached beside the loop

    def attach(self, db_thread: Any) -> None:
        """Run every database call in the engine's db thread, which owns ``store``."""
        self._db_thread = db_thread

    async def _db(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` where the connection may be used: inline, or in the db thread."""
        if self._db_thread is None:
            return fn(*args)
        return await self._db_thread.call(lambda _store: fn(*args))

    async def _encode(self, texts: list[str]) -> np.ndarray:
        return await asyncio.to_thread(self.base.encode, texts)

    async def _event(self, message: str, node_id: int | None) -> None:
        await self._db(self.store.add_event, "cognition", message, node_id)

    # -------------------------------------------------------------- retrieval
    async def retrieve(self, node_id: int, context: list[Node]) -> list[Knowledge]:
        if not self.retrieval:
            return []
        try:
            return await self._retrieve(node_id, context)
        except Exception as exc:  # noqa: BLE001 - knowledge is optional; the round goes on
            await self._event(f"retrieval failed: {one_line(exc, 300)}", node_id)
            return []

    async def _retrieve(self, node_id: int, context: list[Node]) -> list[Knowledge]:
        await self._refresh_items()
        ids, matrix, derived = await self._db(self._active)
        if len(ids) == 0:
            return []
        wanted: dict[Key, str] = {}
        for node in context:
            analysis, motivation = node.analysis.strip(), node.motivation.strip()
            if node.id is not None and (analysis or motivation):
                field = "analysis" if analysis else "motivation"
                wanted[(node.id, field)] = analysis or motivation
        found = await self._node_vectors(wanted)
        cap = self.settings.max_derived
        best: dict[int, Hit] = {}
        for (query_id, _), vector in found.items():
            for hit in top_hits(
                ids,
                matrix,
                vector,
                self.settings.top_k,
                self.settings.score_threshold,
                query_id,
                derived,
                cap,
            ):
                if hit.item_id not in best or hit.score > best[hit.item_id].score:
                    best[hit.item_id] = hit
        hits = sorted(best.values(), key=lambda h: (-h.score, h.item_id))
        if cap is not None:  # the union of several queries: the same cap for the round
            is_derived = dict(zip(ids.tolist(), derived.tolist(), strict=True))
            kept = [h for h in hits if is_derived[h.item_id]][:cap]
            hits = [h for h in hits if not is_derived[h.item_id] or h in kept]
        if self.settings.max_items is not None:
            hits = hits[: self.settings.max_items]
        return await self._db(self._record, node_id, hits)

    def _active(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(db) The active items' ids and vectors, and which the Analyzer derived."""
        ids, matrix = self.base.matrix()
        return ids, matrix, self.base.derived(ids)

    def _record(self, node_id: int, hits: list[Hit]) -> list[Knowledge]:
        """(db) Record what the node was shown, and read it."""
        self.base.record_retrievals(node_id, hits)
        knowledge = []
        for hit in hits:
            item = self.base.get(hit.item_id)
            if item is not None:
                knowledge.append(Knowledge(item.id, item.title, item.content, hit.score))
        return knowledge

    async def _refresh_items(self) -> None:
        """Embed items stored without a current vector (seeded lazily, or a new embedder);
        one refresh at a time, so the warm-up and a round never embed the same items."""
        async with self._refresh_lock:
            stale = await self._db(self.base.stale)
            if stale:
                vectors = await self._encode([text for _, text in stale])
                fresh = {item_id: vectors[i] for i, (item_id, _) in enumerate(stale)}
                await self._db(self.base.set_vectors, fresh)

    async def warm_up(self) -> str:
        """Load the embedding model and embed the knowledge while the initial program is
        evaluated (the engine runs this beside it), so the first round does not wait for
        them. Returns the line to show; a model that cannot be loaded is reported here once
        and retrieval goes on without knowledge, as it would anyway."""
        if not self.retrieval and self.novelty_settings.threshold is None:
            return ""
        embedder = self.base.embedder
        start = time.perf_counter()
        try:
            load = getattr(embedder, "load", None)
            if load is not None and not getattr(embedder, "loaded", False):
                await asyncio.to_thread(load)
            if self.retrieval:
                await self._refresh_items()
        except Exception as exc:  # noqa: BLE001 - knowledge is optional; the run goes on
            message = f"cannot load the embedding model: {one_line(exc, 300)}"
            log.warning(message)
            await self._event(message, None)
            return f"cognition: {message}; rounds go on without knowledge"
        took = time.perf_counter() - start
        return f"cognition: embedding model ready, knowledge embedded ({took:.1f}s)"

    async def _node_vectors(self, wanted: dict[Key, str]) -> dict[Key, np.ndarray]:
        found = await self._db(self.vectors.lookup, wanted)
        missing = [k for k in wanted if k not in found]
        if missing:
            vectors = await self._encode([wanted[k] for k in missing])
            fresh = {k: (wanted[k], vectors[i]) for i, k in enumerate(missing)}
            await self._db(self.vectors.store, fresh)
            found.update({k: v for k, (_, v) in fresh.items()})
        return {k: found[k] for k in wanted if k in found}  # in the context's order

    # ----------------------------------------------------------------- growth
    async def propose(self, node_id: int, proposals: list[dict[str, Any]]) -> None:
        drafts: list[Draft] = []
        for raw in proposals:
            try:
                drafts.append(proposal_draft(raw, node_id))
            except CognitionError as exc:
                await self._event(f"proposal ignored: {exc}", node_id)
        if not drafts:
            return
        vectors = None
        try:
            await self._refresh_items()  # older items take part in the duplicate check
            vectors = await self._encode([d.text for d in drafts])
        except Exception as exc:  # noqa: BLE001 - keep the proposal; embed it later
            reason = one_line(exc, 300)
            await self._event(f"proposal stored unchecked (embedding failed: {reason})", node_id)
        await self._db(self._store_proposals, node_id, drafts, vectors)

    def _store_proposals(
        self, node_id: int, drafts: list[Draft], vectors: np.ndarray | None
    ) -> None:
        """(db) The proposals that say something new, pending (or active), with events;
        those about a change a pending item already states revise that item."""
        drafts, vectors = self._revise_pending(node_id, drafts, vectors)
        drafts, vectors = self._drop_duplicates(node_id, drafts, vectors)
        if not drafts:
            return
        status = ACTIVE if self.settings.auto_approve else PENDING
        for item in self.base.add(drafts, vectors, ANALYZER, status, node_id, flag=False):
            self.store.add_event(
                "cognition", f"item #{item.id} proposed, {item.status}: {item.title}", node_id
            )

    def _revise_pending(
        self, node_id: int, drafts: list[Draft], vectors: np.ndarray | None
    ) -> tuple[list[Draft], np.ndarray | None]:
        """(db) Merge proposals about one change: a draft whose claim has the subject of a
        pending item's (``dedupe.subject``: "raising X" helped or hurt) replaces that item's
        statement with its own, which carries the net evidence so far; "helped" and "hurt"
        never wait side by side. A draft contradicting an item a person already decided
        stays a new proposal and names that item. The drafts left to add are returned."""
        decided: dict[str, Item] = {}
        pending: dict[str, Item] = {}
        for item in self.base.items():
            key = subject(claim(item.tags))
            if key is not None:
                (pending if item.status == PENDING else decided)[key] = item
        keep: list[int] = []
        for i, draft in enumerate(drafts):
            key = subject(claim(draft.tags))
            item = pending.get(key) if key is not None else None
            if item is None:
                earlier = decided.get(key) if key is not None else None
                if earlier is not None and claim(earlier.tags) != claim(draft.tags):
                    draft.content += f" (Revises #{earlier.id}, {earlier.status}: {earlier.title}.)"
                keep.append(i)
                continue
            vector = vectors[i] if vectors is not None else None
            revised = self.base.revise(item.id, draft, vector, node_id)
            if revised is not None and key is not None:
                pending[key] = revised
                change = "restated" if revised.title == item.title else f"was: {item.title}"
                self.store.add_event(
                    "cognition",
                    f"item #{item.id} revised with the evidence so far: {revised.title} ({change})",
                    node_id,
                )
        return [drafts[i] for i in keep], (vectors[keep] if vectors is not None else None)

    def _drop_duplicates(
        self, node_id: int, drafts: list[Draft], vectors: np.ndarray | None
    ) -> tuple[list[Draft], np.ndarray | None]:
        """(db) The drafts that say something new (``dedupe``); an event per dropped one."""
        dropped = duplicates(self.base, drafts, vectors)
        for duplicate in dropped:
            self.dropped += 1
            self.store.add_event(
                "cognition",
                f"proposal dropped, {duplicate.reason}: {drafts[duplicate.index].title} "
                f"({self.dropped} duplicate proposal(s) dropped so far)",
                node_id,
            )
        gone = {d.index for d in dropped}
        keep = [i for i in range(len(drafts)) if i not in gone]
        return [drafts[i] for i in keep], (vectors[keep] if vectors is not None else None)

    # ---------------------------------------------------------------- novelty
    async def novelty(self, node_id: int, motivation: str) -> str | None:
        threshold = self.novelty_settings.threshold
        if not motivation.strip():
            return None
        if threshold is None:
            if self.retrieval:
                self._later.add({(node_id, "motivation"): motivation.strip()})
            return None
        try:
            async with self._novelty_lock:
                closest = await self._closest(node_id, motivation.strip())
        except Exception as exc:  # noqa: BLE001 - an unchecked idea beats a lost round
            await self._event(f"novelty check skipped: {one_line(exc, 300)}", node_id)
            return None
        if closest is not None and closest[1] > threshold:
            return f"duplicate of #{closest[0]}"
        return None

    async def flush(self) -> None:
        """Finish the deferred caching of motivations (``cognition/later.py``): ``asi-evolve
        report`` compares every design's motivation with what it was shown, and a
        read-only report cannot store what it embeds."""
        await self._later.flush()

    async def _closest(self, node_id: int, motivation: str) -> tuple[int, float] | None:
        add, drop = await self._db(self.index.changes, self.store.db)
        wanted = {(i, "motivation"): text for i, text in add.items()}
        found = await self._db(self.vectors.lookup, wanted)
        missing = [k for k in wanted if k not in found]
        vectors = await self._encode([wanted[k] for k in missing] + [motivation])
        fresh = {k: (wanted[k], vectors[i]) for i, k in enumerate(missing)}
        mine = vectors[-1]
        # Kept under this node: once the idea is accepted, the next check finds it cached.
        await self._db(self.vectors.store, {**fresh, (node_id, "motivation"): (motivation, mine)})
        every = {k: (wanted[k], found[k]) for k in found} | fresh
        self.index.apply({k[0]: value for k, value in every.items()}, drop)
        return self.index.most_similar(mine, exclude=node_id)


def proposal_draft(raw: Any, node_id: int) -> Draft:
    """An Analyzer proposal (loosely shaped LLM output) as a draft item."""
    if isinstance(raw, str):
        raw = {"content": raw}
    if not isinstance(raw, dict):
        raise CognitionError(f"a proposal must be a mapping, got {type(raw).__name__}")
    content = next((str(raw[k]) for k in _CONTENT_KEYS if raw.get(k)), "").strip()
    title = next((str(raw[k]) for k in _TITLE_KEYS if raw.get(k)), "").strip()
    if not content and not title:
        raise CognitionError("a proposal needs a title or content")
    if not title:
        title = content.split("\n")[0].split(". ")[0][:80]
    return make_draft(
        {
            "title": title,
            "content": content or title,
            "tags": raw.get("tags") if isinstance(raw.get("tags"), list | str) else None,
            "source": str(raw.get("source") or f"analysis of node #{node_id}"),
        },
        f"proposal from node #{node_id}",
    )
