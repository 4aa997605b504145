"""A TUI test run whose task verifies its promising nodes, with candidates in flight.

On top of ``tui_support.build_run`` (9 nodes): the meta row names the score stage
``explore`` and the verify stage ``verify`` (``engine/store/standing.py``); each finished
node's results carry its stages' records, and the running node its stage record
(``engine/store/running.py``). The story: the best explore score (#6, 0.97) was a lucky
draw, its verify score (0.52) is below the initial program's (0.55); the reported best is
#3, verified at 0.61.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

from tui_support import NOW

EXPLORE_S, VERIFY_S = 600.0, 3600.0
# node id -> its verify stage's record (absent: the node has none)
VERIFY = {
    1: {"ok": True, "score": 0.55, "error": "", "runtime": 12.0, "results": {"seeds": 5}},
    2: {"skipped": "explore 0.75 is not in the top 2"},
    3: {"ok": True, "score": 0.61, "error": "", "runtime": 12.0, "results": {"seeds": 5}},
    5: {"ok": False, "score": None, "error": "seed 3 diverged", "runtime": 4.0, "results": {}},
    6: {"ok": True, "score": 0.52, "error": "", "runtime": 12.0, "results": {"seeds": 5}},
}
EXPLORE_STARTED = NOW - 185  # node #8 has run its explore stage for 3:05 (limit 10:00)


def add_stages(run_dir: Path) -> Path:
    """Record the stages in a ``build_run`` run (its timestamps are kept)."""
    with closing(sqlite3.connect(run_dir / "evolve.db")) as conn, conn:
        meta = json.dumps({"score": "explore", "verify": "verify"})
        conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('stages', ?)", (meta,))
        for node_id, score in conn.execute("SELECT id, score FROM nodes").fetchall():
            stages = {}
            if score is not None:
                stages["explore"] = {"ok": True, "score": score, "error": "", "runtime": 1.0}
            if node_id in VERIFY:
                stages["verify"] = VERIFY[node_id]
            if stages:
                results = {"metrics": {"x": 1.0}, "stages": stages}
                conn.execute(
                    "UPDATE nodes SET results = ? WHERE id = ?", (json.dumps(results), node_id)
                )
        record = {"name": "explore", "started_at": EXPLORE_STARTED, "timeout": EXPLORE_S}
        conn.execute(
            "UPDATE nodes SET metadata = ? WHERE id = 8",
            (json.dumps({"running_stage": record, "stages": {}}),),
        )
    return run_dir
