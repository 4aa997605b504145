"""The export's report (issue 21): the reported best by standings, explore and verify side by
side, the best nodes' analyses and knowledge with its provenance, the best program and its
diff, the configuration without secrets, a plot with axes; the same standings in the JSON
and CSV; and no text a person or a model wrote can break the page."""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from engine.store import export, export_plot, schema
from engine.store.export_html import redacted
from engine.store.records import Node
from engine.store.run_store import RunStore
from engine.store.standing import META_KEY, StageNames

HOSTILE = {
    "name": "</script><b>bold</b><!--",
    "motivation": '<img src=x onerror="alert(1)"> & </td></tr></table>',
    "analysis": "</pre><script>alert(1)</script>\nsecond line <i>",
    "code": 'X = 3\nS = "</script><b>"\n',
    "title": "<script>alert(2)</script>",
    "content": "</details></li></ul><h1>pwned</h1>",
}
BENIGN = {
    "name": "a plain name of a node",
    "motivation": "a plain motivation of some words",
    "analysis": "a plain analysis\nsecond line",
    "code": 'X = 3\nS = "plain"\n',
    "title": "a plain title",
    "content": "plain content",
}
SECRETS = ("sk-live-0123456789abcdefXYZ", "sk-role-9876543210zyxwvu", "Bearer tok-3456", "hunter2")


def stages(explore: float, verify: float | None = None, skipped: bool = False) -> dict:
    record: dict[str, Any] = {"explore": {"ok": True, "score": explore}}
    if skipped:
        record["verify"] = {"ok": True, "skipped": True}
    elif verify is not None:
        record["verify"] = {"ok": True, "score": verify}
    return record


def make_run(
    root: Path,
    texts: dict[str, str] = BENIGN,
    verify: bool = True,
    cognition: bool = True,
    config: dict | None = None,
) -> Path:
    """A run of six nodes; where it verifies, #3 is the best verified node (0.8) though #2
    has the best explore score (0.9) and a verify score below the baseline's (0.5)."""
    run = root / "run"

    def setup(store: RunStore) -> None:
        store.set_meta("task", f"task {texts['name']}")
        store.set_meta("direction", "maximize")
        store.set_meta("config", config if config is not None else {"steps": 5, "seed": 1})
        store.set_meta(META_KEY, StageNames("explore", "verify" if verify else None).to_meta())

    store = RunStore.create(run, setup)
    try:
        specs = [  # step, parent, score, stages, status
            (0, None, 0.5, stages(0.5, 0.5), "done"),
            (1, 1, 0.9, stages(0.9, 0.3), "done"),
            (2, 1, 0.7, stages(0.7, 0.8), "done"),
            (3, 3, 0.6, stages(0.6, skipped=True), "done"),
            (4, 3, None, {}, "failed"),
            (5, 3, 0.55, stages(0.55), "done"),
        ]
        for step, parent, score, record, status in specs:
            node = Node(
                step=step,
                code="X = 1\nS = 'initial'\n" if step == 0 else texts["code"],
                name=f"{texts['name']} {step}",
                parent_ids=[parent] if parent else [],
                motivation=f"{texts['motivation']} {step}",
                analysis=f"{texts['analysis']} {step}",
                results={"stages": record} if verify else {},
                score=score,
                status=status,
                error=f"{texts['name']} boom" if status == "failed" else "",
            )
            if step == 2:
                node.metadata["knowledge_proposals"] = [
                    {"title": f"{texts['title']} 3", "content": texts["content"]},
                    {"title": f"{texts['title']} dropped", "content": texts["content"]},
                ]
            if step == 5:
                node.metadata["knowledge"] = [{"id": 1, "score": 0.5}]
            store.insert_node(node)
        if cognition:
            add_knowledge(store, texts)
    finally:
        store.close()
    return run


def add_knowledge(store: RunStore, texts: dict[str, str]) -> None:
    with store.db.conn:
        schema.create_tables(store.db.conn, schema.COGNITION_TABLES)
        items = [  # id, status, origin, proposing node
            (1, "active", "seed", None),
            (2, "pending", "analyzer", 2),
            (3, "active", "analyzer", 3),
            (4, "rejected", "analyzer", 3),
            (5, "active", "analyzer", 999),  # another run's node: not this run's proposal
        ]
        for item_id, status, origin, node_id in items:
            store.db["cognition_items"].insert(
                {
                    "id": item_id,
                    "title": f"{texts['title']} {item_id}",
                    "content": f"{texts['content']} {item_id}",
                    "status": status,
                    "origin": origin,
                    "node_id": node_id,
                }
            )
        for node_id, item_id, score in [(3, 1, 0.9), (3, 2, 0.7), (4, 3, 0.8), (6, 3, 0.6)]:
            store.db["retrievals"].insert({"node_id": node_id, "item_id": item_id, "score": score})


class Page(HTMLParser):
    """The page as tags (with attributes) and the text of each element by id or class."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.open: list[tuple[str, dict[str, str], int]] = []
        self.spans: list[tuple[str, dict[str, str], str]] = []  # tag, attrs, inner text
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attributes = {k: v or "" for k, v in attrs}
        self.tags.append((tag, attributes))
        if tag not in ("br", "meta", "circle", "line", "rect", "polygon", "polyline"):
            self.open.append((tag, attributes, len(self.text)))

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.open) - 1, -1, -1):
            if self.open[i][0] == tag:
                _, attributes, start = self.open[i]
                self.spans.append((tag, attributes, "".join(self.text[start:])))
                del self.open[i:]
                return

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def all_text(self) -> str:
        return "".join(self.text)

    def find(self, tag: str, **attrs: str) -> list[str]:
        """Inner texts of the ``tag`` elements with these attribute values (class: one of)."""
        found = []
        for t, attributes, text in self.spans:
            if t != tag:
                continue
            if all(
                v in attributes.get("class", "").split() if k == "klass" else attributes.get(k) == v
                for k, v in attrs.items()
            ):
                found.append(text)
        return found

    def row(self, node_id: int) -> tuple[dict[str, str], str]:
        (attributes,) = [a for t, a in self.tags if t == "tr" and a.get("id") == f"node-{node_id}"]
        (text,) = [x for t, a, x in self.spans if t == "tr" and a.get("id") == f"node-{node_id}"]
        return attributes, text


def report(run: Path, out: Path) -> tuple[str, Page]:
    export.export(run, out)
    text = (out / "report.html").read_text(encoding="utf-8")
    return text, Page(text)


def section(page: Page, title: str) -> str:
    """The text from the heading ``title`` up to the next second-level heading."""
    text = page.all_text()
    start = text.index(title)
    following = [text.index(h, start + 1) for h in page.find("h2") if text.find(h, start + 1) > 0]
    return text[start : min(following, default=len(text))]


def test_the_reported_best_is_the_best_verified_node(tmp_path: Path) -> None:
    _, page = report(make_run(tmp_path), tmp_path / "out")
    summary = page.find("p")[0]
    assert "reported best: 0.8 (#3, verify; explore 0.7)" in summary
    assert "ranked by its score in the verify stage verify;" in summary
    assert "baseline's verify score: 0.5" in summary and "below the baseline: #2" in summary
    headers = [h for t, _, h in page.spans if t == "th"]
    assert headers.count("explore") >= 2 and headers.count("verify") >= 2  # lineage, nodes
    attrs, text = page.row(2)
    assert attrs["class"] == "flag" and "0.9" in text and "0.3 ⚠ below baseline" in text
    attrs, text = page.row(3)
    assert attrs["class"] == "best" and "0.8" in text
    assert "skipped" in page.row(4)[1] and "not reached" in page.row(6)[1]
    assert "waiting" not in page.row(5)[1]  # failed before any verification
    assert page.row(1)[0]["class"] == ""  # the baseline itself is never flagged
    lineage = section(page, "Lineage of the best node")
    assert "#1" in lineage and "#3" in lineage and "#2" not in lineage


def test_without_a_verify_stage_the_best_explore_score_is_reported(tmp_path: Path) -> None:
    _, page = report(make_run(tmp_path, verify=False), tmp_path / "out")
    summary = page.find("p")[0]
    assert "reported best: 0.9 (#2), ranked by its explore score" in summary
    assert "no verify stage" in summary
    headers = [h for t, _, h in page.spans if t == "th"]
    assert "verify" not in headers and "explore" in headers
    assert page.row(2)[0]["class"] == "best"
    assert "⚠" not in page.all_text()


def test_the_best_nodes_show_their_analyses_in_rank_order(tmp_path: Path) -> None:
    _, page = report(make_run(tmp_path), tmp_path / "out")
    titles = page.find("h3")
    ranked = [t for t in titles if t[:2] in {f"{i}." for i in range(1, 6)}]
    # verified first by verify score (#3 0.8, #1 0.5, #2 0.3), then by explore (#4, #6)
    assert [t.split()[1] for t in ranked] == ["#3", "#1", "#2", "#4", "#6"]
    best = section(page, "The best 5 nodes")
    assert "a plain analysis\nsecond line 2" in best and "explore 0.7 · verify 0.8" in best
    assert "explore 0.6 · verify skipped" in best
    assert "#5" not in [t.split()[1] for t in ranked]  # failed


def test_knowledge_used_and_proposed_with_provenance(tmp_path: Path) -> None:
    _, page = report(make_run(tmp_path), tmp_path / "out")
    best = section(page, "The best 5 nodes")
    first = best[: best.index("2. #1")]  # the reported best, #3
    used = first[first.index("Knowledge used") : first.index("Knowledge proposed")]
    assert "item #1: a plain title 1 (active; seed; similarity 0.9)" in used
    assert "item #2: a plain title 2 (pending; analyzer, proposed by #2; similarity 0.7)" in used
    proposed = first[first.index("Knowledge proposed") :]
    assert "item #3: a plain title 3 (active; used by #4, #6)" in proposed
    assert "item #4: a plain title 4 (rejected; used by no node yet)" in proposed
    assert "a plain title dropped (not stored" in proposed
    assert "a plain title 3 (not stored" not in proposed  # stored: listed once
    table = section(page, "Knowledge proposed by the run")
    assert "3 items (1 active, 1 pending, 1 rejected)" in table
    rows = [x for t, _, x in page.spans if t == "tr" and x.startswith("#") and "proposed" not in x]
    by_item = {r.split("pending")[0].split("active")[0].split("rejected")[0]: r for r in rows}
    assert set(by_item) >= {"#2", "#3", "#4"} and "#5" not in by_item and "#1" not in by_item
    assert by_item["#2"].startswith("#2pending#2 (step 1)#3")  # proposed by #2, used by #3
    assert by_item["#3"].startswith("#3active#3 (step 2)#4, #6")
    assert by_item["#4"].startswith("#4rejected#3 (step 2)no node yet")
    links = [a["href"] for t, a in page.tags if t == "a"]
    assert links and all(h.startswith("#node-") for h in links)
    ids = {a["id"] for t, a in page.tags if t == "tr" and "id" in a}
    assert {h[1:] for h in links} <= ids  # every provenance link lands on a node's row


def test_a_run_without_a_knowledge_base(tmp_path: Path) -> None:
    _, page = report(make_run(tmp_path, cognition=False), tmp_path / "out")
    assert "This run has no knowledge base." in page.all_text()
    best = section(page, "The best 5 nodes")
    assert "item #1 (not in the knowledge base; similarity 0.5)" in best  # #6's metadata
    assert "a plain title 3 (not stored" in best  # #3's proposals, from its metadata


def test_the_best_program_in_full_with_its_diff(tmp_path: Path) -> None:
    _, page = report(make_run(tmp_path, HOSTILE), tmp_path / "out")
    (code,) = page.find("pre", klass="code")
    assert code == HOSTILE["code"]
    (diff,) = page.find("pre", klass="diff")
    assert diff.startswith("--- initial (step 0, #1)+++ best (#3)@@")
    assert page.find("span", klass="del") == ["-X = 1", "-S = 'initial'"]
    assert page.find("span", klass="add") == ["+X = 3", '+S = "</script><b>"']


def test_the_best_program_is_the_initial_one(tmp_path: Path) -> None:
    run = tmp_path / "run"
    store = RunStore.create(run, lambda s: s.set_meta("direction", "maximize"))
    store.insert_node(Node(step=0, code="X = 1\n", score=1.0, status="done"))
    store.insert_node(Node(step=1, code="X = 2\n", score=0.5, status="done", parent_ids=[1]))
    store.close()
    _, page = report(run, tmp_path / "out")
    assert "The best node is the initial program." in page.all_text()
    assert page.find("pre", klass="code") == ["X = 1\n"] and not page.find("pre", klass="diff")


def test_the_configuration_is_shown_without_any_api_key(tmp_path: Path) -> None:
    config = {
        "steps": 5,
        "api": {
            "base_url": "http://localhost:8000/v1",
            "api_key": SECRETS[0],
            "api_key_env": "MY_KEY_VARIABLE",
            "roles": {"judge": {"model": "m", "apiKey": SECRETS[1]}},
            "headers": {"Authorization": SECRETS[2]},
            "max_tokens": 4096,
        },
        "extra": [{"password": SECRETS[3]}, f"a key pasted in a note: {SECRETS[0]}"],
    }
    text, page = report(make_run(tmp_path, config=config), tmp_path / "out")
    for secret in SECRETS:
        assert secret not in text
    assert "tok-3456" not in text and "0123456789abcdef" not in text
    shown = json.loads(section(page, "Configuration").removeprefix("Configuration").split("All")[0])
    assert shown["api"]["api_key"] == "[redacted]" and shown["api"]["max_tokens"] == 4096
    assert shown["api"]["api_key_env"] == "MY_KEY_VARIABLE"
    assert shown["api"]["base_url"] == "http://localhost:8000/v1" and shown["steps"] == 5
    assert redacted({"token": None, "key": ""}) == {"token": None, "key": ""}


def test_the_plot_has_labelled_axes_and_round_ticks(tmp_path: Path) -> None:
    text, _ = report(make_run(tmp_path), tmp_path / "out")
    svg = ET.fromstring(text[text.index("<svg") : text.index("</svg>") + 6])
    ns = "{http://www.w3.org/2000/svg}"
    labels = {t.get("class"): t.text for t in svg.iter(f"{ns}text") if t.get("class")}
    assert labels["xlabel"] == "step" and labels["ylabel"] == "score"
    xs = [t.text for t in svg.iter(f"{ns}text") if t.get("class") == "xtick"]
    ys = [float(t.text) for t in svg.iter(f"{ns}text") if t.get("class") == "ytick"]
    assert xs[0] == "0" and int(xs[-1]) >= 5 and len(xs) >= 3
    assert ys[0] <= 0.3 and ys[-1] >= 0.9 and 3 <= len(ys) <= 10
    steps = {round(b - a, 9) for a, b in zip(ys, ys[1:], strict=False)}
    assert steps == {0.1} or steps == {0.2}  # round and even
    assert len(list(svg.iter(f"{ns}polygon"))) == 3  # the verify scores (#1, #2, #3)


@pytest.mark.parametrize(
    ("lo", "hi", "expected"),
    [
        (0.123, 0.987, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]),
        (-13, 42, [-20, 0, 20, 40, 60]),
        (5, 5, [4.4, 4.6, 4.8, 5.0, 5.2, 5.4, 5.6]),
        (0, 0, [-1, -0.5, 0, 0.5, 1]),
    ],
)
def test_nice_ticks(lo: float, hi: float, expected: list[float]) -> None:
    assert export_plot.nice_ticks(lo, hi) == pytest.approx(expected)


def test_tick_labels_and_integer_ticks() -> None:
    ticks = export_plot.nice_ticks(0.123, 0.987)
    assert [export_plot.tick_label(t, ticks) for t in ticks] == [
        "0.0",
        "0.2",
        "0.4",
        "0.6",
        "0.8",
        "1.0",
    ]
    assert export_plot.nice_ticks(0, 3, 8, integer=True) == [0, 1, 2, 3]
    big = export_plot.nice_ticks(0, 3e8)
    assert export_plot.tick_label(big[1], big) == "1e+08"
    fine = export_plot.nice_ticks(0.61231, 0.61242)  # a small span far from zero
    labels = [export_plot.tick_label(t, fine) for t in fine]
    assert len(set(labels)) == len(labels) and labels[0] == "0.61230"
    tiny = export_plot.nice_ticks(1e-9, 5e-9)
    labels = [export_plot.tick_label(t, tiny) for t in tiny]
    assert len(set(labels)) == len(labels) and labels[0] == "1e-09"


def test_user_text_never_breaks_the_page(tmp_path: Path) -> None:
    hostile, page = report(make_run(tmp_path / "a", HOSTILE), tmp_path / "a" / "out")
    benign, calm = report(make_run(tmp_path / "b", BENIGN), tmp_path / "b" / "out")
    # the same elements in the same order: no text opened or closed one
    assert [t for t, _ in page.tags] == [t for t, _ in calm.tags]
    assert not [t for t, _ in page.tags if t in ("script", "img", "i")]
    assert "<script" not in hostile and 'onerror="' not in hostile
    shown = page.all_text()
    for key in ("name", "motivation", "analysis", "title", "content"):
        assert HOSTILE[key] in shown, key
    assert page.find("title") == [f"ASI-Evolve run: task {HOSTILE['name']}"]
    assert not page.open  # every element closed
    ET.fromstring(hostile[hostile.index("<svg") : hostile.index("</svg>") + 6])


def test_json_and_csv_carry_the_standings(tmp_path: Path) -> None:
    out = tmp_path / "out"
    export.export(make_run(tmp_path), out)
    data = {r["id"]: r for r in json.loads((out / "nodes.json").read_text())}
    assert [i for i, r in data.items() if r["reported_best"]] == [3]
    assert (data[3]["explore"], data[3]["verify"], data[3]["verify_state"]) == (
        0.7,
        0.8,
        "verified",
    )
    assert data[2]["below_baseline"] is True and data[2]["verify"] == 0.3
    assert [i for i, r in data.items() if r["below_baseline"]] == [2]
    assert data[4]["verify_state"] == "skipped" and data[4]["verify"] is None
    assert data[5]["verify_state"] == "not reached" and data[5]["explore"] is None  # failed
    with (out / "nodes.csv").open(newline="") as f:
        table = {int(r["id"]): r for r in csv.DictReader(f)}
    assert table[3]["reported_best"] == "True" and table[3]["verify"] == "0.8"
    assert table[2]["below_baseline"] == "True" and table[4]["verify_state"] == "skipped"
    assert list(table[1]) == list(export.FIELDS)


def test_json_without_a_verify_stage(tmp_path: Path) -> None:
    out = tmp_path / "out"
    export.export(make_run(tmp_path, verify=False), out)
    data = {r["id"]: r for r in json.loads((out / "nodes.json").read_text())}
    assert [i for i, r in data.items() if r["reported_best"]] == [2]
    assert {r["verify_state"] for r in data.values()} == {""}
    assert not any(r["below_baseline"] for r in data.values())
