"""Which Analyzer proposals say something new: duplicates never reach the pending list.

A proposal is a duplicate of a known item (any status: pending, approved or rejected; a
person has already seen it) or of an earlier proposal of the same batch when:

* its text is the same, up to case and whitespace;
* it states the same *claim*: a ``claim:...`` tag, which the offline Analyzer puts on its
  run-derived insights (``claim:line22-raising-helped``); a restatement with newer numbers
  is the same claim;
* its cosine to one exceeds ``duplicate_threshold``, unless both carry claims and the claims
  differ. The exception is needed because the Analyzer's insights share a template: "raising
  X helped" and "lowering X helped" are contradicting claims, yet MiniLM puts them at cosine
  0.95 to 0.97 (it hardly tells antonyms apart). Where both sides say exactly what they claim,
  the structured claim decides; elsewhere (an LLM's free text, a person's item) the cosine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from cognition.base import CognitionBase
from cognition.items import STATUSES, Draft


@dataclass
class Duplicate:
    """A dropped proposal: its index in the batch and why."""

    index: int
    reason: str


def claim(tags: list[str]) -> str | None:
    return next((t for t in tags if t.startswith("claim:")), None)


def subject(tag: str | None) -> str | None:
    """What a claim is about, without its verdict: ``claim:line22-raising-helped`` ->
    ``claim:line22-raising``. Two claims with one subject are statements about the same
    change: a newer one revises the older (``cognition/retriever.py`` merges them while a
    person has not decided)."""
    if tag is None or "-" not in tag:
        return None
    return tag.rsplit("-", 1)[0]


def normal(text: str) -> str:
    """Case and whitespace do not make a text new."""
    return re.sub(r"\s+", " ", text).strip().lower()


def duplicates(
    base: CognitionBase, drafts: list[Draft], vectors: np.ndarray | None
) -> list[Duplicate]:
    """The drafts to drop, in order; without vectors only texts and claims are compared."""
    items = base.items()
    texts = {normal(Draft(i.title, i.content).text): i.id for i in items}
    claims = {c: i.id for i in items if (c := claim(i.tags))}
    item_claims = {i.id: claim(i.tags) for i in items}
    if vectors is not None:
        ids, matrix = base.matrix(statuses=STATUSES)
        scores = vectors @ matrix.T if len(ids) else np.zeros((len(drafts), 0), np.float32)
    threshold = base.settings.duplicate_threshold
    out: list[Duplicate] = []
    kept: list[int] = []
    for i, draft in enumerate(drafts):
        text, mine = normal(draft.text), claim(draft.tags)
        earlier = [drafts[j] for j in kept]
        reason = None
        if text in texts:
            reason = f"same text as #{texts[text]}"
        elif any(normal(d.text) == text for d in earlier):
            reason = "same text as an earlier proposal of this batch"
        elif mine is not None and mine in claims:
            reason = f"same claim as #{claims[mine]} ({mine})"
        elif mine is not None and any(claim(d.tags) == mine for d in earlier):
            reason = f"same claim as an earlier proposal of this batch ({mine})"
        elif vectors is not None:
            candidates = [
                (f"#{int(item_id)}", float(scores[i, r]), item_claims.get(int(item_id)))
                for r, item_id in enumerate(ids)
            ] + [
                ("an earlier proposal of this batch", float(vectors[i] @ vectors[j]), claim(d.tags))
                for j, d in zip(kept, earlier, strict=True)
            ]
            comparable = [
                (who, score)
                for who, score, theirs in candidates
                if not (mine is not None and theirs is not None and theirs != mine)
            ]
            if comparable:
                who, score = max(comparable, key=lambda c: c[1])
                if score > threshold:
                    reason = f"near-duplicate of {who} (cosine {score:.3f})"
        if reason is None:
            kept.append(i)
        else:
            out.append(Duplicate(i, reason))
    return out
