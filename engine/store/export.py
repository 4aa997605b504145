"""``asi-evolve export RUN_DIR``: a run as CSV, JSON and one self-contained HTML report.

For sharing a run with someone who has neither the package nor the database: the CSV and
JSON list every node (step, parent, status, score, name, motivation, error, analysis), and
the HTML page shows the score curve (best so far over steps), the lineage tree of the best
node, and the node table, with no script and no external file.
"""

from __future__ import annotations

import csv
import html
import json
import time
from pathlib import Path
from typing import Any

from engine import direction
from engine.store.run_store import RunStore, StoreError
from engine.store.schema import DONE

FIELDS = ("id", "step", "parent_id", "status", "score", "name", "motivation", "error", "analysis")


def rows(store: RunStore) -> list[dict[str, Any]]:
    return [
        {
            "id": n.id,
            "step": n.step,
            "parent_id": n.parent_id,
            "status": n.status,
            "score": n.score,
            "name": n.name,
            "motivation": n.motivation,
            "error": n.error,
            "analysis": n.analysis,
        }
        for n in store.nodes()
    ]


def lineage(nodes: dict[int, dict[str, Any]], node_id: int | None) -> list[dict[str, Any]]:
    """The node and its ancestors, root first."""
    chain, seen = [], set()
    while node_id is not None and node_id in nodes and node_id not in seen:
        seen.add(node_id)
        chain.append(nodes[node_id])
        node_id = nodes[node_id]["parent_id"]
    return chain[::-1]


def curve_svg(
    data: list[dict[str, Any]], maximize: bool, width: int = 720, height: int = 240
) -> str:
    done = sorted(
        (r for r in data if r["status"] == DONE and r["score"] is not None),
        key=lambda r: r["step"],
    )
    if not done:
        return "<p>No scored node yet.</p>"
    best, points = None, []
    for r in done:
        if direction.better(r["score"], best, maximize):
            best = r["score"]
        points.append((r["step"], r["score"], best))
    steps = [p[0] for p in points] or [0]
    values = [v for p in points for v in p[1:]]
    lo, hi = min(values), max(values)
    span_x, span_y = max(1, max(steps) - min(steps)), (hi - lo) or 1.0

    def xy(step: float, value: float) -> str:
        x = 40 + (step - min(steps)) / span_x * (width - 60)
        y = height - 30 - (value - lo) / span_y * (height - 50)
        return f"{x:.1f},{y:.1f}"

    dots = "".join(
        f'<circle cx="{xy(s, v).split(",")[0]}" cy="{xy(s, v).split(",")[1]}" r="2" fill="#999"/>'
        for s, v, _ in points
    )
    line = " ".join(xy(s, b) for s, _, b in points)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">'
        f'<rect width="100%" height="100%" fill="white" stroke="#ccc"/>{dots}'
        f'<polyline points="{line}" fill="none" stroke="#c0392b" stroke-width="2"/>'
        f'<text x="40" y="16" font-size="12">best so far (red) and every score (grey); '
        f"{lo:.6g} to {hi:.6g}</text></svg>"
    )


def html_report(store: RunStore, data: list[dict[str, Any]]) -> str:
    meta = store.all_meta()
    maximize = meta.get("direction", "maximize") == "maximize"
    best = store.best_node(maximize)
    by_id = {r["id"]: r for r in data}
    chain = lineage(by_id, best.id if best else None)
    esc = html.escape
    lineage_rows, previous = [], None
    for r in chain:
        delta = "" if previous is None or r["score"] is None else f"{r['score'] - previous:+.6g}"
        previous = r["score"] if r["score"] is not None else previous
        lineage_rows.append(
            f"<tr><td>{r['step']}</td><td>#{r['id']}</td><td>{_fmt(r['score'])}</td>"
            f"<td>{delta}</td><td>{esc(r['name'] or '')}</td>"
            f"<td>{esc(r['motivation'] or '')}</td></tr>"
        )
    table = "".join(
        f"<tr><td>{r['step']}</td><td>#{r['id']}</td><td>{_ref(r['parent_id'])}</td>"
        f"<td>{r['status']}</td><td>{_fmt(r['score'])}</td><td>{esc(r['name'] or '')}</td>"
        f"<td>{esc((r['error'] or r['motivation'] or '')[:300])}</td></tr>"
        for r in data
    )
    title = f"ASI-Evolve run: {esc(str(meta.get('task')))}"
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ddd;padding:3px 6px;font-size:13px;vertical-align:top}}</style></head>
<body><h1>{title}</h1>
<p>{len(data)} nodes · best {_fmt(best.score if best else None)} (#{best.id if best else "-"}) ·
exported {time.strftime("%Y-%m-%d %H:%M")}</p>
<h2>Score curve</h2>{curve_svg(data, maximize)}
<h2>Lineage of the best node</h2><table><tr><th>step</th><th>node</th><th>score</th>
<th>delta</th><th>name</th><th>motivation</th></tr>{"".join(lineage_rows)}</table>
<h2>All nodes</h2><table><tr><th>step</th><th>node</th><th>parent</th><th>status</th>
<th>score</th><th>name</th><th>motivation / error</th></tr>{table}</table></body></html>
"""


def _ref(node_id: int | None) -> str:
    return "" if node_id is None else f"#{node_id}"


def _fmt(score: float | None) -> str:
    return "-" if score is None else f"{score:.6g}"


def export(run_dir: Path, out_dir: Path) -> list[Path]:
    store = RunStore.open(run_dir, readonly=True)
    try:
        data = rows(store)
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = [out_dir / "nodes.csv", out_dir / "nodes.json", out_dir / "report.html"]
        with paths[0].open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows(data)
        paths[1].write_text(json.dumps(data, indent=1), encoding="utf-8")
        paths[2].write_text(html_report(store, data), encoding="utf-8")
        return paths
    finally:
        store.close()


def register(sub) -> None:  # noqa: ANN001 - argparse's private subparsers type
    cmd = sub.add_parser("export", help="a run as nodes.csv, nodes.json and report.html")
    cmd.add_argument("run_dir", type=Path)
    cmd.add_argument("-o", "--output", type=Path, help="directory (default: RUN_DIR/export)")
    cmd.set_defaults(func=cmd_export)


def cmd_export(args) -> int:  # noqa: ANN001
    out = args.output or args.run_dir / "export"
    if out.exists() and not out.is_dir():
        raise StoreError(f"{out} exists and is not a directory")
    for path in export(args.run_dir, out):
        print(path)
    return 0
