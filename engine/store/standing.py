"""Which node a run reports as its best, and how each node stands against its verification.

The search ranks nodes by the *score stage* (``explore``: one seed, minutes). A task may add
a gated stage after it that measures the promising nodes again, more carefully (``verify``:
several seeds, hours). A single-seed explore score is a noisy draw; the verify score is the
claim a researcher will repeat. So when a task has such a stage, the run's *reported* best
(``status``, ``best -o``, the TUI, the export, the run's last line) is the best *verified*
node, ranked by its verify score, and a node whose verify score falls below the initial
program's (the baseline's) is flagged: it won a lucky draw, not a better design. Until some
node has been verified, the best explore score is reported and says so.

The search itself is unchanged: samplers and agents keep ranking by the score stage.

Only the standard library is imported, so the TUI reads standings with this very code.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.store.schema import DONE, FINISHED

META_KEY = "stages"  # meta row: {"score": name, "verify": name or null}

# How a node stands with its verify stage.
NO_VERIFY = ""  # the task has no verify stage
VERIFIED = "verified"  # the verify stage ran and reported a score
SKIPPED = "skipped"  # not promoted to it (its gate refused)
FAILED = "failed"  # the verify stage ran and failed (the node failed with it)
WAITING = "waiting"  # not there yet: the node is still running
NOT_REACHED = "not reached"  # the node ended (failed, pruned) before its verify stage


@dataclass(frozen=True)
class StageNames:
    """Which stage ranks the search and which one verifies it.

    score: the stage whose score is the node's score (``TaskSpec.score_stage``).
    verify: the last stage after it (usually gated: only promoted nodes run it); None when
      the task has no stage after its score stage.
    """

    score: str = "evaluate"
    verify: str | None = None

    def to_meta(self) -> dict[str, Any]:
        return {"score": self.score, "verify": self.verify}

    @classmethod
    def from_meta(cls, value: Any) -> StageNames:
        """The names a run recorded; a run from before this record has no verify stage."""
        if not isinstance(value, Mapping):
            return cls()
        score, verify = value.get("score"), value.get("verify")
        return cls(
            score if isinstance(score, str) and score else "evaluate",
            verify if isinstance(verify, str) and verify else None,
        )

    @classmethod
    def of_task(cls, stage_names: list[str], score_stage: str) -> StageNames:
        """From a task's stages in order: the verify stage is the last one after the score
        stage (usually gated by ``promote``: only promising nodes pay for it)."""
        if score_stage not in stage_names:
            return cls(score_stage, None)
        later = stage_names[stage_names.index(score_stage) + 1 :]
        return cls(score_stage, later[-1] if later else None)


@dataclass(frozen=True)
class Standing:
    """One node's scores side by side.

    explore: the node's score (the score stage's, blended with a judge where there is one).
    verify: its verify stage's score, when it ran and reported one.
    state: one of VERIFIED, SKIPPED, FAILED, WAITING, NOT_REACHED, or NO_VERIFY.
    below_baseline: its verify score is worse than the initial program's verify score.
    """

    explore: float | None
    verify: float | None
    state: str
    below_baseline: bool = False


@dataclass(frozen=True)
class Best:
    """The node a run reports as its best, and which stage's score made it so."""

    node_id: int
    step: int
    score: float  # the score it is ranked by: its verify score when ``stage`` is the verify stage
    stage: str  # the stage that score comes from
    standing: Standing
    verified: bool  # ranked by verification (False: the task has none, or none ran yet)

    def describe(self) -> str:
        """E.g. ``0.6117 (#1, verify; explore 0.615)``, ``1.84 (#12, explore; none verified
        yet)``, or ``2.03 (#40)`` for a task without a verify stage."""
        if self.standing.state == NO_VERIFY:
            return f"{self.score:.6g} (#{self.node_id})"
        note = self.stage
        if self.standing.state not in (NO_VERIFY, VERIFIED):
            note += "; none verified yet"
        elif self.verified and self.standing.explore is not None:
            note += f"; explore {self.standing.explore:.6g}"
        return f"{self.score:.6g} (#{self.node_id}, {note})"


def verify_of(stages_record: Any, names: StageNames) -> tuple[float | None, str]:
    """(verify score, state) from a node's ``results["stages"]`` (a dict or its JSON)."""
    if names.verify is None:
        return None, NO_VERIFY
    if isinstance(stages_record, str | bytes):
        try:
            stages_record = json.loads(stages_record)
        except ValueError:
            stages_record = None
    record = stages_record.get(names.verify) if isinstance(stages_record, Mapping) else None
    if not isinstance(record, Mapping):
        return None, WAITING
    if record.get("skipped"):
        return None, SKIPPED
    if not record.get("ok"):
        return None, FAILED
    score = _finite(record.get("score"))
    return (score, VERIFIED) if score is not None else (None, FAILED)


@dataclass(frozen=True)
class Row:
    """What standings need of a node (``RunStore.standing_rows``, the TUI's reads)."""

    node_id: int
    step: int
    status: str
    score: float | None
    stages: Any  # results["stages"]: a dict, its JSON text, or None


class Standings:
    """The standings of a set of nodes: each node's, the baseline's, the reported best."""

    def __init__(self, rows: Iterable[Row], names: StageNames, maximize: bool) -> None:
        self.names, self.maximize = names, maximize
        self.rows = {r.node_id: r for r in rows}
        self._verify = {i: verify_of(r.stages, names) for i, r in self.rows.items()}
        root = next((r for r in self.rows.values() if r.step == 0), None)
        self.baseline: float | None = self._verify[root.node_id][0] if root else None

    def of(self, node_id: int) -> Standing | None:
        row = self.rows.get(node_id)
        if row is None:
            return None
        verify, state = self._verify[node_id]
        if state == WAITING and row.status in FINISHED:
            state = NOT_REACHED
        below = (
            verify is not None
            and self.baseline is not None
            and row.step != 0
            and _better(self.baseline, verify, self.maximize)
        )
        return Standing(_finite(row.score), verify, state, below)

    def best(self) -> Best | None:
        """The best verified done node, or (none verified, or no verify stage) the best
        done node by its score; ties go to the earlier node."""
        done = [r for r in self.rows.values() if r.status == DONE]
        verified = [(r, self._verify[r.node_id][0]) for r in done]
        verified = [(r, v) for r, v in verified if v is not None]
        if verified:
            row, score = _pick(verified, self.maximize)
            return self._best(row, score, self.names.verify or "", True)
        scored = [(r, _finite(r.score)) for r in done]
        scored = [(r, s) for r, s in scored if s is not None]
        if not scored:
            return None
        row, score = _pick(scored, self.maximize)
        return self._best(row, score, self.names.score, False)

    def _best(self, row: Row, score: float, stage: str, verified: bool) -> Best:
        standing = self.of(row.node_id)
        assert standing is not None  # row is one of self.rows
        return Best(row.node_id, row.step, score, stage, standing, verified)

    def flagged(self) -> list[int]:
        """Nodes whose verify score is below the baseline's, in id order."""
        return sorted(i for i in self.rows if (s := self.of(i)) is not None and s.below_baseline)


def _pick(pairs: list[tuple[Row, float]], maximize: bool) -> tuple[Row, float]:
    sign = -1.0 if maximize else 1.0
    return min(pairs, key=lambda p: (sign * p[1], p[0].node_id))


def _better(a: float, b: float, maximize: bool) -> bool:
    return a > b if maximize else a < b


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None
