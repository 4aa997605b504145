"""The export's HTML report: one self-contained page (inline CSS and SVG, no script).

It shows the run's *reported* best (``engine/store/standing.py``: the best verified node where
the task has a verify stage) with the stage its score comes from; the score plot; the best
program in full with a unified diff against the initial program; the best nodes (ranked like
the reported best) with their analyses, the knowledge they were shown and the knowledge they
proposed; every item the run's nodes proposed, with its status and which nodes used it; the
lineage of the best; the run's configuration (secrets removed once more, whatever the run
stored); and every node, explore and verify side by side, a verify score below the
baseline's flagged. Every text a person or a model wrote is escaped.
"""

from __future__ import annotations

import difflib
import html
import json
import re
import time
from collections.abc import Mapping
from typing import Any

from engine import direction
from engine.store import export_knowledge
from engine.store.export_knowledge import Knowledge, Use
from engine.store.export_plot import curve_svg
from engine.store.records import Node
from engine.store.run_store import RunStore
from engine.store.schema import DONE
from engine.store.standing import NOT_REACHED, Standing, Standings

TOP = 5  # best nodes whose analyses and knowledge the report shows
REDACTED = "[redacted]"
SECRET_KEY = re.compile(
    r"(^|_)(api_?key|key|secret|password|passwd|token|auth|authorization|credentials?|bearer)$"
)
SECRET_VALUE = re.compile(r"\b(sk|pk|rk)-[A-Za-z0-9_\-]{12,}|\b[Bb]earer\s+\S+")
STYLE = """body{font-family:sans-serif;margin:2em;max-width:1200px}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:3px 6px;font-size:13px;
vertical-align:top}pre{background:#f7f7f7;padding:6px;overflow-x:auto;font-size:12px}
pre.text{white-space:pre-wrap}.muted{color:#777}.flag{background:#fdecea}
.best{background:#eaf5ea}.diff span{display:block}.add{background:#e6ffec}
.del{background:#ffebe9}.hunk{color:#6f42c1}.file{font-weight:bold}
.node{border-top:1px solid #ccc;margin-top:1.2em}"""
esc = html.escape


def html_report(store: RunStore, data: list[dict[str, Any]]) -> str:
    """The page for ``data`` (the export's rows of ``store``'s nodes)."""
    meta = store.all_meta()
    maximize = direction.maximizes(meta.get("direction"))
    standings = store.standings(maximize)
    knowledge = export_knowledge.read(store)
    best = standings.best()
    top = ranked(data, standings)[:TOP]
    root = next((r for r in data if r["step"] == 0), None)
    title = f"ASI-Evolve run: {esc(str(meta.get('task')))}"
    summary = _summary(data, standings, best.describe() if best else None)
    sections = [
        ("Score curve", curve_svg(data, maximize, standings.baseline)),
        ("Best program", _best_program(store, best.node_id if best else None, root)),
        (f"The best {len(top)} nodes", _best_nodes(store, top, standings, knowledge)),
        ("Knowledge proposed by the run", _proposed(data, knowledge)),
        ("Lineage of the best node", _lineage(data, best.node_id if best else None, standings)),
        ("Configuration", _config(meta.get("config"))),
        ("All nodes", _node_table(data, standings, best.node_id if best else None)),
    ]
    body = "".join(f"<h2>{name}</h2>{content}" for name, content in sections)
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{STYLE}</style></head>\n<body><h1>{title}</h1>{summary}{body}</body></html>\n"
    )


def ranked(data: list[dict[str, Any]], standings: Standings) -> list[int]:
    """Done nodes ranked like the reported best: the verified ones by their verify score
    first, then the others by their explore score; ties go to the earlier node."""
    sign = -1.0 if standings.maximize else 1.0
    verified, explored = [], []
    for r in data:
        standing = standings.of(r["id"]) if r["status"] == DONE else None
        if standing is None:
            continue
        if standing.verify is not None:
            verified.append((sign * standing.verify, r["id"]))
        elif standing.explore is not None:
            explored.append((sign * standing.explore, r["id"]))
    return [i for _, i in sorted(verified)] + [i for _, i in sorted(explored)]


def redacted(value: Any) -> Any:
    """A copy of a configuration without anything that looks like a secret: the values of
    keys named like one (``api_key``, ``token``, ``password``...), and key-like strings."""
    if isinstance(value, Mapping):
        return {
            str(k): REDACTED if _secret_key(str(k)) and v not in (None, "") else redacted(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redacted(v) for v in value]
    if isinstance(value, str):
        return SECRET_VALUE.sub(REDACTED, value)
    return value


def _secret_key(key: str) -> bool:
    return bool(SECRET_KEY.search(re.sub(r"[\s\-]+", "_", key.strip().lower())))


def _summary(data: list[dict[str, Any]], standings: Standings, best: str | None) -> str:
    names = standings.names
    if names.verify is None:
        how = f"ranked by its <b>{esc(names.score)}</b> score (the task has no verify stage)"
    else:
        how = (
            f"ranked by its score in the verify stage <b>{esc(names.verify)}</b>; the search "
            f"ranks by the explore stage <b>{esc(names.score)}</b>"
        )
        baseline = _fmt(standings.baseline) if standings.baseline is not None else "none yet"
        flagged = standings.flagged()
        how += f"; the baseline's verify score: {baseline}"
        if flagged:
            refs = ", ".join(_ref(i) for i in flagged)
            how += f'; <span class="flag">verify below the baseline: {refs}</span>'
    reported = f"<b>{esc(best)}</b>" if best else "none yet (no scored node)"
    return (
        f"<p>{len(data)} nodes · reported best: {reported}, {how} · "
        f"exported {time.strftime('%Y-%m-%d %H:%M')}</p>"
    )


def _best_program(store: RunStore, best_id: int | None, root: dict[str, Any] | None) -> str:
    node = store.get_node(best_id) if best_id is not None else None
    if node is None:
        return "<p>No best node yet.</p>"
    head = f"<p>{_ref(node.id)} (step {node.step}) {esc(node.name)}</p>"
    code = f'<pre class="code">{esc(node.code)}</pre>'
    initial = store.get_node(root["id"]) if root is not None else None
    if initial is None:
        return head + code + "<p>No initial program (step 0) to compare with.</p>"
    if initial.id == node.id:
        return head + "<p>The best node is the initial program.</p>" + code
    names = (f"initial (step 0, #{initial.id})", f"best (#{node.id})")
    return (
        head
        + code
        + "<h3>Diff against the initial program</h3>"
        + diff_html(initial.code, node.code, *names)
    )


def diff_html(old: str, new: str, old_name: str, new_name: str) -> str:
    """A unified diff of two programs, added and removed lines coloured."""
    lines = list(
        difflib.unified_diff(old.splitlines(), new.splitlines(), old_name, new_name, lineterm="")
    )
    if not lines:
        return "<p>The same code as the initial program.</p>"
    out = []
    for i, line in enumerate(lines):
        if i < 2:
            kind = "file"
        elif line.startswith("@@"):
            kind = "hunk"
        else:
            kind = {"+": "add", "-": "del"}.get(line[:1], "ctx")
        out.append(f'<span class="{kind}">{esc(line) or " "}</span>')
    return f'<pre class="diff">{"".join(out)}</pre>'


def _best_nodes(store: RunStore, top: list[int], standings: Standings, knowledge: Knowledge) -> str:
    if not top:
        return "<p>No scored node yet.</p>"
    parts = [
        '<p class="muted">Ranked like the reported best: verified nodes by their verify '
        "score first, then the others by their explore score.</p>"
    ]
    for rank, node_id in enumerate(top, 1):
        node = store.get_node(node_id)
        if node is None:
            continue
        standing = standings.of(node_id)
        scores = f"explore {_fmt(standing.explore if standing else node.score)}"
        if standings.names.verify is not None and standing is not None:
            scores += f" · verify {_verify_text(standing)}"
        parts.append(
            f'<div class="node"><h3>{rank}. {_ref(node.id)} (step {node.step}) '
            f"{esc(node.name)}</h3><p>{scores}</p>"
            f'<p><b>Motivation</b></p><pre class="text">{esc(node.motivation) or "-"}</pre>'
            f'<p><b>Analysis</b></p><pre class="text">{esc(node.analysis) or "-"}</pre>'
            f"<p><b>Knowledge used</b></p>{_used(node, knowledge)}"
            f"<p><b>Knowledge proposed</b></p>{_proposed_by(node, knowledge)}</div>"
        )
    return "".join(parts)


def _used(node: Node, knowledge: Knowledge) -> str:
    assert node.id is not None
    uses = knowledge.used_by_node(node.id, node.metadata)
    if not uses:
        return '<p class="muted">none</p>'
    return "<ul>" + "".join(_use_item(u, knowledge) for u in uses) + "</ul>"


def _use_item(use: Use, knowledge: Knowledge) -> str:
    similarity = "" if use.score is None else f"; similarity {use.score:.3g}"
    item = knowledge.items.get(use.item_id)
    if item is None:
        return f"<li>item #{use.item_id} (not in the knowledge base{similarity})</li>"
    origin = esc(item.origin) or "?"
    if item.node_id is not None:
        origin += f", proposed by {_ref(item.node_id)}"
    return (
        f"<li><details><summary>item #{item.id}: {esc(item.title)} "
        f'<span class="muted">({esc(item.status)}; {origin}{similarity})</span></summary>'
        f'<pre class="text">{esc(item.content)}</pre></details></li>'
    )


def _proposed_by(node: Node, knowledge: Knowledge) -> str:
    assert node.id is not None
    stored = knowledge.proposed([node.id])
    entries = [
        f"<li><details><summary>item #{i.id}: {esc(i.title)} "
        f'<span class="muted">({esc(i.status)}; used by {_refs(knowledge.users(i.id))})'
        f'</span></summary><pre class="text">{esc(i.content)}</pre></details></li>'
        for i in stored
    ]
    titles = {i.title for i in stored}
    recorded = node.metadata.get("knowledge_proposals")
    for proposal in recorded if isinstance(recorded, list) else []:
        if not isinstance(proposal, Mapping) or str(proposal.get("title", "")) in titles:
            continue
        entries.append(
            f"<li><details><summary>{esc(str(proposal.get('title', '')))} "
            '<span class="muted">(not stored: a duplicate, or no knowledge base)</span>'
            f'</summary><pre class="text">{esc(str(proposal.get("content", "")))}</pre>'
            "</details></li>"
        )
    return f"<ul>{''.join(entries)}</ul>" if entries else '<p class="muted">none</p>'


def _proposed(data: list[dict[str, Any]], knowledge: Knowledge) -> str:
    if not knowledge.available:
        return '<p class="muted">This run has no knowledge base.</p>'
    steps = {r["id"]: r["step"] for r in data}
    items = knowledge.proposed(steps)
    if not items:
        return '<p class="muted">No node of this run proposed an item.</p>'
    counts = {s: sum(i.status == s for i in items) for s in sorted({i.status for i in items})}
    tally = ", ".join(f"{n} {esc(s)}" for s, n in counts.items())
    rows = "".join(
        f"<tr><td>#{i.id}</td><td>{esc(i.status)}</td><td>{_ref(i.node_id)} "
        f"(step {steps[i.node_id]})</td><td>{_refs(knowledge.users(i.id))}</td>"
        f"<td><details><summary>{esc(i.title)}</summary>"
        f'<pre class="text">{esc(i.content)}</pre></details></td></tr>'
        for i in items
        if i.node_id is not None
    )
    return (
        f"<p>{len(items)} items ({tally}).</p><table><tr><th>item</th><th>status</th>"
        f"<th>proposed by</th><th>used by</th><th>title and content</th></tr>{rows}</table>"
    )


def _lineage(data: list[dict[str, Any]], best_id: int | None, standings: Standings) -> str:
    by_id = {r["id"]: r for r in data}
    chain, seen, node_id = [], set(), best_id
    while node_id is not None and node_id in by_id and node_id not in seen:
        seen.add(node_id)
        chain.append(by_id[node_id])
        node_id = by_id[node_id]["parent_id"]
    verify = standings.names.verify is not None
    rows, previous = [], None
    for r in reversed(chain):
        delta = "" if previous is None or r["score"] is None else f"{r['score'] - previous:+.6g}"
        previous = r["score"] if r["score"] is not None else previous
        standing = standings.of(r["id"])
        cell = f"<td>{_verify_text(standing, r['status'])}</td>" if verify and standing else ""
        rows.append(
            f"<tr><td>{r['step']}</td><td>{_ref(r['id'])}</td><td>{_fmt(r['score'])}</td>"
            f"<td>{delta}</td>{cell}<td>{esc(r['name'] or '')}</td>"
            f"<td>{esc(r['motivation'] or '')}</td></tr>"
        )
    head = "<th>verify</th>" if verify else ""
    return (
        "<table><tr><th>step</th><th>node</th><th>explore</th><th>delta</th>"
        f"{head}<th>name</th><th>motivation</th></tr>{''.join(rows)}</table>"
    )


def _config(config: Any) -> str:
    if config is None:
        return '<p class="muted">Not recorded.</p>'
    text = json.dumps(redacted(config), indent=1, sort_keys=True, default=str, ensure_ascii=False)
    return f'<pre class="text">{esc(text)}</pre>'


def _node_table(data: list[dict[str, Any]], standings: Standings, best_id: int | None) -> str:
    verify = standings.names.verify is not None
    rows = []
    for r in data:
        standing = standings.of(r["id"])
        flagged = bool(standing and standing.below_baseline)
        css = "flag" if flagged else "best" if r["id"] == best_id else ""
        cells = ""
        if verify:
            mark = " ⚠ below baseline" if flagged else ""
            text = _verify_text(standing, r["status"]) if standing else "-"
            cells = f"<td>{text}{mark}</td>"
        rows.append(
            f'<tr id="node-{r["id"]}" class="{css}"><td>{r["step"]}</td><td>#{r["id"]}</td>'
            f"<td>{_ref(r['parent_id'])}</td><td>{esc(str(r['status']))}</td>"
            f"<td>{_fmt(r['score'])}</td>{cells}<td>{esc(r['name'] or '')}</td>"
            f"<td>{esc((r['error'] or r['motivation'] or '')[:300])}</td></tr>"
        )
    head = "<th>explore</th>" + ("<th>verify</th>" if verify else "")
    return (
        "<table><tr><th>step</th><th>node</th><th>parent</th><th>status</th>"
        f"{head}<th>name</th><th>motivation / error</th></tr>{''.join(rows)}</table>"
    )


def _verify_text(standing: Standing, status: str = DONE) -> str:
    """The verify score, else why there is none (a node that failed before: none)."""
    if standing.verify is not None:
        return _fmt(standing.verify)
    if standing.state == NOT_REACHED and status != DONE:
        return '<span class="muted">-</span>'
    return f'<span class="muted">{esc(standing.state) or "-"}</span>'


def _ref(node_id: int | None) -> str:
    return "" if node_id is None else f'<a href="#node-{int(node_id)}">#{int(node_id)}</a>'


def _refs(node_ids: list[int]) -> str:
    return ", ".join(_ref(i) for i in node_ids) or "no node yet"


def _fmt(score: float | None) -> str:
    return "-" if score is None else f"{score:.6g}"
