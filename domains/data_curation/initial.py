"""A heuristic cleaner for pretraining documents: ``clean(doc) -> str | None``.

Called once per document, in corpus order; returning None drops the document. State
kept between calls (seen fingerprints) is how duplicates are found. Each heuristic has
a numeric knob in the block below; the starting values are deliberately timid, so most
of the noise still gets through.
"""

from __future__ import annotations

import hashlib
import html
import re

# EVOLVE-BLOCK-START
MAX_TAG_CHARS = 0.8  # strip <tags> whose inside is at most this long (0 = keep all tags)
ENTITY_FIX = 0.4  # above 0.5: decode HTML entities such as &amp; and &#39;
MOJIBAKE_FIX = 0.4  # above 0.5: repair UTF-8 text that was decoded as cp1252
LINE_MIN_ALPHA = 0.1  # drop lines whose share of letters and spaces is below this
LINE_MIN_VOWELS = 0.01  # drop lines whose letters are less than this share vowels
BOILERPLATE_RATIO = 0.95  # drop lines where this share of words are navigation words
MAX_LINE_REPEATS = 6.0  # keep at most this many copies of the same line in a document
DOC_MIN_WORDS = 6.0  # drop documents with fewer words than this after cleaning
DOC_MIN_ALPHA = 0.3  # drop documents whose share of letters and spaces is below this
DUP_SIMILARITY = 0.99  # drop a document this similar (shingle Jaccard) to an earlier one
SHINGLE_WORDS = 5.0  # words per shingle for the similarity above
# EVOLVE-BLOCK-END

BOILERPLATE_WORDS = {
    "home", "contact", "about", "blog", "docs", "privacy", "policy", "terms", "cookie",
    "cookies", "settings", "login", "log", "register", "sign", "share", "subscribe",
    "newsletter", "facebook", "twitter", "linkedin", "email", "rss", "copyright", "rights",
    "reserved", "menu", "navigation", "search", "skip", "top", "previous", "next", "print",
    "accept", "decline", "reject", "sitemap", "careers", "press", "help", "follow", "|",
    "»", "«", "·", ">", "/", "-", "©", "↑", "(c)", "page", "site", "tags:", "main", "content",
}
TAG = "<(/?[A-Za-z][^<>]{0,%d})>"
VOWELS = set("aeiouyAEIOUY")

_seen_shingles: dict[int, set[int]] = {}  # shingle hash -> documents that contain it
_doc_shingles: list[set[int]] = []


def clean(doc: str) -> str | None:
    text = doc
    if MOJIBAKE_FIX > 0.5 and ("â€" in text or "Ã" in text):
        try:
            text = text.encode("cp1252").decode("utf-8")
        except UnicodeError:
            text = doc  # not mojibake after all: keep it as it came
    if MAX_TAG_CHARS >= 1:
        text = re.sub(TAG % int(MAX_TAG_CHARS), "", text)
    if ENTITY_FIX > 0.5:
        text = html.unescape(text)
    lines = []
    counts: dict[str, int] = {}
    for line in text.split("\n"):
        key = line.strip()
        if key:
            counts[key] = counts.get(key, 0) + 1
            if counts[key] > MAX_LINE_REPEATS or _junk_line(key):
                continue
        lines.append(line)
    text = "\n".join(lines).strip()
    words = text.split()
    if len(words) < DOC_MIN_WORDS or _alpha_share(text) < DOC_MIN_ALPHA:
        return None
    if _is_duplicate(words):
        return None
    return text


def _junk_line(line: str) -> bool:
    if _alpha_share(line) < LINE_MIN_ALPHA:
        return True
    letters = [c for c in line if c.isalpha()]
    if letters and sum(c in VOWELS for c in letters) / len(letters) < LINE_MIN_VOWELS:
        return True
    words = line.lower().split()
    hits = sum(w.strip(".,:;!?") in BOILERPLATE_WORDS for w in words)
    return bool(words) and hits / len(words) >= BOILERPLATE_RATIO


def _alpha_share(text: str) -> float:
    if not text:
        return 0.0
    return sum(c.isalpha() or c == " " for c in text) / len(text)


def _is_duplicate(words: list[str]) -> bool:
    """Jaccard of word shingles against earlier documents that share a shingle."""
    n = max(1, int(SHINGLE_WORDS))
    lowered = [w.lower() for w in words]
    shingles = {
        int(hashlib.blake2b(" ".join(lowered[i : i + n]).encode(), digest_size=8).hexdigest(), 16)
        for i in range(max(1, len(lowered) - n + 1))
    }
    candidates: dict[int, int] = {}
    for s in shingles:
        for d in _seen_shingles.get(s, ()):
            candidates[d] = candidates.get(d, 0) + 1
    for d, common in candidates.items():
        union = len(shingles) + len(_doc_shingles[d]) - common
        if union and common / union >= DUP_SIMILARITY:
            return True
    index = len(_doc_shingles)
    _doc_shingles.append(shingles)
    for s in shingles:
        _seen_shingles.setdefault(s, set()).add(index)
    return False
