"""One round for one node: research → static check → staged experiment → commit → analyze.

The order of commits is the point of this module. A real experiment costs hours of GPU,
so its outcome is committed the moment it exists, *before* the judge, the Analyzer and
the knowledge update (LLM calls that may fail, hang or be interrupted); the node keeps a
``post_pending`` list in its metadata until those are done, and a resumed engine finishes
only what that list names. Each stage's result is committed too, so a crash during an
expensive ``verify`` never re-runs ``explore``. After the evaluation commit, the later
phases only add fields (analysis, judge score, proposals): they never turn a finished node
back into an unfinished one.

Every store access is awaited through the engine's db thread (``engine.store.writer.StoreThread``):
an awaited write has committed when the await returns, so the order above holds exactly as
with synchronous calls, while a slow commit never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from engine import direction
from engine.agents.base import (
    AgentError,
    Agents,
    AnalysisInput,
    EndpointError,
    Proposal,
    Report,
    ResearchContext,
)
from engine.execution import workdirs
from engine.execution.engineer import Engineer, Evaluation, run_stages, stage_record
from engine.store import twins
from engine.store.records import DONE, FAILED, PRUNED, RUNNING, Node
from engine.store.run_store import RunStore
from engine.store.running import RUNNING_STAGE, WAITING, clock
from engine.store.running import stage_record as running_record
from engine.store.writer import StoreThread
from engine.task import Resources, Stage, TaskSpec

log = logging.getLogger(__name__)

POST_PENDING = "post_pending"  # metadata key: phases still owed after the evaluation commit
JUDGE, ANALYSIS = "judge", "analysis"


class Rejected(Exception):
    """The candidate is refused before evaluation (a duplicate idea, a static check)."""


class SlotPool(Protocol):
    """What the pipeline needs of ``engine.execution.resources.SlotPool``."""

    def acquire(self, resources: Resources) -> contextlib.AbstractAsyncContextManager[Any]: ...


@dataclass(frozen=True)
class PipelineSettings:
    """How a round runs.

    use_analyzer: run the Analyzer after each evaluation (``--no-analyzer`` turns it off).
    novelty_retries: how often the Researcher may retry after a duplicate-idea refusal.
    debug_attempts: fixes the debug agent may try within one node after a runtime error.
    reuse_evaluations: a program evaluated earlier in the run takes that evaluation instead
      of running again (``engine/store/twins.py``).
    """

    use_analyzer: bool = True
    novelty_retries: int = 3
    debug_attempts: int = 2
    reuse_evaluations: bool = True


class Pipeline:
    def __init__(
        self,
        db: StoreThread,
        task: TaskSpec,
        run_dir: Path,
        agents: Agents,
        engineer: Engineer,
        settings: PipelineSettings,
        pool: SlotPool | None = None,
        is_pruned: Callable[[int], bool] = lambda node_id: False,
        say: Callable[[str], None] = lambda line: None,
    ) -> None:
        self.db = db  # the engine's store, in its db thread
        self.task = task
        self.run_dir = run_dir
        self.agents = agents
        self.engineer = engineer
        self.settings = settings
        self.pool = pool
        self.is_pruned = is_pruned
        # Console lines when a stage starts and ends, for staged tasks: their candidates run
        # for minutes to hours, and a silent console looks like a hung run.
        self.say = say if len(task.stages) > 1 else (lambda line: None)

    # ---------------------------------------------------------------- research
    async def research(self, node: Node, parent: Node, context: list[Node]) -> None:
        knowledge = await self.agents.retriever.retrieve(node.id, context)
        elite_ids = node.metadata.get("elite_ids") or []  # recorded when the step was sampled
        elite = await self.db.call(_nodes, elite_ids) if elite_ids else []
        ctx = ResearchContext(
            task_name=self.task.name,
            task_description=self.task.description,
            parent=parent,
            context=context,
            knowledge=knowledge,
            step=node.step,
            node_id=node.id,
            maximize=self.task.maximize,
            elite=elite,
            extras={"use_analyzer": self.settings.use_analyzer},
        )
        rejected: list[dict[str, str]] = []
        for _ in range(1 + self.settings.novelty_retries):
            proposal = await self.agents.researcher.propose(ctx)
            if not proposal.code.strip():
                raise AgentError("the researcher returned no code")
            duplicate = await self.agents.retriever.novelty(node.id, proposal.motivation)
            if duplicate is None:
                break
            rejected.append({"name": proposal.name, "reason": duplicate})
            await self.db.add_event("novelty", f"proposal rejected: {duplicate}", node.id)
        else:
            await self.adopt(node, proposal, {"rejected_proposals": rejected})
            raise Rejected(duplicate)
        metadata = {"rejected_proposals": rejected} if rejected else {}
        metadata.update(proposal.metadata)
        metadata["knowledge"] = [{"id": k.id, "score": round(k.score, 4)} for k in knowledge]
        await self.adopt(node, proposal, metadata)

    async def adopt(self, node: Node, proposal: Proposal, metadata: dict) -> None:
        """Make ``proposal`` the node's code and commit it before anything runs."""
        node.code, node.name, node.motivation = proposal.code, proposal.name, proposal.motivation
        node.metadata.update(metadata)
        await self.db.update_node(
            node.id,
            code=node.code,
            name=node.name,
            motivation=node.motivation,
            metadata=node.metadata,
        )

    async def static_check(self, node: Node) -> None:
        """The optional LLM static check: a refusal fails the node before any experiment."""
        checker = getattr(self.agents, "static_checker", None)
        if checker is None or node.step == 0 or node.metadata.get("static_check") == "passed":
            return
        reason = await checker.check(node.code, self.task, node_id=node.id)
        if reason:
            node.metadata["static_check"] = reason
            await self.db.update_node(node.id, metadata=node.metadata)
            raise Rejected(f"static check: {reason}")
        node.metadata["static_check"] = "passed"
        await self.db.update_node(node.id, metadata=node.metadata)

    # -------------------------------------------------------------- experiment
    async def reuse_twin(self, node: Node) -> bool:
        """Commit the evaluation of an earlier node with the same program, if there is one:
        nothing runs, nothing is owed (no judge, no analysis), and the console says so."""
        if not self.settings.reuse_evaluations:
            return False
        twin = await self.db.call(twins.find, node.code, node.id)
        if twin is None:
            return False
        fields = twins.reuse(twin, analyzed=self.settings.use_analyzer)
        for key, value in fields.items():
            setattr(node, key, value)
        node.metadata[twins.TWIN_KEY] = twin.id
        node.metadata.pop(POST_PENDING, None)
        node.metadata.pop(RUNNING_STAGE, None)
        node.started_at = node.finished_at = time.time()
        if self.is_pruned(node.id):
            node.status = PRUNED
        outcome = f"score {twin.score:.6g}" if twin.status == DONE else "failed"
        message = f"same program as #{twin.id} ({outcome}): its evaluation reused, not run again"

        def commit(store: RunStore) -> None:
            store.save_node(node)
            store.add_event("duplicate", message, node.id)

        await self.db.call(commit)
        self.say(f"{_who(node)} {message}")
        return True

    async def evaluate(self, node: Node) -> None:
        """Run the stages (with debug attempts) and commit the outcome at once."""
        node.status, node.started_at = RUNNING, time.time()
        await self.db.update_node(node.id, status=RUNNING, started_at=node.started_at)
        attempts = node.metadata.setdefault("debug_attempts", [])
        while True:
            evaluation = await self._run_stages(node)
            if evaluation.ok or not await self._debug(node, evaluation, attempts):
                break
        await self._commit_evaluation(node, evaluation)

    async def _run_stages(self, node: Node) -> Evaluation:
        """The task's stages through the one stage runner (``engineer.run_stages``), with
        what a run adds: stages committed earlier are reused, gated stages may be skipped,
        slots are held, and every stage is committed as it ends."""
        records: dict[str, Any] = node.metadata.setdefault("stages", {})
        code_hash = hashlib.sha256(node.code.encode()).hexdigest()[:16]
        workdir: list[Path] = []  # made when the first stage runs

        async def decide(stage: Stage, staged: dict[str, Evaluation]) -> Evaluation | str | None:
            done = records.get(stage.name)
            if done and done.get("code") == code_hash and done.get("ok"):
                return _from_record(done)  # committed earlier: never re-run
            skip = await self._promotion_refusal(node, stage, staged)
            if skip:
                records[stage.name] = {"skipped": skip, "code": code_hash}
                self.say(f"{_who(node)} {stage.name} skipped: {skip}")
            return skip or None

        async def run(stage: Stage) -> Evaluation:
            if not workdir:
                workdir.append(workdirs.fresh(self.run_dir, node.step))
            return await self._run_stage(node, stage, workdir[0])

        async def ran(stage: Stage, evaluation: Evaluation) -> None:
            records[stage.name] = {**stage_record(evaluation), "code": code_hash}
            # Until the next stage has its slot (or the evaluation is committed): waiting.
            node.metadata[RUNNING_STAGE] = running_record(WAITING, time.time(), None)
            await self.db.update_node(node.id, metadata=node.metadata)
            took = clock(evaluation.runtime)
            if evaluation.ok:
                score = "" if evaluation.score is None else f", score {evaluation.score:.6g}"
                self.say(f"{_who(node)} {stage.name} passed in {took}{score}")
                if len(self.task.stages) > 1:
                    await self.db.add_event("stage", f"{stage.name} passed{score}", node.id)
            else:
                self.say(f"{_who(node)} {stage.name} failed in {took}: {evaluation.error}"[:300])

        evaluation, _ = await run_stages(self.task.stages, self.task.score_stage, run, decide, ran)
        if len(self.task.stages) > 1:  # skipped stages too, without the resume bookkeeping
            evaluation.results["stages"] = {
                name: {k: v for k, v in record.items() if k != "code"}
                for name, record in records.items()
            }
        return evaluation

    async def _run_stage(self, node: Node, stage: Stage, workdir: Path) -> Evaluation:
        async with self._slots(stage.resources) as grant:
            env = dict(getattr(grant, "env", None) or {})
            # What runs now, committed before the process starts (engine/store/running.py).
            node.metadata[RUNNING_STAGE] = running_record(stage.name, time.time(), stage.timeout)
            await self.db.update_node(node.id, metadata=node.metadata)
            self.say(f"{_who(node)} {stage.name} started (limit {clock(stage.timeout)})")
            return await self.engineer.run_stage(node.code, stage, workdir, env=env)

    @contextlib.asynccontextmanager
    async def _slots(self, resources: Resources) -> AsyncIterator[Any]:
        if self.pool is None:
            yield None
            return
        async with self.pool.acquire(resources) as grant:
            yield grant

    async def _promotion_refusal(
        self, node: Node, stage: Stage, staged: dict[str, Evaluation]
    ) -> str:
        """Why a gated stage is skipped for this node, or "" when it runs."""
        rule = stage.promote
        if rule is None:
            return ""
        if rule.beat_baseline and node.step == 0:
            return "the initial program is the baseline"
        scored = staged.get(self.task.score_stage)
        if scored is None or scored.score is None:
            return f"no {self.task.score_stage} score to promote on"
        score, maximize = scored.score, self.task.maximize
        if rule.beat_baseline:
            root = next(iter(await self.db.nodes("step = 0")), None)
            # Like with like: the root's evaluation score, not a judge's blend of it (the
            # candidate's own judge, if any, comes after all its stages).
            baseline = None if root is None else root.results.get("eval_score", root.score)
            if baseline is not None and not direction.better(score, baseline, maximize):
                return f"does not beat the initial program ({baseline:.6g})"
        if rule.top_k is not None:
            better = await self.db.count_better(score, maximize)
            if better >= rule.top_k:
                return f"not in the top {rule.top_k} ({better} nodes score better)"
        return ""

    async def _debug(self, node: Node, evaluation: Evaluation, attempts: list[dict]) -> bool:
        """Let the debug agent fix a runtime error; True when a fixed program should run."""
        debugger = getattr(self.agents, "debugger", None)
        if debugger is None or node.step == 0 or len(attempts) >= self.settings.debug_attempts:
            return False
        from engine.agents.debugger import DebugInput, is_runtime_error

        if not is_runtime_error(evaluation):
            return False
        inp = DebugInput(
            task_name=self.task.name,
            task_description=self.task.description,
            code=node.code,
            error=evaluation.error,
            stderr_tail=str(evaluation.results.get("stderr_tail", "")),
            attempt=len(attempts) + 1,
            node_id=node.id,
        )
        try:
            fix = await debugger.fix(inp)
        except (asyncio.CancelledError, EndpointError):  # the endpoint is down: the loop stops
            raise
        except Exception as exc:  # noqa: BLE001 - a broken debugger leaves the failure as it is
            fix, why = None, f"{type(exc).__name__}: {exc}"
        else:
            why = "" if fix is not None else getattr(debugger, "last_reason", "") or "no fix"
        record: dict[str, Any] = {"attempt": len(attempts) + 1, "error": evaluation.error}
        if fix is None:
            record["outcome"] = f"no fix: {why}"[:300]
            attempts.append(record)
            await self.db.update_node(node.id, metadata=node.metadata)
            await self.db.add_event(
                "debug", f"attempt {record['attempt']}: {record['outcome']}", node.id
            )
            return False
        record.update(outcome="fixed", motivation=fix.motivation[:500], code_before=node.code)
        attempts.append(record)
        node.code = fix.code
        node.metadata["stages"] = {}
        await self.db.update_node(node.id, code=node.code, metadata=node.metadata)
        await self.db.add_event("debug", f"attempt {record['attempt']}: re-running a fix", node.id)
        return True

    async def _commit_evaluation(self, node: Node, evaluation: Evaluation) -> None:
        node.results = evaluation.results
        node.runtime = evaluation.runtime
        node.score = evaluation.score if evaluation.ok else None
        node.error = evaluation.error
        node.status = DONE if evaluation.ok else FAILED
        if self.is_pruned(node.id):
            node.status = PRUNED
        owed = [ANALYSIS] if self.settings.use_analyzer else []
        if node.status == DONE and self.agents.judge is not None:
            owed.insert(0, JUDGE)
        node.metadata[POST_PENDING] = owed
        node.metadata.pop("stages", None)  # kept in the results now
        node.metadata.pop(RUNNING_STAGE, None)
        node.finished_at = time.time()

        def commit(store: RunStore) -> None:
            store.save_node(node)
            if self.settings.reuse_evaluations:
                twins.remember(store, node)  # after the commit: at worst a reuse missed

        await self.db.call(commit)

    # ------------------------------------------------------------ after commit
    async def post(self, node: Node, parent: Node | None, best: Node | None) -> None:
        """The phases owed after the evaluation commit: judge, analysis, knowledge."""
        owed = list(node.metadata.get(POST_PENDING) or [])
        if JUDGE in owed:
            fields = await self._judge(node, parent, best)
            owed.remove(JUDGE)
            node.metadata[POST_PENDING] = owed
            await self.db.update_node(node.id, metadata=node.metadata, **fields)
        if ANALYSIS in owed:
            report = await self._analyze(node, parent, best)
            node.analysis = report.analysis
            if report.knowledge_proposals:
                node.metadata["knowledge_proposals"] = report.knowledge_proposals
                await self.agents.retriever.propose(node.id, report.knowledge_proposals)
            owed.remove(ANALYSIS)
        node.metadata.pop(POST_PENDING, None)
        await self.db.update_node(node.id, analysis=node.analysis, metadata=node.metadata)

    async def _judge(self, node: Node, parent: Node | None, best: Node | None) -> dict[str, Any]:
        """final = (1 - ratio) * evaluation + ratio * judge; both kept in the results."""
        try:
            verdict = await self.agents.judge.judge(self.analysis_input(node, parent, best))
        except (asyncio.CancelledError, EndpointError):  # owed still: a resume judges it
            raise
        except Exception as exc:  # noqa: BLE001 - a judge failure fails this node only
            # Its evaluation stays in the results, but without the judge there is no score
            # comparable with the other nodes' blended ones.
            log.warning("judge failed for node %s: %s", node.id, exc)
            node.status, node.results["eval_score"], node.score = FAILED, node.score, None
            node.error = f"judge: {type(exc).__name__}: {exc}".splitlines()[0][:500]
            return {"results": node.results, "status": FAILED, "score": None, "error": node.error}
        ratio = self.agents.judge_ratio
        node.results["eval_score"] = node.score
        node.results["judge_score"] = verdict
        node.score = (1 - ratio) * node.score + ratio * verdict
        return {"results": node.results, "score": node.score}

    def analysis_input(self, node: Node, parent: Node | None, best: Node | None) -> AnalysisInput:
        return AnalysisInput(
            task_name=self.task.name,
            task_description=self.task.description,
            node=node,
            parent=parent,
            best=best,
            maximize=self.task.maximize,
        )

    async def _analyze(self, node: Node, parent: Node | None, best: Node | None) -> Report:
        try:
            return await self.agents.analyzer.analyze(self.analysis_input(node, parent, best))
        except (asyncio.CancelledError, EndpointError):  # owed still: a resume analyzes it
            raise
        except Exception as exc:  # noqa: BLE001 - a failed report must not lose the evaluation
            log.warning("analyzer failed for node %s: %s", node.id, exc)
            return Report(analysis=f"(analyzer failed: {type(exc).__name__}: {exc})")


def _from_record(record: dict[str, Any]) -> Evaluation:
    return Evaluation(
        bool(record.get("ok")),
        record.get("score"),
        dict(record.get("results") or {}),
        str(record.get("error") or ""),
        float(record.get("runtime") or 0.0),
    )


def _who(node: Node) -> str:
    """The start of a stage's console line, aligned with the engine's per-node lines."""
    return f"step {node.step:>4}  #{node.id:<5}"


def _nodes(store: RunStore, ids: list[int]) -> list[Node]:
    """(db thread) The nodes with these ids that still exist, in order: one query, as the
    offline Researcher's elite is 30 nodes at every step."""
    found = {n.id: n for n in store.nodes(f"id IN ({', '.join('?' * len(ids))})", list(ids))}
    return [found[i] for i in ids if i in found]
