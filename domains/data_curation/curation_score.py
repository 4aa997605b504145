"""How well a cleaner did: word-multiset F1 against the reference, per noise type.

Words are whitespace-separated tokens, each weighted by its length (capped at
``WORD_WEIGHT_CAP`` characters so a single 4 kB base64 blob does not outweigh a page of
prose). Per document, with multisets of words:

- reference words R, noisy input N, cleaner output C;
- injected noise = N - R (what the generator added or corrupted);
- kept = |C ∩ R| / |R|: share of the good text that survived, unchanged;
- leftover = |C - R|: noise that survived plus anything the cleaner invented;
- removed = 1 - leftover / |N - R| (summed over the corpus, floored at 0).

score = 100 x F1(kept, removed). The no-op keeps every word it was given and removes
nothing (removed = 0, score 0); dropping every document keeps nothing (score 0). Word
order is ignored on purpose: the generator never reorders text, and a cleaner that does
so still loses the words it breaks.

The breakdown groups the same sums by noise label; samples of (original, cleaned) pairs,
random and worst, go to the Analyzer.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

WORD_WEIGHT_CAP = 20
SAMPLE_CHARS = 360  # characters of each text shown in a sample pair
SAMPLE_WORDS = 8  # lost / leftover words quoted per sample


@dataclass
class Tally:
    """Length-weighted word sums for a group of documents."""

    docs: int = 0
    dropped: int = 0
    reference: int = 0  # |R|
    kept: int = 0  # |C ∩ R|
    noise: int = 0  # |N - R|
    leftover: int = 0  # |C - R|

    def add(self, other: Tally) -> None:
        for name in ("docs", "dropped", "reference", "kept", "noise", "leftover"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def kept_share(self) -> float | None:
        return self.kept / self.reference if self.reference else None

    @property
    def removed_share(self) -> float | None:
        return max(0.0, 1.0 - self.leftover / self.noise) if self.noise else None


@dataclass
class Scored:
    """The corpus-level result plus what the Analyzer needs."""

    total: Tally
    by_type: dict[str, Tally]
    per_doc: list[Tally] = field(default_factory=list)
    lost: list[Counter] = field(default_factory=list)
    left: list[Counter] = field(default_factory=list)

    @property
    def kept(self) -> float:
        return self.total.kept_share or 0.0

    @property
    def removed(self) -> float:
        return self.total.removed_share or 0.0

    @property
    def score(self) -> float:
        k, r = self.kept, self.removed
        return 100.0 * 2 * k * r / (k + r) if k + r > 0 else 0.0


def weight(counter: Counter) -> int:
    return sum(min(len(word), WORD_WEIGHT_CAP) * n for word, n in counter.items())


def score_corpus(
    texts: list[str], references: list[str], labels: list[str], outputs: list[str | None]
) -> Scored:
    """Score ``outputs`` (None = dropped) against ``references`` ("" = should be dropped)."""
    total = Tally()
    by_type: dict[str, Tally] = {}
    scored = Scored(total, by_type)
    for text, ref, label, out in zip(texts, references, labels, outputs, strict=True):
        r_words, n_words = Counter(ref.split()), Counter(text.split())
        c_words = Counter(out.split()) if out is not None else Counter()
        lost, left = r_words - c_words, c_words - r_words
        tally = Tally(
            docs=1,
            dropped=int(out is None),
            reference=weight(r_words),
            kept=weight(r_words & c_words),
            noise=weight(n_words - r_words),
            leftover=weight(left),
        )
        total.add(tally)
        by_type.setdefault(label, Tally()).add(tally)
        scored.per_doc.append(tally)
        scored.lost.append(lost)
        scored.left.append(left)
    return scored


def breakdown(scored: Scored) -> dict[str, dict[str, Any]]:
    """Per noise type: documents, share dropped, good text kept, noise removed."""
    out: dict[str, dict[str, Any]] = {}
    for label in sorted(scored.by_type):
        tally = scored.by_type[label]
        kept, removed = tally.kept_share, tally.removed_share
        out[label] = {
            "docs": tally.docs,
            "dropped": round(tally.dropped / tally.docs, 4) if tally.docs else 0.0,
            "kept": None if kept is None else round(kept, 4),
            "removed": None if removed is None else round(removed, 4),
        }
    return out


def flat_metrics(scored: Scored) -> dict[str, float]:
    """``kept_<type>`` / ``removed_<type>`` numbers for the metrics table."""
    metrics: dict[str, float] = {}
    for label, row in breakdown(scored).items():
        if row["kept"] is not None:
            metrics[f"kept_{label}"] = row["kept"]
        if row["removed"] is not None:
            metrics[f"removed_{label}"] = row["removed"]
    return metrics


def samples(
    scored: Scored,
    texts: list[str],
    labels: list[str],
    outputs: list[str | None],
    n_random: int = 20,
    n_worst: int = 5,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """(original, cleaned) pairs: the worst documents first, then random ones."""

    def error(i: int) -> int:
        t = scored.per_doc[i]
        return (t.reference - t.kept) + t.leftover

    order = sorted(range(len(texts)), key=lambda i: (-error(i), i))
    worst = [i for i in order[:n_worst] if error(i) > 0]
    rest = [i for i in range(len(texts)) if i not in set(worst)]
    picked = worst + sorted(random.Random(seed).sample(rest, min(n_random, len(rest))))
    out = []
    for i in picked:
        cleaned = outputs[i]
        out.append(
            {
                "doc": i,
                "why": "worst" if i in worst else "random",
                "noise": labels[i],
                "original": _cut(texts[i]),
                "cleaned": None if cleaned is None else _cut(cleaned),
                "lost_words": _top(scored.lost[i]),
                "leftover_words": _top(scored.left[i]),
            }
        )
    return out


def _cut(text: str) -> str:
    if len(text) <= SAMPLE_CHARS:
        return text
    return text[:SAMPLE_CHARS] + f"[... +{len(text) - SAMPLE_CHARS} chars]"


def _top(counter: Counter) -> list[str]:
    return [w[:40] for w, _ in counter.most_common(SAMPLE_WORDS)]
