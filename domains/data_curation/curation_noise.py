"""Labelled noise for clean documents: the defects a web-scale pretraining crawl carries.

Every noisy document comes with its reference (the text a perfect cleaner returns; ""
when the whole document should be dropped) and one noise label, so the scorer can say
what was removed per type. Two template pools exist: ``dev`` drives the explore stage,
``heldout`` (other phrasing, other tag vocabulary, other garbage generators, other seed)
drives the verify stage, so a cleaner tuned to the wording of one generator is caught.
Neither pool, nor the seeds, is ever shown to the Researcher or to the candidate.

Edits of a kept document: ``html`` (tags and entities), ``boilerplate`` (navigation and
footer lines), ``repeated`` (copied lines), ``mojibake`` (UTF-8 read as cp1252; exactly
repairable with ``text.encode("cp1252").decode("utf-8")``), ``garbage_lines``
(non-language lines). Whole documents to drop: ``fragment`` (a truncated scrap),
``garbage_page``, ``boilerplate_page`` and ``near_duplicate`` (an edited copy of an
earlier document). ``clean`` documents are untouched and measure over-cleaning.
"""

from __future__ import annotations

import base64
import random
import re
import string
from dataclasses import dataclass

EDIT_WEIGHTS = {
    "clean": 0.34,
    "html": 0.13,
    "boilerplate": 0.14,
    "repeated": 0.13,
    "mojibake": 0.12,
    "garbage_lines": 0.14,
}
EXTRA_RATES = {  # extra whole documents per source document
    "fragment": 0.07,
    "garbage_page": 0.05,
    "boilerplate_page": 0.05,
    "near_duplicate": 0.08,
}
NOISE_TYPES = tuple(t for t in EDIT_WEIGHTS if t != "clean") + tuple(EXTRA_RATES)
DROP_TYPES = tuple(EXTRA_RATES)


@dataclass(frozen=True)
class Pool:
    """One generator variant: the phrasing and vocabulary its noise is drawn from."""

    nav_lines: tuple[str, ...]
    page_lines: tuple[str, ...]
    inline_tags: tuple[tuple[str, str], ...]
    block_tags: tuple[tuple[str, str], ...]
    entities: tuple[tuple[str, str], ...]  # (character, its entity)
    garbage: tuple[str, ...]  # names of garbage generators
    scattered_repeats: bool  # repeat lines anywhere (else right after the original)
    mojibake_style: str  # "quotes" or "accents"
    dup_style: str  # "words" or "lines"


DEV = Pool(
    nav_lines=(
        "Home | Docs | Blog | Contact",
        "Skip to main content",
        "You are here: Home » Library » Reference",
        "« Previous topic | Next topic »",
        "Share: Facebook Twitter LinkedIn Email",
        "© 2023 Example Corp. All rights reserved.",
        "Privacy Policy · Terms of Use · Cookie Settings",
        "Subscribe to our newsletter for weekly updates!",
        "Log in / Register",
        "Back to top ↑",
        "Search this site:",
        "Tags: python, library, reference, tutorial",
    ),
    page_lines=(
        "404 - Page not found",
        "The page you requested could not be found.",
        "Please enable JavaScript to view this site.",
        "We use cookies to improve your experience. Accept | Decline",
        "Sitemap | Accessibility | Careers | Press",
    ),
    inline_tags=(
        ("<b>", "</b>"),
        ("<i>", "</i>"),
        ("<em>", "</em>"),
        ('<a href="/wiki/ref">', "</a>"),
        ('<span class="kw">', "</span>"),
    ),
    block_tags=(("<p>", "</p>"), ('<div class="content">', "</div>"), ("<li>", "</li>")),
    entities=(("&", "&amp;"), ("'", "&#39;"), ('"', "&quot;")),  # "&" first
    garbage=("base64", "symbols", "mash"),
    scattered_repeats=False,
    mojibake_style="quotes",
    dup_style="words",
)

HELDOUT = Pool(
    nav_lines=(
        "Main menu",
        "Jump to navigation Jump to search",
        "Start > Manuals > Standard Library",
        "Copyright (c) 2021 Some Foundation",
        "Follow us on Mastodon and RSS",
        "Sign in   Create account",
        "Last updated on March 3, 2022",
        "Was this page helpful? Yes / No",
        "Print this page",
        "Related articles: see also the FAQ",
        "Powered by Sphinx and a custom theme",
        "Accept all cookies   Reject non-essential",
    ),
    page_lines=(
        "Access denied",
        "You do not have permission to view this resource.",
        "This site requires a modern browser.",
        "Error 503: service temporarily unavailable, try again later",
        "About us - Jobs - Advertise - Help",
    ),
    inline_tags=(
        ("<code>", "</code>"),
        ("<u>", "</u>"),
        ('<font color="red">', "</font>"),
        ('<a target="_blank" href="https://x.example/p">', "</a>"),
        ("<strong>", "</strong>"),
    ),
    block_tags=(
        ("<section>", "</section>"),
        ("<td>", "</td>"),
        ('<article id="main">', "</article>"),
    ),
    entities=(("'", "&#x27;"), ('"', "&#34;"), ("<", "&lt;"), (">", "&gt;")),
    garbage=("hex", "urlenc", "consonants"),
    scattered_repeats=True,
    mojibake_style="accents",
    dup_style="lines",
)

POOLS = {"dev": DEV, "heldout": HELDOUT}


@dataclass
class NoisyDoc:
    """One corpus row: what the cleaner sees, what it should return, and why."""

    text: str
    reference: str  # "" means the document should be dropped
    noise: str  # "clean" or one of NOISE_TYPES


def make_corpus(sources: list[str], pool: Pool, seed: int) -> list[NoisyDoc]:
    """Noisy documents for ``sources`` in a fixed order (same inputs, same corpus)."""
    rng = random.Random(seed)
    docs: list[NoisyDoc] = []
    kinds, weights = zip(*EDIT_WEIGHTS.items(), strict=True)
    for text in sources:
        kind = rng.choices(kinds, weights)[0]
        docs.append(_edit(text, kind, pool, rng))
    for kind, rate in EXTRA_RATES.items():
        for _ in range(round(rate * len(sources))):
            if kind == "near_duplicate":
                original = rng.randrange(len(docs))
                dup = NoisyDoc(_near_duplicate(docs[original].text, pool, rng), "", kind)
                docs.insert(rng.randint(original + 1, len(docs)), dup)
                continue
            if kind == "fragment":
                doc = NoisyDoc(_fragment(rng.choice(sources), rng), "", kind)
            elif kind == "garbage_page":
                lines = [_garbage_line(pool, rng) for _ in range(rng.randint(3, 12))]
                doc = NoisyDoc("\n".join(lines), "", kind)
            else:
                lines = rng.sample(pool.nav_lines + pool.page_lines, rng.randint(4, 9))
                doc = NoisyDoc("\n".join(lines), "", kind)
            docs.insert(rng.randint(0, len(docs)), doc)
    return docs


def _edit(text: str, kind: str, pool: Pool, rng: random.Random) -> NoisyDoc:
    if kind == "html":
        return NoisyDoc(_html(text, pool, rng), text, kind)
    if kind == "boilerplate":
        head = rng.sample(pool.nav_lines, rng.randint(1, 3))
        tail = rng.sample(pool.nav_lines, rng.randint(1, 3))
        return NoisyDoc("\n".join(head + [text] + tail), text, kind)
    if kind == "repeated":
        return NoisyDoc(_repeat_lines(text, pool, rng), text, kind)
    if kind == "mojibake":
        reference = _typographic(text, pool, rng)
        noisy = mojibake(reference)
        if noisy is not None and noisy != reference:
            return NoisyDoc(noisy, reference, kind)
        return NoisyDoc(text, text, "clean")  # text with characters cp1252 cannot carry
    if kind == "garbage_lines":
        lines = text.split("\n")
        for _ in range(rng.randint(1, 3)):
            lines.insert(rng.randint(0, len(lines)), _garbage_line(pool, rng))
        return NoisyDoc("\n".join(lines), text, kind)
    return NoisyDoc(text, text, "clean")


def _html(text: str, pool: Pool, rng: random.Random) -> str:
    for char, entity in pool.entities:
        text = text.replace(char, entity)
    words = re.split(r"( +)", text)
    for i in range(0, len(words), 2):
        if words[i] and "\n" not in words[i] and rng.random() < 0.12:
            open_tag, close_tag = rng.choice(pool.inline_tags)
            words[i] = f"{open_tag}{words[i]}{close_tag}"
    paragraphs = "".join(words).split("\n\n")
    out = []
    for para in paragraphs:
        open_tag, close_tag = rng.choice(pool.block_tags)
        if rng.random() < 0.3:
            para = para.replace("\n", "<br>\n", 1)
        out.append(f"{open_tag}\n{para}\n{close_tag}")
    return "\n".join(out)


def _repeat_lines(text: str, pool: Pool, rng: random.Random) -> str:
    lines = text.split("\n")
    candidates = [i for i, line in enumerate(lines) if len(line.split()) >= 3]
    if not candidates:
        return text + "\n" + text.split("\n")[0]
    for i in sorted(rng.sample(candidates, min(len(candidates), rng.randint(1, 2))), reverse=True):
        copies = [lines[i]] * rng.randint(1, 4)
        if pool.scattered_repeats:
            for copy in copies:
                lines.insert(rng.randint(i + 1, len(lines)), copy)
        else:
            lines[i + 1 : i + 1] = copies
    return "\n".join(lines)


def mojibake(text: str) -> str | None:
    """UTF-8 bytes decoded as cp1252, or None if that would not repair back exactly."""
    try:
        broken = text.encode("utf-8").decode("cp1252")
        if broken.encode("cp1252").decode("utf-8") != text:
            return None
    except UnicodeError:
        return None
    return broken


def _typographic(text: str, pool: Pool, rng: random.Random) -> str:
    """Text a UTF-8 writer would produce: curly quotes, dashes, accents (the reference)."""
    words = text.split(" ")
    for i, word in enumerate(words):
        if not word.isalpha() or rng.random() > 0.15:
            continue
        if pool.mojibake_style == "quotes":
            words[i] = f"\u2018{word}\u2019"
        else:
            j = rng.randrange(len(word))
            accented = {"e": "é", "u": "ü", "n": "ñ", "c": "ç", "a": "à", "o": "ö"}
            if word[j] in accented:
                words[i] = word[:j] + accented[word[j]] + word[j + 1 :]
    text = " ".join(words)
    if pool.mojibake_style == "quotes":
        return text.replace(" - ", " \u2014 ").replace("--", "\u2013")
    return text.replace("...", "\u2026").replace("\n- ", "\n\u2022 ")


def _fragment(text: str, rng: random.Random) -> str:
    words = text.split()
    size = rng.randint(4, 24)
    start = rng.randint(1, max(1, len(words) - size))
    return " ".join(words[start : start + size])


def _near_duplicate(text: str, pool: Pool, rng: random.Random) -> str:
    if pool.dup_style == "words":
        words = re.split(r"(\s+)", text)
        spots = [i for i in range(0, len(words), 2) if words[i].isalpha()]
        for i in rng.sample(spots, min(len(spots), rng.randint(0, 4))):
            words[i] = words[rng.choice(spots)]
        return "".join(words)
    lines = text.split("\n")
    if len(lines) > 3:
        del lines[rng.randrange(len(lines))]
    for _ in range(rng.randint(0, 3)):
        i = rng.randrange(len(lines))
        lines[i] = lines[i].upper() if rng.random() < 0.5 else lines[i].lower()
    return "\n".join(lines)


def _garbage_line(pool: Pool, rng: random.Random) -> str:
    kind = rng.choice(pool.garbage)
    n = rng.randint(30, 110)
    if kind == "base64":
        return base64.b64encode(rng.randbytes(n)).decode("ascii")
    if kind == "symbols":
        return "".join(rng.choice("#@!%^&*()[]{}<>~|=+-_/\\:;.,0123456789 ") for _ in range(n))
    if kind == "mash":
        keys = "asdfghjklqwertzuiopyxcvbnm"
        return " ".join(
            "".join(rng.choice(keys) for _ in range(rng.randint(2, 9))) for _ in range(n // 6)
        )
    if kind == "hex":
        return " ".join(f"{rng.randrange(256):02x}" for _ in range(n // 3))
    if kind == "urlenc":
        return "".join(
            f"%{rng.randrange(256):02X}" if rng.random() < 0.6 else rng.choice(string.ascii_letters)
            for _ in range(n)
        )
    consonants = "bcdfghjklmnpqrstvwxz"
    return " ".join(
        "".join(rng.choice(consonants) for _ in range(rng.randint(3, 8))) for _ in range(n // 7)
    )
