"""The evolution loop: sample → retrieve → research → experiment → analyze → store.

``workers`` candidates are in flight at once, each an asyncio task. Every state change
of a node is committed when it happens; a restart re-runs what a crash interrupted
(same node, same step) and fills the step budget exactly. Commands written to the run
database (pause, resume, prune, stop) are polled and honoured within a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine.agents.base import (
    AgentError,
    Agents,
    AnalysisInput,
    Proposal,
    Report,
    ResearchContext,
)
from engine.executor import Engineer, Evaluation
from engine.records import DONE, FAILED, PENDING, PRUNED, RUNNING, Node
from engine.samplers.base import Sampler
from engine.store import RunStore
from engine.task import TaskSpec

POLL_SECONDS = 0.25
HEARTBEAT_SECONDS = 1.0


class EngineError(Exception):
    """The run cannot go on (e.g. the initial program does not evaluate)."""


class Rejected(Exception):
    """The candidate is refused before evaluation (e.g. a duplicate idea); no run is spent."""


@dataclass
class Summary:
    steps_done: int
    steps_total: int
    best_score: float | None
    best_node: int | None
    state: str
    elapsed: float


class Engine:
    def __init__(
        self,
        store: RunStore,
        task: TaskSpec,
        run_dir: Path,
        agents: Agents,
        sampler: Sampler,
        engineer: Engineer,
        steps_total: int,
        workers: int,
        use_analyzer: bool = True,
        novelty_retries: int = 3,
        log: Callable[[str], None] = lambda line: None,
        can_start: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.store = store
        self.task = task
        self.run_dir = run_dir
        self.agents = agents
        self.sampler = sampler
        self.engineer = engineer
        self.steps_total = steps_total
        self.workers = workers
        self.use_analyzer = use_analyzer
        self.novelty_retries = novelty_retries
        self.log = log
        # Returns a reason not to start another candidate (e.g. a spent budget), or None.
        self.can_start = can_start
        self.paused = False
        self.stopping = False
        self.stop_reason = ""
        self._wake = asyncio.Event()
        self._in_flight: dict[int, asyncio.Task] = {}  # node id -> its task
        self._claimed_steps: set[int] = set()
        self._used_steps: set[int] = set()  # loaded once; kept in memory (no per-step scans)
        self._steps_done = 0
        self._requeue: list[Node] = []
        self._pruned: set[int] = set()
        self._started = time.time()
        self._best: float | None = None

    # ----------------------------------------------------------------- public
    async def run(self) -> Summary:
        self._set_state("running")
        self.store.add_event("engine", f"engine started (pid {os.getpid()})")
        await self._ensure_root()
        self._requeue = [n for n in self.store.interrupted_nodes() if n.step >= 1]
        self._used_steps = self.store.used_steps()
        self._steps_done = self.store.steps_done()
        for node in self._requeue:
            self.store.add_event(
                "resume", f"re-running node #{node.id} (step {node.step})", node.id
            )
        best = self.store.best_node(self.task.maximize)
        self._best = best.score if best else None
        poller = asyncio.create_task(self._poll_commands())
        try:
            await asyncio.gather(*(self._worker() for _ in range(self.workers)))
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
            await self.agents.aclose()
        state = "stopped" if self.stopping or self.stop_reason else "finished"
        self._set_state(state)
        summary = self.summary(state)
        self.store.add_event(
            "engine",
            f"engine {state}: {summary.steps_done}/{summary.steps_total} steps"
            + (f" ({self.stop_reason})" if self.stop_reason else ""),
        )
        return summary

    def request_stop(self, reason: str = "stop requested") -> None:
        """Stop starting candidates and interrupt those in flight (they re-run on resume)."""
        if self.stopping:
            return
        self.stopping = True
        self.stop_reason = reason
        self.store.add_event("engine", f"stopping: {reason}")
        for task in self._in_flight.values():
            task.cancel()
        self._wake.set()

    def summary(self, state: str) -> Summary:
        best = self.store.best_node(self.task.maximize)
        return Summary(
            steps_done=self.store.steps_done(),
            steps_total=self.steps_total,
            best_score=best.score if best else None,
            best_node=best.id if best else None,
            state=state,
            elapsed=time.time() - self._started,
        )

    # ------------------------------------------------------------------- root
    async def _ensure_root(self) -> None:
        roots = list(self.store.nodes("step = 0"))
        if roots and roots[0].status in (DONE, PRUNED):
            return
        if roots and roots[0].status == FAILED:
            raise EngineError(f"the initial program failed evaluation: {roots[0].error}")
        root = roots[0] if roots else None
        if root is None:
            root = Node(
                step=0,
                name="initial",
                code=self.task.initial_code(),
                status=PENDING,
                motivation="The task's initial program.",
            )
            self.store.insert_node(root)
            self.store.add_event("node", "evaluating the initial program", root.id)
        await self._evaluate_and_store(root, parent=None, best=None)
        if root.status != DONE:
            raise EngineError(f"the initial program failed evaluation: {root.error}")

    # ---------------------------------------------------------------- workers
    async def _worker(self) -> None:
        while True:
            while self.paused and not self.stopping:
                self._wake.clear()
                await self._wake.wait()
            if self.stopping:
                return
            reason = self.can_start()
            if reason:
                # Budget spent: start nothing new; candidates in flight finish normally.
                if not self.stop_reason:
                    self.stop_reason = reason
                    self.store.add_event("engine", f"no new candidates: {reason}")
                return
            job = self._claim()
            if job is None:
                return
            task = asyncio.create_task(self._candidate(job))
            self._in_flight[job.id] = task
            try:
                await task
            except asyncio.CancelledError:
                if not self.stopping:
                    raise
            finally:
                self._in_flight.pop(job.id, None)
                self._claimed_steps.discard(job.step)

    def _claim(self) -> Node | None:
        """The next node to work on: an interrupted one, else a new step within budget."""
        if self._requeue:
            node = self._requeue.pop(0)
            self._claimed_steps.add(node.step)
            return node
        if self._steps_done + len(self._claimed_steps) >= self.steps_total:
            return None
        step = 1
        while step in self._used_steps:
            step += 1
        try:
            selection = self.sampler.sample()
        except LookupError:
            self.request_stop("no eligible parent node left")
            return None
        node = Node(
            step=step,
            parent_ids=[selection.parent_id],
            context_ids=selection.context_ids,
            island=selection.island,
            status=PENDING,
        )
        self.store.insert_node(node)
        self._used_steps.add(step)
        self._claimed_steps.add(step)
        return node

    async def _candidate(self, node: Node) -> None:
        try:
            parent = self.store.get_node(node.parent_ids[0]) if node.parent_ids else None
            context = [n for i in node.context_ids if (n := self.store.get_node(i)) is not None]
            if not node.code:
                if parent is None:
                    raise AgentError("the node has no parent to work from")
                await self._research(node, parent, context)
            best = max(
                (n for n in context if n.status == DONE and n.score is not None),
                key=lambda n: n.score if self.task.maximize else -n.score,
                default=parent,
            )
            await self._evaluate_and_store(node, parent, best)
        except asyncio.CancelledError:
            if node.id in self._pruned and not self.stopping:
                self._fail(node, "pruned while in flight")
                return
            # Interrupted by stop: the node keeps its code and re-runs on resume.
            self.store.update_node(node.id, status=PENDING, started_at=None)
            raise
        except Rejected as exc:
            self._fail(node, str(exc))
        except AgentError as exc:
            self._fail(node, f"researcher: {exc}")
        except Exception as exc:  # noqa: BLE001 - one bad candidate must not end a days-long run
            self._fail(node, f"engine error: {type(exc).__name__}: {exc}")

    async def _research(self, node: Node, parent: Node, context: list[Node]) -> None:
        knowledge = await self.agents.retriever.retrieve(node.id, context)
        ctx = ResearchContext(
            task_name=self.task.name,
            task_description=self.task.description,
            parent=parent,
            context=context,
            knowledge=knowledge,
            step=node.step,
            node_id=node.id,
            maximize=self.task.maximize,
            extras={"use_analyzer": self.use_analyzer},
        )
        rejected: list[dict[str, str]] = []
        for _ in range(1 + self.novelty_retries):
            proposal = await self.agents.researcher.propose(ctx)
            if not proposal.code.strip():
                raise AgentError("the researcher returned no code")
            duplicate = await self.agents.retriever.novelty(node.id, proposal.motivation)
            if duplicate is None:
                break
            rejected.append({"name": proposal.name, "reason": duplicate})
            self.store.add_event("novelty", f"proposal rejected: {duplicate}", node.id)
        else:
            self._adopt(node, proposal, {"rejected_proposals": rejected})
            raise Rejected(duplicate)
        metadata = {"rejected_proposals": rejected} if rejected else {}
        metadata.update(proposal.metadata)
        metadata["knowledge"] = [{"id": k.id, "score": round(k.score, 4)} for k in knowledge]
        self._adopt(node, proposal, metadata)

    def _adopt(self, node: Node, proposal: Proposal, metadata: dict) -> None:
        """Make ``proposal`` the node's code and commit it before anything runs."""
        node.code, node.name, node.motivation = proposal.code, proposal.name, proposal.motivation
        node.metadata.update(metadata)
        self.store.update_node(
            node.id,
            code=node.code,
            name=node.name,
            motivation=node.motivation,
            metadata=node.metadata,
        )

    async def _evaluate_and_store(self, node: Node, parent: Node | None, best: Node | None) -> None:
        node.status = RUNNING
        node.started_at = time.time()
        self.store.update_node(node.id, status=RUNNING, started_at=node.started_at)
        workdir = self.run_dir / "nodes" / f"{node.step:06d}"
        evaluation: Evaluation = await self.engineer.evaluate(node.code, workdir)
        node.results = evaluation.results
        node.runtime = evaluation.runtime
        node.score = evaluation.score if evaluation.ok else None
        node.error = evaluation.error
        node.status = DONE if evaluation.ok else FAILED
        if node.status == DONE and self.agents.judge is not None:
            await self._blend_judge(node, parent, best)
        report = await self._analyze(node, parent, best)
        node.analysis = report.analysis
        if report.knowledge_proposals:
            node.metadata["knowledge_proposals"] = report.knowledge_proposals
            await self.agents.retriever.propose(node.id, report.knowledge_proposals)
        if node.id in self._pruned:
            node.status = PRUNED
        node.finished_at = time.time()
        self.store.save_node(node)
        self._finished(node)

    def _finished(self, node: Node) -> None:
        if node.step >= 1:
            self._steps_done += 1
        self.sampler.observe(node)
        self._report(node)

    async def _blend_judge(self, node: Node, parent: Node | None, best: Node | None) -> None:
        """final = (1 - ratio) * evaluation + ratio * judge; both kept in the results."""
        inp = self._analysis_input(node, parent, best)
        try:
            verdict = await self.agents.judge.judge(inp)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a judge failure fails this node only
            node.status, node.score = FAILED, None
            node.error = f"judge: {type(exc).__name__}: {exc}".splitlines()[0][:500]
            return
        ratio = self.agents.judge_ratio
        node.results["eval_score"] = node.score
        node.results["judge_score"] = verdict
        node.score = (1 - ratio) * node.score + ratio * verdict

    def _analysis_input(self, node: Node, parent: Node | None, best: Node | None) -> AnalysisInput:
        return AnalysisInput(
            task_name=self.task.name,
            task_description=self.task.description,
            node=node,
            parent=parent,
            best=best,
            maximize=self.task.maximize,
        )

    async def _analyze(self, node: Node, parent: Node | None, best: Node | None) -> Report:
        if not self.use_analyzer:
            return Report(analysis="")
        inp = self._analysis_input(node, parent, best)
        try:
            return await self.agents.analyzer.analyze(inp)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a failed report must not lose the evaluation
            return Report(analysis=f"(analyzer failed: {type(exc).__name__}: {exc})")

    def _fail(self, node: Node, reason: str) -> None:
        node.status = PRUNED if node.id in self._pruned else FAILED
        node.error = reason.splitlines()[0][:500] if reason else "failed"
        node.finished_at = time.time()
        self.store.update_node(
            node.id, status=node.status, error=node.error, finished_at=node.finished_at
        )
        self._finished(node)

    def _report(self, node: Node) -> None:
        if node.status == DONE and node.score is not None and math.isfinite(node.score):
            better = self._best is None or (
                node.score > self._best if self.task.maximize else node.score < self._best
            )
            if better:
                self._best = node.score
        parent = f"#{node.parent_ids[0]}" if node.parent_ids else "-"
        best = "-" if self._best is None else f"{self._best:.6g}"
        if node.status == DONE:
            outcome = f"score {node.score:.6g}"
        else:
            outcome = f"{node.status.upper()}: {node.error}"
        self.store.add_event("node", f"step {node.step} #{node.id} {outcome}", node.id)
        self.log(f"step {node.step:>4}  #{node.id:<5} <- {parent:<6} {outcome}  | best {best}")

    # --------------------------------------------------------------- commands
    async def _poll_commands(self) -> None:
        last_beat = 0.0
        while True:
            for command in self.store.new_commands():
                ok, result = self._handle(command.kind, command.arg)
                self.store.finish_command(command.id, result, ok)
                self.store.add_event("command", f"{command.kind} {command.arg}: {result}".strip())
            now = time.time()
            if now - last_beat >= HEARTBEAT_SECONDS:
                self._heartbeat(now)
                last_beat = now
            await asyncio.sleep(POLL_SECONDS)

    def _handle(self, kind: str, arg: str) -> tuple[bool, str]:
        if kind == "pause":
            self.paused = True
            self._set_state("paused")
            return True, "paused: no new candidates start; running ones finish"
        if kind == "resume":
            self.paused = False
            self._set_state("running")
            self._wake.set()
            return True, "resumed"
        if kind == "stop":
            self.request_stop("stop command")
            return True, "stopping"
        if kind == "prune":
            return self._prune(arg)
        return False, f"unknown command {kind!r}"

    def _prune(self, arg: str) -> tuple[bool, str]:
        try:
            node_id = int(arg.lstrip("#"))
        except ValueError:
            return False, f"prune needs a node id, got {arg!r}"
        node = self.store.get_node(node_id)
        if node is None:
            return False, f"no node #{node_id}"
        if node.step == 0:
            return False, "the initial program cannot be pruned"
        if node.status == PRUNED:
            return True, f"node #{node_id} was already pruned"
        self._pruned.add(node_id)
        self.sampler.prune(node_id)
        if node.status in (DONE, FAILED):
            self.store.update_node(node_id, status=PRUNED)
        elif node_id in self._in_flight:
            self._in_flight[node_id].cancel()  # stop spending compute on it
        return True, f"pruned node #{node_id}"

    def _heartbeat(self, now: float) -> None:
        self.store.set_meta(
            "engine",
            {
                "pid": os.getpid(),
                "heartbeat": now,
                "state": self._state,
                "busy": len(self._in_flight),
                "workers": self.workers,
                "started": self._started,
            },
        )

    def _set_state(self, state: str) -> None:
        self._state = state
        self.store.set_meta("state", state)
        self._heartbeat(time.time())
