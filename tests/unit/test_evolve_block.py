"""EVOLVE-BLOCK markers: only the fenced code may change (diff, full rewrite, offline)."""

from __future__ import annotations

import asyncio

import pytest

from engine.agents.base import ResearchContext
from engine.agents.diff import DiffError, apply_blocks, parse_blocks
from engine.agents.evolve_block import MarkerError, frozen_violation, layout
from engine.agents.llm.prompts import Templates
from engine.agents.llm.researcher import Attempt, LLMResearcher, Unusable
from engine.agents.offline.researcher import OfflineResearcher, find_literals
from engine.store.records import DONE, Node

PROGRAM = """import math

LIMIT = 10
# EVOLVE-BLOCK-START
RATE = 0.5


def f(x):
    return RATE * x + 2.5
# EVOLVE-BLOCK-END


def run():
    return f(LIMIT) * 3.0
"""


def edit(search: str, replace: str) -> str:
    return f"<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n"


def test_layout_finds_blocks_and_frozen_segments():
    found = layout(PROGRAM)
    assert found is not None
    assert found.blocks == ((5, 9),)
    assert found.frozen[0][-1] == "# EVOLVE-BLOCK-START"
    assert found.frozen[1][0] == "# EVOLVE-BLOCK-END"
    assert found.editable(5) and not found.editable(4) and not found.editable(10)
    assert layout("x = 1\n") is None


@pytest.mark.parametrize(
    ("code", "words"),
    [
        ("# EVOLVE-BLOCK-START\nx = 1\n", "never closed"),
        ("x = 1\n# EVOLVE-BLOCK-END\n", "without"),
        ("# EVOLVE-BLOCK-START\n# EVOLVE-BLOCK-START\n# EVOLVE-BLOCK-END\n", "nest"),
    ],
)
def test_broken_markers_are_reported(code, words):
    with pytest.raises(MarkerError, match=words):
        layout(code)


def test_edit_inside_the_block_applies():
    new = apply_blocks(PROGRAM, parse_blocks(edit("RATE = 0.5", "RATE = 0.7")))
    assert "RATE = 0.7" in new and frozen_violation(PROGRAM, new) == ""


def test_frozen_context_may_be_quoted_unchanged():
    text = edit("# EVOLVE-BLOCK-START\nRATE = 0.5", "# EVOLVE-BLOCK-START\nRATE = 0.9")
    assert "RATE = 0.9" in apply_blocks(PROGRAM, parse_blocks(text))


@pytest.mark.parametrize(
    ("search", "replace", "words"),
    [
        ("LIMIT = 10", "LIMIT = 11", "'LIMIT = 10'"),
        ("    return f(LIMIT) * 3.0", "    return 99.0", "return f(LIMIT)"),
        ("# EVOLVE-BLOCK-END", "", "markers are broken"),
        ("import math", "import math\nimport os", "added to the frozen code"),
    ],
)
def test_edit_outside_the_block_is_refused_with_a_reason(search, replace, words):
    with pytest.raises(DiffError) as info:
        apply_blocks(PROGRAM, parse_blocks(edit(search, replace)))
    message = str(info.value)
    assert "block 1: refused" in message and words in message
    assert "EVOLVE-BLOCK-START" in message  # the rule itself, for the repair turn


def test_one_bad_block_is_named_among_good_ones():
    text = edit("RATE = 0.5", "RATE = 0.6") + edit("LIMIT = 10", "LIMIT = 12")
    with pytest.raises(DiffError, match="block 2: refused"):
        apply_blocks(PROGRAM, parse_blocks(text))


def test_programs_without_markers_are_unrestricted():
    plain = "LIMIT = 10\nRATE = 0.5\n"
    assert apply_blocks(plain, parse_blocks(edit("LIMIT = 10", "LIMIT = 11"))).startswith(
        "LIMIT = 11"
    )
    assert frozen_violation(plain, "anything") == ""


def test_full_rewrite_must_keep_frozen_text():
    good = PROGRAM.replace("RATE * x + 2.5", "RATE * x * x")
    bad = PROGRAM.replace("LIMIT = 10", "LIMIT = 1")
    accepted = LLMResearcher._code(None, f"<code>\n{good}</code>", PROGRAM, Attempt("full"))
    assert accepted == good.rstrip("\n")
    with pytest.raises(Unusable, match="refused: the frozen line 'LIMIT = 10'"):
        LLMResearcher._code(None, f"<code>\n{bad}</code>", PROGRAM, Attempt("full"))
    gone = PROGRAM.replace("# EVOLVE-BLOCK-END\n", "")
    with pytest.raises(Unusable, match="markers are broken"):
        LLMResearcher._code(None, f"<code>\n{gone}</code>", PROGRAM, Attempt("full"))


def test_offline_literals_are_only_those_inside_blocks():
    literals, _ = find_literals(PROGRAM)
    assert [lit.text for lit in literals] == ["0.5", "2.5"]
    plain, _ = find_literals(
        PROGRAM.replace("# EVOLVE-BLOCK-START\n", "").replace("# EVOLVE-BLOCK-END\n", "")
    )
    assert [lit.text for lit in plain] == ["10", "0.5", "2.5", "3.0"]


def test_offline_researcher_never_changes_frozen_text():
    parent = Node(id=1, step=0, code=PROGRAM, status=DONE, score=1.0)
    researcher = OfflineResearcher(seed=3)
    for step in range(30):
        ctx = ResearchContext(
            task_name="t",
            task_description="d",
            maximize=True,
            parent=parent,
            context=[],
            knowledge=[],
            step=step + 1,
            node_id=step + 2,
        )
        proposal = asyncio.run(researcher.propose(ctx))
        assert proposal.code != PROGRAM
        assert frozen_violation(PROGRAM, proposal.code) == ""


def test_prompt_states_the_rule_only_for_marked_programs():
    templates = Templates()
    parent = {
        "id": 1,
        "name": "p",
        "step": 0,
        "score_text": "1",
        "motivation": "",
        "metrics": {},
        "analysis": "",
        "logs": "",
        "lang": "python",
        "code": PROGRAM,
    }
    common = {
        "task": {"name": "t", "description": "d", "maximize": True},
        "parent": parent,
        "context": [],
        "knowledge": [],
        "mode": "diff",
        "use_analyzer": True,
    }
    marked = templates.render("researcher.j2", evolve_blocks=True, **common)
    plain = templates.render("researcher.j2", evolve_blocks=False, **common)
    assert "Only the code between the `# EVOLVE-BLOCK-START`" in marked
    assert "EVOLVE-BLOCK-START`" not in plain
