"""The offline Researcher (literal mutation) and Analyzer (rule-based report)."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path

import pytest

from engine.agents.base import AgentError, AnalysisInput, ResearchContext
from engine.agents.offline.analyzer import OfflineAnalyzer
from engine.agents.offline.elite_points import fit_points, spread_points
from engine.agents.offline.researcher import OfflineResearcher, find_literals, format_float
from engine.store.records import DONE, FAILED, Node

INITIAL = (
    Path(__file__).resolve().parents[2] / "domains" / "circle_packing" / "initial.py"
).read_text()

PROGRAM = '''"""Docstring with 1.5 and 42 in it."""
import numpy as np

SCALE = 0.3  # a comment with 7.25 in it
COUNT = 16
OFFSET = 1e-3


def f(x):
    label = "radius 0.5"
    return SCALE * x ** 2 + OFFSET * np.arange(COUNT)[0] + 0x10 - 2j.imag
'''


def node(code: str, node_id: int, score: float | None = 1.0, **kw) -> Node:
    status = kw.pop("status", DONE if score is not None else FAILED)
    return Node(step=node_id, code=code, id=node_id, score=score, status=status, **kw)


def propose(researcher: OfflineResearcher, parent: Node, *others: Node, maximize=True):
    ctx = ResearchContext(
        task_name="t",
        task_description="d",
        parent=parent,
        context=[parent, *others],
        knowledge=[],
        step=99,
        node_id=99,
        maximize=maximize,
    )
    return asyncio.run(researcher.propose(ctx))


def masked(code: str) -> str:
    """The syntax tree with every real number masked, a negated one included (a literal may
    change sign); strings, complex numbers and everything else kept verbatim."""

    class Mask(ast.NodeTransformer):
        def visit_UnaryOp(self, op: ast.UnaryOp) -> ast.AST:
            if isinstance(op.op, ast.USub) and _real(op.operand):
                return ast.Name("NUMBER")
            return self.generic_visit(op)

        def visit_Constant(self, const: ast.Constant) -> ast.AST:
            return ast.Name("NUMBER") if _real(const) else const

    return ast.dump(Mask().visit(ast.parse(code)))


def _real(node: ast.AST) -> bool:
    value = getattr(node, "value", None)
    return isinstance(node, ast.Constant) and type(value) in (int, float)


def non_literal_text(code: str) -> str:
    """The source with each literal replaced by '#': must be byte-identical after a move."""
    out, pos = [], 0
    for lit in find_literals(code)[0]:
        out += [code[pos : lit.start], "#"]
        pos = lit.end
    return "".join(out) + code[pos:]


@pytest.mark.parametrize("code", [PROGRAM, INITIAL])
def test_mutation_only_changes_numeric_literals(code: str) -> None:
    researcher = OfflineResearcher(seed=1)
    parent = node(code, 3)
    for _ in range(200):
        proposal = propose(researcher, parent)
        assert proposal.code != code
        assert masked(proposal.code) == masked(code)
        assert non_literal_text(proposal.code) == non_literal_text(code)
        compile(proposal.code, "candidate", "exec")
        # Docstrings, comments, strings and the imaginary literal are never touched.
        for kept in ("1.5 and 42", "7.25", '"radius 0.5"', "2j"):
            assert (kept in proposal.code) == (kept in code)


def test_motivation_and_metadata_name_each_change() -> None:
    researcher = OfflineResearcher(seed=2)
    parent = node(INITIAL, 7)
    for _ in range(50):
        proposal = propose(researcher, parent)
        meta = proposal.metadata
        # Alone, the parent is the fittest of its context: a structural probe may come.
        assert meta["operator"] in ("mutate", "probe") and meta["source_ids"] == [7]
        assert meta["changes"] and proposal.name
        lines = proposal.code.splitlines()
        for change in meta["changes"]:
            assert f"line {change['line']} `{change['old']}` -> `{change['new']}`" in (
                proposal.motivation
            )
            assert change["new"] in lines[change["line"] - 1]
            assert change["old"] != change["new"]
        assert "#7" in proposal.motivation


def test_same_seed_same_proposals() -> None:
    parent = node(INITIAL, 1)
    a, b = OfflineResearcher(seed=5), OfflineResearcher(seed=5)
    first = [propose(a, parent).code for _ in range(10)]
    assert first == [propose(b, parent).code for _ in range(10)]
    assert first != [propose(OfflineResearcher(seed=6), parent).code for _ in range(10)]


def test_a_steps_proposal_does_not_depend_on_other_steps_proposals() -> None:
    """Draws are seeded by (seed, step, attempt): worker timing cannot reorder them."""

    def at(researcher: OfflineResearcher, step: int) -> str:
        ctx = ResearchContext("t", "d", node(INITIAL, 1), [], [], step=step, node_id=step)
        return asyncio.run(researcher.propose(ctx)).code

    a, b = OfflineResearcher(seed=5), OfflineResearcher(seed=5)
    in_order = [at(a, step) for step in (1, 2, 3)]
    assert [at(b, step) for step in (3, 1, 2)] == [in_order[2], in_order[0], in_order[1]]
    assert at(a, 2) != in_order[1]  # a retry of a step (novelty refusal) draws afresh
    assert len(set(in_order)) == 3


def test_new_float_literals_stay_floats() -> None:
    assert format_float(3.0) == "3.0" and format_float(0.30000001) == "0.3"
    assert isinstance(eval(format_float(1e-12)), float)
    researcher = OfflineResearcher(seed=3)
    parent = node("A = 1.0\nB = 2.0\nC = 0.0\nN = 3\n", 1)
    for _ in range(100):
        *floats, count = find_literals(propose(researcher, parent).code)[0]
        assert all(isinstance(eval(lit.text), float) for lit in floats)
        assert isinstance(eval(count.text), int) and eval(count.text) >= 0  # a count stays >= 0


def test_a_small_constant_can_reach_the_scale_of_its_siblings() -> None:
    """Additive steps are sized on the program's common scale as well as the literal's own.

    A margin of 0.01 among coordinates near 0.5 must not need a dozen 30 % steps to reach
    0.05; tolerances (below 1e-6) keep their own magnitude.
    """
    code = "A = 0.5\nB = 0.4\nC = 0.6\nM = 0.01\nTOL = 1e-09\n"
    researcher = OfflineResearcher(seed=4)
    parent = node(code, 1)
    margins, tolerances = [], []
    for _ in range(600):
        texts = [lit.text for lit in find_literals(propose(researcher, parent).code)[0]]
        margins.append(abs(float(texts[3])))
        tolerances.append(abs(float(texts[4])))
    jumps = [m for m in margins if m >= 0.05]
    assert len(jumps) >= 10  # log-normal steps alone (sigma 0.25 / 0.8) almost never do this
    assert max(tolerances) < 1e-6


def test_crossover_takes_each_literal_from_one_of_the_two() -> None:
    parent = node("A = 1.0\nB = 2.0\nC = 3.0\nD = 4.0\nN = 5\n", 1, score=1.0)
    other = node("A = 1.5\nB = 2.5\nC = 3.5\nD = 4.5\nN = 6\n", 2, score=2.0)
    seen = 0
    for seed in range(60):
        proposal = propose(OfflineResearcher(seed=seed), parent, other)
        if proposal.metadata["operator"] != "crossover":
            continue
        seen += 1
        assert proposal.metadata["source_ids"] == [1, 2]
        mine = [lit.text for lit in find_literals(parent.code)[0]]
        theirs = [lit.text for lit in find_literals(other.code)[0]]
        child = [lit.text for lit in find_literals(proposal.code)[0]]
        assert all(c in (m, t) for c, m, t in zip(child, mine, theirs, strict=True))
        assert child != mine and child != theirs
        assert "#2" in proposal.motivation
    assert seen >= 5


def test_no_crossover_with_a_different_skeleton() -> None:
    parent = node("A = 1.0\nB = 2.0\n", 1, score=1.0)
    other = node("A = 1.5\nB = 2.5 + 0.5\n", 2, score=2.0)
    for seed in range(30):
        assert propose(OfflineResearcher(seed=seed), parent, other).metadata["operator"] == "mutate"


def test_a_program_without_numbers_is_an_agent_error() -> None:
    with pytest.raises(AgentError, match="no numeric literal"):
        propose(OfflineResearcher(seed=0), node('def f(x):\n    return x + "1.5"\n', 4))


def _child_of(parent_code: str, base_score: float, score: float) -> Node:
    """Node #2: the parent's ``X = 1.0`` moved to 1.2, with its base #1 at ``base_score``."""
    code = parent_code.replace("X = 1.0", "X = 1.2")
    moves = [{"line": 1, "old": "1.0", "new": "1.2"}]
    meta = {"base_id": 1, "base_score": base_score, "moves": moves, "changes": moves}
    return node(code, 2, score=score, metadata=meta)


def test_after_a_gain_the_same_move_is_repeated_sometimes() -> None:
    parent = _child_of("X = 1.0\nY = 7.0\n", base_score=1.0, score=2.0)
    repeated = 0
    for seed in range(40):
        proposal = propose(OfflineResearcher(seed=seed), parent)
        if "repeating" in proposal.motivation:
            repeated += 1
            x = float(find_literals(proposal.code)[0][0].text)
            assert x > 1.2  # further in the direction that paid off
            assert proposal.metadata["base_id"] == 2 and proposal.metadata["base_score"] == 2.0
    assert 5 <= repeated <= 35


def test_after_a_loss_the_move_is_undone() -> None:
    parent = _child_of("X = 1.0\nY = 7.0\n", base_score=2.0, score=1.0)
    for seed in range(40):
        proposal = propose(OfflineResearcher(seed=seed), parent)
        x = float(find_literals(proposal.code)[0][0].text)
        assert x != 1.2 and "undoing" in proposal.motivation
        assert proposal.metadata["base_id"] == 1 and proposal.metadata["base_score"] == 2.0
        if "opposite" in proposal.motivation:
            assert x < 1.0
        # The moves are measured from the base (#1), the changes from the parent (#2).
        assert all(m["old"] != "1.2" for m in proposal.metadata["moves"])
        first = proposal.metadata["changes"][0]
        assert first["line"] == 1 and first["old"] == "1.2"


def test_minimize_flips_gain_and_loss() -> None:
    parent = _child_of("X = 1.0\nY = 7.0\n", base_score=1.0, score=2.0)  # worse when minimizing
    for seed in range(20):
        proposal = propose(OfflineResearcher(seed=seed), parent, maximize=False)
        assert "repeating" not in proposal.motivation


# -- analyzer ---------------------------------------------------------------------------


def analyze(node_: Node, parent: Node | None, best: Node | None, maximize=True):
    inp = AnalysisInput("circle_packing", "d", node_, parent, best, maximize)
    return asyncio.run(OfflineAnalyzer().analyze(inp))


def _evaluated(node_id: int, score: float | None, sum_radii: float, **kw) -> Node:
    results = {"metrics": {"sum_radii": sum_radii, "min_gap": 0.0, "n_circles": 26}}
    return node("X = 1\n", node_id, score=score, results=results, **kw)


def test_analyzer_reports_deltas_and_the_changes_that_helped() -> None:
    parent = _evaluated(3, 1.0, 1.0)
    best = _evaluated(5, 1.2, 1.2)
    changes = [{"line": 14, "old": "0.3", "new": "0.27"}]
    child = _evaluated(8, 1.041, 1.041, metadata={"changes": changes})
    report = analyze(child, parent, best)
    text = report.analysis
    assert "+0.041 vs parent #3" in text and "better" in text
    assert "-0.159 vs #5" in text and "worse" in text
    assert "sum_radii 1 -> 1.041" in text
    assert "line 14 `0.3`->`0.27`" in text and "keep exploring" in text
    assert report.knowledge_proposals == []  # below the best context node: nothing to keep
    assert len(text.splitlines()) <= 6


def _moved(node_id: int, score: float | None, old: str, new: str, line: int = 2, **kw) -> Node:
    changes = kw.pop("changes", [{"line": line, "old": old, "new": new}])
    return node("X = 1\nR = 0.3\n", node_id, score=score, metadata={"changes": changes}, **kw)


def _run(analyzer: OfflineAnalyzer, parent: Node, child: Node, maximize=True) -> list[dict]:
    inp = AnalysisInput("circle_packing", "d", child, parent, parent, maximize)
    return asyncio.run(analyzer.analyze(inp)).knowledge_proposals


def test_one_lucky_node_is_not_a_lesson() -> None:
    analyzer = OfflineAnalyzer()
    parent = node("X = 1\nR = 0.3\n", 1, score=1.0)
    assert _run(analyzer, parent, _moved(2, 1.5, "0.3", "0.4")) == []  # +50 %, one node
    assert _run(analyzer, parent, _moved(3, 1.4, "0.3", "0.35")) == []  # two nodes


def test_a_move_that_helps_over_several_nodes_is_proposed_once_with_its_numbers() -> None:
    analyzer = OfflineAnalyzer()
    parent = node("X = 1\nR = 0.3\n", 1, score=1.0)
    assert _run(analyzer, parent, _moved(2, 1.05, "0.3", "0.33")) == []
    both = [{"line": 2, "old": "0.3", "new": "0.36"}, {"line": 1, "old": "1", "new": "1.5"}]
    assert _run(analyzer, parent, _moved(3, 0.99, "0.3", "0.36", changes=both)) == []
    (item,) = _run(analyzer, parent, _moved(4, 1.07, "0.3", "0.31"))
    assert item["title"] == "Raising `R = …` (line 2) helped"  # the same as the numbers grow
    assert item["tags"] == "circle_packing, run-derived, claim:line2-raising-helped"
    content = item["content"]
    assert content.startswith("Raising `R = …` (line 2) changed the score by")
    assert "+0.03667 on average against the parent over 3 nodes" in content  # (5 - 1 + 7) / 3
    assert "(2 of 3 improved, 2 moved it alone)" in content
    assert "largest gain was +0.07 at #4 (`0.3` -> `0.31`)" in content
    # Said once: more evidence for the same move proposes nothing new.
    assert _run(analyzer, parent, _moved(5, 1.02, "0.3", "0.32")) == []


def test_a_move_that_hurts_is_proposed_as_one_to_avoid() -> None:
    analyzer = OfflineAnalyzer()
    parent = node("X = 1\nR = 0.3\n", 1, score=1.0)
    _run(analyzer, parent, _moved(2, 0.9, "0.3", "0.2"))
    _run(analyzer, parent, _moved(3, None, "0.3", "0.1", error="negative radius"))
    _run(analyzer, parent, _moved(4, 0.8, "0.3", "0.25"))
    (item,) = _run(analyzer, parent, _moved(5, 0.95, "0.3", "0.28"))
    assert item["title"] == "Lowering `R = …` (line 2) hurt"
    assert "over 3 nodes (0 of 3 improved" in item["content"]
    assert "worst loss was -0.2 at #4 (`0.3` -> `0.25`)" in item["content"]
    assert "broke the program in 1 node(s)" in item["content"]


@pytest.mark.parametrize("maximize", [True, False])
def test_mixed_or_tiny_effects_propose_nothing(maximize: bool) -> None:
    analyzer = OfflineAnalyzer()
    parent = node("X = 1\nR = 0.3\n", 1, score=1.0)
    mixed = [1.1, 0.95, 0.95, 1.1]  # mean 0 after three, then half better, half worse
    for i, score in enumerate(mixed):
        assert _run(analyzer, parent, _moved(2 + i, score, "0.3", "0.4"), maximize) == []
    for i in range(4):  # consistent, but 1e-5 of a score near 1 is noise
        child = _moved(10 + i, 1.0 + 1e-5, "1", "2", line=1)
        assert _run(analyzer, parent, child, maximize) == []


def test_minimize_counts_a_lower_score_as_the_gain() -> None:
    analyzer = OfflineAnalyzer()
    parent = node("X = 1\nR = 0.3\n", 1, score=1.0)
    for i, score in enumerate([0.9, 0.95, 0.8]):
        found = _run(analyzer, parent, _moved(2 + i, score, "0.3", "0.4"), maximize=False)
    (item,) = found
    assert item["title"] == "Raising `R = …` (line 2) helped"
    assert "+0.1167 on average" in item["content"]


def test_analyzer_explains_failures() -> None:
    parent = _evaluated(3, 1.0, 1.0)
    changes = [{"line": 35, "old": "0.99", "new": "1.2"}]
    failed = node(
        "X = 1\n",
        11,
        score=None,
        error="invalid: circle 9 has negative radius -0.2",
        metadata={"changes": changes},
    )
    report = analyze(failed, parent, parent)
    assert "Failed" in report.analysis and "negative radius -0.2" in report.analysis
    assert "line 35 `0.99`->`1.2`" in report.analysis
    assert report.knowledge_proposals == []


def test_analyzer_respects_minimize() -> None:
    parent = _evaluated(3, 1.0, 1.0)
    child = _evaluated(4, 0.9, 0.9, metadata={"changes": [{"line": 1, "old": "2", "new": "1"}]})
    text = analyze(child, parent, parent, maximize=False).analysis
    assert "-0.1 vs parent #3" in text and "better" in text and "keep exploring" in text
    text = analyze(child, parent, parent, maximize=True).analysis
    assert "worse" in text and "opposite direction" in text


def test_a_probe_moves_one_count_everywhere_and_nothing_else() -> None:
    """From a parent fittest of its context: one int above 2, +-1, in all its occurrences
    (unnamed counts, as circle packing's rings were written before they were named)."""
    code = (
        "import numpy as np\n\n\ndef f():\n    n = 26\n    middle = 0.5\n"
        "    c = np.zeros((n, 2))\n"
        "    for i in range(8):\n        c[i + 1] = [middle + 0.3 * np.cos(np.pi * i / 8), 0]\n"
        "    for i in range(16):\n        c[i + 9] = [middle + 0.7 * np.cos(np.pi * i / 16), 0]\n"
        "    return c\n"
    )
    researcher = OfflineResearcher(seed=4)
    parent = node(code, 7)
    old = [lit.text for lit in find_literals(code)[0]]
    probes = [
        p
        for p in (propose(researcher, parent) for _ in range(150))
        if p.metadata["operator"] == "probe"
    ]
    assert 15 <= len(probes) <= 50  # PROBE_RATE 0.2
    seen = set()
    for proposal in probes:
        new = [lit.text for lit in find_literals(proposal.code)[0]]
        moved = {k for k in range(len(old)) if old[k] != new[k]}
        value = {old[k] for k in moved}
        assert len(value) == 1 and int(value.pop()) > 2
        assert moved == {k for k in range(len(old)) if old[k] == old[next(iter(moved))]}
        assert {abs(int(new[k]) - int(old[k])) for k in moved} == {1}
        seen.add(old[next(iter(moved))])
    assert seen == {"26", "8", "16", "9"}


def test_a_named_int_is_its_own_parameter_while_unnamed_equal_ints_move_as_one() -> None:
    """``terms = 3`` and ``stride = 3`` are two settings that happen to start alike (the
    series_fit task: tied, they only ever moved along the diagonal); ``range(16)`` and
    ``/ 16`` are one count. Probes and mutations move a named int alone, the others
    together."""
    code = (
        "terms = 3\nstride = 3\nscale = 0.5\n"
        "def f(x):\n    return [x * i / 16 for i in range(16)] + [terms, stride, scale]\n"
    )
    old = [lit.text for lit in find_literals(code)[0]]
    named = {k for k in range(2)}  # terms, stride
    researcher = OfflineResearcher(seed=3)
    parent = node(code, 7)
    counts = {k for k in range(len(old)) if old[k] == "16"}
    operators: set[str] = set()
    together = alone = named_moves = same = 0
    for _ in range(300):
        proposal = propose(researcher, parent)
        new = [lit.text for lit in find_literals(proposal.code)[0]]
        moved = {k for k in range(len(old)) if old[k] != new[k]}
        operator = proposal.metadata["operator"]
        if operator not in ("probe", "mutate") or not moved:
            continue
        operators.add(operator)
        if operator == "probe":  # a count everywhere it is written, or named settings
            assert not (moved & counts) or counts <= moved, (old, new)
            assert not (moved & named and moved & counts)
        elif moved & named:
            named_moves += 1
            same += named <= moved and new[0] == new[1]
        elif moved & counts:  # mostly (INT_TIE_RATE)
            together += counts <= moved
            alone += not counts <= moved
    assert operators == {"probe", "mutate"}
    assert together > 2 * alone > 0
    assert 10 * same < named_moves  # only when two independent moves happen to agree


def test_a_probe_sometimes_moves_two_named_settings_and_never_more() -> None:
    """With two named int settings a probe moves one of them or (PAIR_RATE) both, each by
    one; with one named setting (circle packing's ``n = 26``) it never pairs it with a
    count."""
    code = "terms = 3\nstride = 4\nscale = 0.5\nN = [terms, stride, scale, range(16)]\n"
    old = [lit.text for lit in find_literals(code)[0]]
    researcher = OfflineResearcher(seed=8)
    parent = node(code, 7)
    pairs = singles = 0
    for _ in range(400):
        proposal = propose(researcher, parent)
        if proposal.metadata["operator"] != "probe":
            continue
        new = [lit.text for lit in find_literals(proposal.code)[0]]
        moved = {k for k in range(len(old)) if old[k] != new[k]}
        assert {abs(int(new[k]) - int(old[k])) for k in moved} == {1}
        if moved == {0, 1}:
            pairs += 1
        else:
            singles += 1
            assert moved in ({0}, {1}, {3}), moved
    assert pairs > 0 and singles > 2 * pairs
    one = "n = 26\nscale = 0.5\nN = [n, scale, range(16), range(8)]\n"
    old = [lit.text for lit in find_literals(one)[0]]
    for _ in range(200):
        proposal = propose(researcher, node(one, 8))
        if proposal.metadata["operator"] == "probe":
            new = [lit.text for lit in find_literals(proposal.code)[0]]
            assert sum(a != b for a, b in zip(old, new, strict=True)) == 1


def test_no_probe_from_a_parent_that_its_context_beats() -> None:
    researcher = OfflineResearcher(seed=4)
    parent, fitter = node(INITIAL, 7, score=1.0), node(INITIAL.replace("0.3", "0.31"), 8, 2.0)
    for _ in range(100):
        assert propose(researcher, parent, fitter).metadata["operator"] != "probe"


def test_model_moves_come_from_the_elite_and_touch_floats_only() -> None:
    researcher = OfflineResearcher(seed=5)
    parent = node(INITIAL, 7, score=1.0)
    elite = [
        node(INITIAL.replace("0.3", f"0.3{i}").replace("0.7", f"0.6{i}"), 10 + i, 1.5 - i / 10)
        for i in range(1, 5)
    ] + [node(INITIAL.replace("range(ring)", "range(ring + 0)"), 20, 3.0)]  # other skeleton

    def run(with_elite: bool) -> list:
        out = []
        for step in range(100):
            ctx = ResearchContext(
                "t",
                "d",
                parent,
                [parent],
                [],
                step=step,
                node_id=step,
                elite=elite if with_elite else [],
            )
            out.append(asyncio.run(researcher.propose(ctx)))
        return out

    models = [p for p in run(True) if p.metadata["operator"] == "model"]
    assert 15 <= len(models) <= 45  # MODEL_RATE 0.3
    for proposal in models:
        assert proposal.metadata["changes"]
        # Only the floats that differ among the parent and its four same-skeleton nodes.
        assert {c["old"] for c in proposal.metadata["changes"]} <= {"0.3", "0.7"}
        assert "from 5 fit nodes" in proposal.motivation
    assert not [p for p in run(False) if p.metadata["operator"] == "model"]


def test_an_unscored_parent_gets_no_model_move() -> None:
    researcher = OfflineResearcher(seed=5)
    parent = node(INITIAL, 7, score=None)
    elite = [node(INITIAL.replace("0.3", f"0.3{i}"), 10 + i, 1.5 - i / 10) for i in range(1, 6)]
    for step in range(60):
        ctx = ResearchContext("t", "d", parent, [parent], [], step=step, node_id=step, elite=elite)
        assert asyncio.run(researcher.propose(ctx)).metadata["operator"] != "model"


def test_the_surrogate_learns_only_from_nodes_with_the_parents_ints() -> None:
    """A count change moves the whole landscape: such nodes shape the model move's spread
    until the parent's own ints have OWN_POINTS nodes, and never the surrogate's fit."""
    parent = node(INITIAL, 7, score=1.0)
    literals, skeleton = find_literals(parent.code)
    other = [
        node(
            INITIAL.replace("0.3", f"0.3{i}").replace("outer_ring = 16", "outer_ring = 17"),
            20 + i,
            2.0,
        )
        for i in range(1, 4)
    ]

    def points(n_same: int) -> tuple[list, list]:
        same = [
            node(INITIAL.replace("0.3", f"0.3{i}"), 30 + i, 1.5 - i / 100)
            for i in range(1, n_same + 1)
        ]
        ctx = ResearchContext(
            "t", "d", parent, [parent], [], step=1, node_id=1, elite=[*other, *same]
        )
        fit = fit_points(ctx, literals, skeleton)
        return fit, spread_points(ctx, literals, skeleton, fit)

    fit, spread = points(4)
    assert [score for score, _ in fit] == [1.0, 1.49, 1.48, 1.47, 1.46]  # parent, then same
    assert len(spread) == 8  # too few of its own: the parent and all same-skeleton nodes
    fit, spread = points(12)
    assert len(fit) == 13 and 2.0 not in [score for score, _ in fit]
    assert spread == fit[:11]  # enough of its own: the parent and its 10 fittest
