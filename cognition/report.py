"""The provenance report: where did each design come from, and which knowledge paid off.

The paper splits its designs into those that came from the cognition base, from accumulated
experience, and novel ones. We classify a candidate by what its motivation (the Researcher's
own account of the idea) is closest to, among the things the Researcher was shown:

* ``s_cog``: the highest cosine between the motivation and an item retrieved for the node
  (the ``retrievals`` table: what was shown);
* ``s_exp``: the highest cosine between the motivation and the motivation or analysis of one of
  the node's context nodes (the parent included: the experience it was shown).

Then, with ``t`` = ``cognition.novel_threshold`` (default 0.45, ``--novel-threshold``):

* **novel** when ``max(s_cog, s_exp) < t``: the idea resembles nothing it was shown;
* **cognition** when it retrieved at least one item and ``s_cog >= s_exp``: the closest thing
  it was shown is knowledge (the item reaching ``s_cog`` is *credited* with the design);
* **experience** otherwise: the closest thing is an earlier node's idea or report.

Designs are candidates that were evaluated (done, failed or pruned, step >= 1, with a
motivation); proposals refused by the novelty check are not designs. The breakdown is given
for all designs and for the best ones (the top 10 % of the done nodes, at least one), as in
the paper. Per item: how many nodes retrieved it, how many designs credit it, its mean
retrieval score, and the mean score delta (node score minus parent score) of the done nodes
that retrieved it.

The report reads the run database only: texts without a cached vector are embedded in memory.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from cognition.base import CognitionBase
from cognition.items import STATUSES
from cognition.node_vectors import Key, NodeVectors
from engine import direction
from engine.store.records import DONE, FAILED, PRUNED
from engine.store.run_store import RunStore

BEST_SHARE = 0.1
LABELS = ("cognition", "experience", "novel")


def build_report(
    store: RunStore, base: CognitionBase, novel_threshold: float | None = None
) -> dict[str, Any]:
    meta = store.all_meta()
    maximize = meta.get("direction", "maximize") == "maximize"
    nodes = {
        r["id"]: r
        for r in store.db.query(
            "SELECT id, step, status, score, parent_id, context_ids, motivation, analysis, "
            "error FROM nodes ORDER BY id"
        )
    }
    for row in nodes.values():
        row["context_ids"] = json.loads(row["context_ids"] or "[]")
    best = store.standings(maximize).best()  # the best verified node where the task verifies
    counts = store.status_counts()
    report: dict[str, Any] = {
        "run_dir": str(store.path.parent),
        "task": meta.get("task"),
        "direction": direction.name(maximize),
        "nodes": len(nodes),
        **counts,
        "best_score": best.score if best else None,
        "best_node": best.node_id if best else None,
        "best": best.describe() if best else None,
    }
    retrievals: dict[int, list[dict]] = {}
    for r in base.retrievals():
        retrievals.setdefault(r["node_id"], []).append(r)
    designs = [
        n
        for n in nodes.values()
        if n["step"] >= 1
        and (n["motivation"] or "").strip()
        and n["status"] in (DONE, FAILED, PRUNED)
        and not (n["error"] or "").startswith("duplicate of")
    ]
    threshold = base.settings.novel_threshold if novel_threshold is None else novel_threshold
    try:
        origins = _classify(designs, nodes, retrievals, base, threshold)
    except Exception as exc:  # noqa: BLE001 - the rest of the report is still useful
        origins = None
        report["provenance_error"] = " ".join(str(exc).split()) or type(exc).__name__
    report["provenance"] = _breakdown(designs, origins, maximize, threshold)
    report["items"] = _item_usage(nodes, retrievals, origins, base)
    return report


def _classify(
    designs: list[dict],
    nodes: dict[int, dict],
    retrievals: dict[int, list[dict]],
    base: CognitionBase,
    threshold: float,
) -> dict[int, tuple[str, int | None]]:
    """node id -> (label, credited item id)."""
    if not designs:
        return {}
    wanted: dict[Key, str] = {}
    for node in designs:
        wanted[(node["id"], "motivation")] = node["motivation"].strip()
        for cid in node["context_ids"]:
            ctx = nodes.get(cid)
            for field in ("motivation", "analysis"):
                text = ((ctx or {}).get(field) or "").strip()
                if text:
                    wanted[(cid, field)] = text
    vectors = NodeVectors(base.db, base.embedder.name, writable=False).get(wanted, base.encode)
    ids, matrix = base.matrix(statuses=STATUSES, extra=base.refresh())
    item_row = {int(i): k for k, i in enumerate(ids)}
    origins: dict[int, tuple[str, int | None]] = {}
    for node in designs:
        m = vectors[(node["id"], "motivation")]
        s_cog, credited = -1.0, None
        for r in retrievals.get(node["id"], []):
            if r["item_id"] in item_row:
                score = float(matrix[item_row[r["item_id"]]] @ m)
                if score > s_cog:
                    s_cog, credited = score, r["item_id"]
        s_exp = max(
            (
                float(vectors[(cid, f)] @ m)
                for cid in node["context_ids"]
                for f in ("motivation", "analysis")
                if (cid, f) in vectors and cid != node["id"]
            ),
            default=-1.0,
        )
        if max(s_cog, s_exp) < threshold:
            origins[node["id"]] = ("novel", None)
        elif credited is not None and s_cog >= s_exp:
            origins[node["id"]] = ("cognition", credited)
        else:
            origins[node["id"]] = ("experience", None)
    return origins


def _breakdown(
    designs: list[dict],
    origins: dict[int, tuple[str, int | None]] | None,
    maximize: bool,
    threshold: float,
) -> dict[str, Any] | None:
    if origins is None:
        return None
    done = [n for n in designs if n["status"] == DONE and n["score"] is not None]
    done.sort(key=lambda n: -direction.fitness(n["score"], maximize))
    best = done[: max(1, int(np.ceil(BEST_SHARE * len(done))))] if done else []

    def shares(group: list[dict]) -> dict[str, Any]:
        counts = {label: 0 for label in LABELS}
        for node in group:
            counts[origins[node["id"]][0]] += 1
        total = len(group)
        return {
            "designs": total,
            **counts,
            **{f"{k}_share": (v / total if total else 0.0) for k, v in counts.items()},
        }

    return {"all": shares(designs), "best": shares(best), "novel_threshold": threshold}


def _item_usage(
    nodes: dict[int, dict],
    retrievals: dict[int, list[dict]],
    origins: dict[int, tuple[str, int | None]] | None,
    base: CognitionBase,
) -> list[dict[str, Any]]:
    usage: dict[int, dict[str, Any]] = {}
    for node_id, rows in retrievals.items():
        node = nodes.get(node_id)
        parent = nodes.get(node["parent_id"]) if node and node["parent_id"] else None
        delta = None
        if (
            node
            and parent
            and node["status"] == parent["status"] == DONE
            and node["score"] is not None
            and parent["score"] is not None
        ):
            delta = node["score"] - parent["score"]
        for r in rows:
            u = usage.setdefault(r["item_id"], {"scores": [], "deltas": [], "credited": 0})
            u["scores"].append(r["score"])
            if delta is not None:
                u["deltas"].append(delta)
    for label, credited in (origins or {}).values():
        if label == "cognition" and credited in usage:
            usage[credited]["credited"] += 1
    out = []
    for item_id, u in usage.items():
        item = base.get(item_id)
        out.append(
            {
                "id": item_id,
                "title": item.title if item else "(removed)",
                "status": item.status if item else "removed",
                "origin": item.origin if item else None,
                "retrieved": len(u["scores"]),
                "credited": u["credited"],
                "mean_score": float(np.mean(u["scores"])),
                "mean_delta": float(np.mean(u["deltas"])) if u["deltas"] else None,
                "evaluated": len(u["deltas"]),
            }
        )
    out.sort(key=lambda r: (-r["retrieved"], r["id"]))
    return out


def format_report(report: dict[str, Any]) -> str:
    best = report["best_score"]
    lines = [
        f"run:    {report['run_dir']}  (task {report['task']}, {report['direction']})",
        f"nodes:  {report['nodes']}  done {report['done']}  failed {report['failed']}  "
        f"pruned {report['pruned']}   best " + ("-" if best is None else str(report["best"])),
        "",
    ]
    prov = report["provenance"]
    if prov is None:
        lines.append(f"provenance: unavailable ({report.get('provenance_error')})")
    else:
        lines.append(
            f"provenance of {prov['all']['designs']} designs "
            f"(novel below cosine {prov['novel_threshold']}; rule: see the README):"
        )
        for label in LABELS:
            a, b = prov["all"], prov["best"]
            lines.append(
                f"  {label:<11} {a[label]:>5}  {100 * a[label + '_share']:5.1f}%    "
                f"among the best {b['designs']}: {b[label]:>4}  {100 * b[label + '_share']:5.1f}%"
            )
    lines.append("")
    if not report["items"]:
        lines.append("no cognition item was retrieved")
    else:
        lines.append(
            "cognition items by use (retrieved / credited / mean score / mean Δ vs parent):"
        )
        for r in report["items"]:
            delta = "-" if r["mean_delta"] is None else f"{r['mean_delta']:+.4g}"
            lines.append(
                f"  #{r['id']:<4} {r['retrieved']:>5} {r['credited']:>5}  {r['mean_score']:.3f}  "
                f"{delta:>9}  {r['title']} [{r['status']}]"
            )
    return "\n".join(lines)
