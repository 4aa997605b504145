"""The offline analyzer's breakdown hook, as the data curation evaluator feeds it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from engine.agents.base import AnalysisInput
from engine.agents.llm.prompts import Templates, analysis_variables, node_view
from engine.agents.offline.analyzer import OfflineAnalyzer
from engine.store.records import DONE, Node

BREAKDOWN = {
    "clean": {"docs": 10, "dropped": 0.0, "kept": 0.99, "removed": None},
    "html": {"docs": 5, "dropped": 0.0, "kept": 0.8, "removed": 0.04},
    "mojibake": {"docs": 5, "dropped": 0.0, "kept": 0.9, "removed": 0.1},
    "near_duplicate": {"docs": 3, "dropped": 0.3, "kept": None, "removed": 0.3},
    "repeated": {"docs": 4, "dropped": 0.0, "kept": 0.98, "removed": 0.95},
}
SAMPLES = [
    {
        "doc": 3,
        "why": "worst",
        "noise": "html",
        "original": "<b>x</b> y",
        "cleaned": "<b>x</b> y",
        "lost_words": ["x"],
        "leftover_words": ["<b>x</b>"],
    }
]


def node(i: int, score: float, breakdown: dict | None = BREAKDOWN) -> Node:
    results = {"score": score, "metrics": {"f1": score}}
    if breakdown is not None:
        results |= {"breakdown": breakdown, "samples": SAMPLES}
    return Node(step=i, id=i, score=score, status=DONE, results=results, code="x = 1\n")


def analyze(analyzer: OfflineAnalyzer, n: Node, parent: Node | None = None):  # noqa: ANN201
    inp = AnalysisInput("data_curation", "clean documents", n, parent, parent)
    return asyncio.run(analyzer.analyze(inp))


def test_breakdown_reported_worst_first_and_uncovered_named() -> None:
    report = analyze(OfflineAnalyzer(), node(2, 30.0), node(1, 20.0))
    line = next(x for x in report.analysis.splitlines() if x.startswith("- Per type"))
    assert line.index("html removed 0.04") < line.index("mojibake") < line.index("repeated")
    assert "clean" not in line  # no removal share to report
    assert "Uncovered issues (under 50% removed): html, mojibake, near_duplicate" in report.analysis


def test_uncovered_types_proposed_once_at_most_two_per_report() -> None:
    analyzer = OfflineAnalyzer()
    first = analyze(analyzer, node(2, 30.0))
    titles = [p["title"] for p in first.knowledge_proposals]
    assert titles == [
        "data_curation: uncovered issue type 'html'",
        "data_curation: uncovered issue type 'mojibake'",
    ]
    assert "<b>x</b>" in first.knowledge_proposals[0]["content"]
    second = analyze(analyzer, node(3, 31.0))
    assert [p["title"] for p in second.knowledge_proposals] == [
        "data_curation: uncovered issue type 'near_duplicate'"
    ]
    assert analyze(analyzer, node(4, 32.0)).knowledge_proposals == []


def test_tasks_without_breakdown_unchanged() -> None:
    report = analyze(OfflineAnalyzer(), node(2, 3.0, breakdown=None), node(1, 2.0))
    assert "Per type" not in report.analysis and report.knowledge_proposals == []


def test_task_prompt_override_renders() -> None:
    prompts = Path(__file__).resolve().parents[2] / "domains" / "data_curation" / "prompts"
    inp = AnalysisInput("data_curation", "clean documents", node(2, 30.0), None, None)
    variables = analysis_variables(inp, lambda n: None if n is None else node_view(n))
    text = Templates(prompts).render("analyzer.j2", **variables)
    assert "coverage of the known issue types" in text
    variables["node"] |= {"breakdown": BREAKDOWN, "samples": SAMPLES}  # a richer node view
    text = Templates(prompts).render("analyzer.j2", **variables)
    assert "- html: docs 5" in text and "original: <b>x</b> y" in text
