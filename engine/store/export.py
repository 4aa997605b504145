"""``asi-evolve export RUN_DIR``: a run as CSV, JSON and one self-contained HTML report.

For sharing a run with someone who has neither the package nor the database: the CSV and
JSON list every node (step, parent, status, score, name, motivation, error, analysis) with
its standing (``engine/store/standing.py``: its explore and verify scores, whether its verify
score is below the baseline's, and whether it is the run's *reported* best, the best verified
node where the task has a verify stage); the HTML page (``engine/store/export_html.py``)
shows the same and more, with no script and no external file.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from engine import direction
from engine.store.export_html import html_report
from engine.store.run_store import RunStore, StoreError

FIELDS = (
    "id",
    "step",
    "parent_id",
    "status",
    "score",
    "explore",  # the node's standing: its score stage's score (= score)
    "verify",  # its verify stage's score, when the task has one and it ran
    "verify_state",  # verified, skipped, failed, waiting, not reached; "" without a verify stage
    "below_baseline",  # its verify score is worse than the initial program's
    "reported_best",  # the run's reported best (the best verified node where it verifies)
    "name",
    "motivation",
    "error",
    "analysis",
)


def rows(store: RunStore) -> list[dict[str, Any]]:
    """Every node with its standing, in id order."""
    standings = store.standings(direction.maximizes(store.get_meta("direction")))
    best = standings.best()
    out = []
    for n in store.nodes():
        assert n.id is not None
        standing = standings.of(n.id)
        out.append(
            {
                "id": n.id,
                "step": n.step,
                "parent_id": n.parent_id,
                "status": n.status,
                "score": n.score,
                "explore": standing.explore if standing else None,
                "verify": standing.verify if standing else None,
                "verify_state": standing.state if standing else "",
                "below_baseline": bool(standing and standing.below_baseline),
                "reported_best": best is not None and best.node_id == n.id,
                "name": n.name,
                "motivation": n.motivation,
                "error": n.error,
                "analysis": n.analysis,
            }
        )
    return out


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
    from engine.text import command_help  # here: the rest of this module is export itself

    cmd = sub.add_parser(
        "export",
        help="a run as nodes.csv, nodes.json and report.html",
        **command_help(
            "Write a run's nodes as files to share or analyse elsewhere (nodes.csv, "
            "nodes.json and a self-contained report.html) into a directory, RUN_DIR/export "
            "by default. Reads the run database read-only: safe beside a live engine.",
            "asi-evolve export runs/circle_packing",
            "asi-evolve export runs/circle_packing -o /tmp/share",
        ),
    )
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
