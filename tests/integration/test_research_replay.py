"""The research replay at tiny settings: a real ``linear_attention`` run through the CLI,
driven over real HTTP by the scripted model of ``benchmarks/replay_model.py``.

Each design must meet the fate it was written for: the non-causal one refused by the LLM
reviewer and the quadratic one by the task's check stage, both before any training; the
crash repaired by the debug agent and then trained; malformed answers repaired by a follow-up
turn, or failing their node while the run goes on; the Analyzer's knowledge proposals
pending in the cognition base; with a judge on, promotion to verify still compares
evaluation scores; every LLM call recorded under its node.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.domains, pytest.mark.slow]
for _extra in ("torch", "fla"):
    pytest.importorskip(_extra, reason="the replay needs pip install -e '.[domains]'")

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from research_replay import run_replay  # noqa: E402


@pytest.mark.timeout(900)
def test_linear_attention_replay_meets_every_expected_fate(tmp_path: Path) -> None:
    replay = run_replay("linear_attention", tmp_path, tiny=True, timeout=840, judge=0.2)
    assert replay.returncode == 0, replay.stderr[-3000:]
    fate = {f.design: f for f in replay.fates}
    assert [f.design for f in replay.fates if not f.as_expected] == [], replay.fates

    # Stopped before training, each by the guard meant for it.
    refused = fate["bidirectional-summary"]
    assert refused.checked == "refused: LLM review" and "causal" in refused.why
    assert refused.explored == "-"
    quadratic = fate["exact-decay-attention"]
    assert quadratic.checked == "refused: check" and "not sub-quadratic" in quadratic.why
    assert quadratic.explored == "-" and quadratic.repaired == "-"  # a verdict, not a bug

    # The crash: the debug agent's fix passes the check and is trained.
    crash = fate["head-gate"]
    assert crash.repaired == "debug 1/1 fixed" and crash.checked.startswith("passed")
    assert crash.explored not in ("-", "failed")

    # Malformed answers (edits forgotten, SEARCH retyped, the frozen import edited, cut at
    # the token limit): repaired by one follow-up turn; or the node fails, the run goes on.
    for name in ("output-gate", "wider-short-conv", "gated-delta-rule", "multi-path-gated-fusion"):
        assert fate[name].repaired == "answer x1", fate[name]
    assert fate["rambling"].why.startswith("researcher: no usable program after 4 answers")
    later = replay.fates[replay.fates.index(fate["rambling"]) + 1 :]
    assert later and all(f.step is not None for f in later)

    # Promotion (with a judge blending the scores): verified designs beat the initial
    # program's explore score first.
    promoted = [f for f in replay.fates if f.promoted == "yes"]
    assert promoted and all(f.verified not in ("-", "failed") for f in promoted)
    assert all(f.beats in ("yes", "no") for f in promoted)
    # A verify verdict reaches the Analyzer (its prompt) and so the knowledge proposals.
    for winner in (f.design for f in promoted if f.beats == "yes"):
        assert f"{winner} beat the baseline in verify" in replay.pending, replay.pending

    # The Analyzer's proposals wait for a person; every role was called and recorded.
    assert replay.pending
    assert {"researcher", "analyzer", "static_check", "debugger", "judge"} <= set(replay.calls)
    db = sqlite3.connect(replay.run_dir / "evolve.db")
    try:
        unowned = db.execute("SELECT COUNT(*) FROM llm_calls WHERE node_id IS NULL").fetchone()
        origins = {r[0] for r in db.execute("SELECT origin FROM cognition_items WHERE status = "
                                            "'pending'")}  # fmt: skip
        analyses = [r[0] for r in db.execute("SELECT analysis FROM nodes WHERE status = 'done'")]
    finally:
        db.close()
    assert unowned == (0,) and origins == {"analyzer"}
    assert all(a and "analyzer failed" not in a for a in analyses), analyses
    assert "provenance of" in replay.report


@pytest.mark.timeout(900)
def test_rl_algorithm_replay_repairs_the_crash_and_trains_every_design(tmp_path: Path) -> None:
    pytest.importorskip("trl", reason="rl_algorithm needs pip install -e '.[domains]'")
    # verify is covered above; here it would re-run every tied candidate (top_k counts ties)
    replay = run_replay("rl_algorithm", tmp_path, tiny=True, verify=False, timeout=840)
    assert replay.returncode == 0, replay.stderr[-3000:]
    fate = {f.design: f for f in replay.fates}
    assert [f.design for f in replay.fates if not f.as_expected] == [], replay.fates
    crash = fate["constant-length-normaliser"]
    assert crash.repaired == "debug 1/1 fixed" and crash.explored not in ("-", "failed")
    assert fate["clip-higher-no-kl"].repaired == "answer x1"  # the retyped SEARCH
    assert all(f.checked == "passed" and f.explored != "-" for f in replay.fates)
    assert {"researcher", "analyzer", "debugger"} <= set(replay.calls)
    assert "static_check" not in replay.calls  # the task ships no static-check template
