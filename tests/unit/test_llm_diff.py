"""Reading model answers: SEARCH/REPLACE blocks (exact matching) and tagged sections."""

from __future__ import annotations

import pytest

from engine.agents.diff import (
    DiffError,
    apply_blocks,
    extract_all,
    extract_tag,
    has_open_tag,
    parse_blocks,
    strip_fences,
)
from engine.agents.llm.analyzer import read_analysis, read_knowledge
from engine.agents.llm.judge import parse_rating

PROGRAM = "import math\n\n\ndef f(x):\n    y = x * 0.5\n    return y + 1\n\n\nR = 0.7\n"


def block(old: str, new: str) -> str:
    return f"<<<<<<< SEARCH\n{old}\n=======\n{new}\n>>>>>>> REPLACE\n"


def test_exact_match_replaces_whole_lines_only() -> None:
    code = apply_blocks(PROGRAM, parse_blocks(block("R = 0.7", "R = 0.55")))
    assert code == PROGRAM.replace("R = 0.7", "R = 0.55")
    # A fragment of a line is not a match: edits are line-exact.
    with pytest.raises(DiffError, match="block 1: the SEARCH text does not match"):
        apply_blocks(PROGRAM, parse_blocks(block("0.7", "0.55")))


def test_no_match_names_the_block_and_the_closest_lines() -> None:
    text = block("R = 0.7", "R = 0.6") + block("    y = x * 0.25", "    y = x * 0.3")
    with pytest.raises(DiffError) as err:
        apply_blocks(PROGRAM, parse_blocks(text))
    message = str(err.value)
    assert "block 2" in message and "block 1" not in message
    assert "Closest lines" in message and "    5|     y = x * 0.5" in message


def test_whitespace_only_difference_is_reported_not_guessed() -> None:
    with pytest.raises(DiffError, match="differ only in indentation"):
        apply_blocks(PROGRAM, parse_blocks(block("  y = x * 0.5", "  y = x")))


def test_multiple_blocks_apply_in_order() -> None:
    text = block("R = 0.7", "R = 0.9") + "some prose\n" + block("R = 0.9", "R = 1.1")
    text += block("    return y + 1", "    return y + 2")
    blocks = parse_blocks(text)
    assert [b.number for b in blocks] == [1, 2, 3]
    code = apply_blocks(PROGRAM, blocks)
    assert "R = 1.1" in code and "return y + 2" in code


def test_ambiguous_search_is_an_error() -> None:
    code = "a = 1\nb = 2\na = 1\n"
    with pytest.raises(DiffError, match="matches 2 places"):
        apply_blocks(code, parse_blocks(block("a = 1", "a = 3")))


def test_fences_around_and_inside_blocks_are_tolerated() -> None:
    around = "Here:\n```python\n" + block("R = 0.7", "R = 0.5") + "```\n"
    assert "R = 0.5" in apply_blocks(PROGRAM, parse_blocks(around))
    inside = "<<<<<<< SEARCH\n```python\nR = 0.7\n```\n=======\n```python\nR = 0.4\n```\n"
    inside += ">>>>>>> REPLACE\n"
    assert "R = 0.4\n" in apply_blocks(PROGRAM, parse_blocks(inside))


def test_multiline_block_and_deletion() -> None:
    text = block("def f(x):\n    y = x * 0.5\n    return y + 1", "def f(x):\n    return x")
    code = apply_blocks(PROGRAM, parse_blocks(text))
    assert "def f(x):\n    return x\n" in code
    deleted = apply_blocks(PROGRAM, parse_blocks(block("import math", "")))
    assert "import math" not in deleted


def test_incomplete_or_missing_blocks() -> None:
    with pytest.raises(DiffError, match="block 1 is incomplete"):
        parse_blocks("<<<<<<< SEARCH\nR = 0.7\n=======\nR = 0.")
    assert parse_blocks("no blocks here") == []
    with pytest.raises(DiffError, match="no SEARCH/REPLACE blocks"):
        apply_blocks(PROGRAM, [])
    with pytest.raises(DiffError, match="SEARCH section is empty"):
        apply_blocks(PROGRAM, parse_blocks(block("", "x = 1")))


def test_crlf_answers_are_read() -> None:
    text = block("R = 0.7", "R = 0.3").replace("\n", "\r\n")
    assert "R = 0.3\n" in apply_blocks(PROGRAM, parse_blocks(text))


def test_tags_and_fences() -> None:
    text = "<name>x</name>\n<code>\n```python\nprint(1)\n```\n</code>"
    assert extract_tag(text, "name") == "x"
    assert extract_tag(text, "code") == "print(1)"
    assert extract_tag(text, "motivation") is None
    assert strip_fences("~~~\na\n~~~") == "a"
    assert has_open_tag("<code>\nprint(1", "code")
    assert not has_open_tag(text, "code")
    assert extract_all("<k>a</k> <k>b</k>", "k") == ["a", "b"]


def test_analyzer_output_parsing() -> None:
    text = (
        "<analysis>Score rose.</analysis>"
        "<knowledge><title>T1</title><content>C1</content></knowledge>"
        "<knowledge><title>no content</title></knowledge>"
    )
    assert read_analysis(text) == "Score rose."
    assert read_knowledge(text) == [{"title": "T1", "content": "C1"}]
    assert read_analysis("<analysis>cut off here") == "cut off here"
    assert read_analysis("untagged <knowledge>x</knowledge>") == "untagged"


def test_judge_rating_parsing() -> None:
    assert parse_rating("thinking...\n<score>0.75</score>") == 0.75
    assert parse_rating("0.2") == 0.2
    assert parse_rating("<score>7</score>") is None
    assert parse_rating("great program") is None
