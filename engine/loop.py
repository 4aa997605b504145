"""The evolution loop's scheduling: which node runs next, how many at once, and stopping.

``workers`` candidates are in flight at once, each an asyncio task running one round of
``engine.pipeline.Pipeline``; the command poller and the heartbeat (``engine.steering``)
run beside them in one ``asyncio.TaskGroup`` from the first second, so Ctrl-C, pause and
stop work even while the initial program is still being evaluated. Every state change of
a node is committed when it happens; a restart re-runs what a crash interrupted (same
node, same step), finishes the analysis a committed evaluation still owes, and fills the
step budget exactly.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.agents.base import AgentError, Agents
from engine.executor import Engineer, EvaluationLost
from engine.heartbeat import Heartbeat
from engine.pipeline import POST_PENDING, Pipeline, PipelineSettings, Rejected, SlotPool
from engine.records import DONE, FAILED, FINISHED, PENDING, PRUNED, Node
from engine.samplers.base import Sampler
from engine.steering import Steering
from engine.store import RunStore
from engine.task import TaskSpec

log = logging.getLogger(__name__)

MAX_LOSSES = 3  # a node whose evaluation was lost more often than this fails

__all__ = ["Engine", "EngineError", "Rejected", "Summary"]


class EngineError(Exception):
    """The run cannot go on (the initial program fails, the database is gone)."""


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
        pool: SlotPool | None = None,
        debug_attempts: int = 2,
        backups: Any | None = None,
    ) -> None:
        self.store = store
        self.task = task
        self.run_dir = run_dir
        self.agents = agents
        self.sampler = sampler
        self.steps_total = steps_total
        self.workers = workers
        self.say = log
        # Returns a reason not to start another candidate (e.g. a spent budget), or None.
        self.can_start = can_start
        self.pool = pool
        self.backups = backups  # engine.backup.Backups: .maybe(store, n) and .now(store)
        self.pipeline = Pipeline(
            store,
            task,
            run_dir,
            agents,
            engineer,
            PipelineSettings(use_analyzer, novelty_retries, debug_attempts),
            pool=pool,
            is_pruned=lambda node_id: node_id in self._pruned,
        )
        self.heartbeat = Heartbeat(run_dir, self._status)
        self.steering = Steering(store, self, self.heartbeat.tick)
        self.paused = False
        self.stopping = False
        self.stop_reason = ""
        self.fatal = ""
        self._state = "starting"
        self._wake = asyncio.Event()
        self._root_ready = asyncio.Event()
        self._in_flight: dict[int, asyncio.Task] = {}  # node id -> its task
        self._claimed_steps: set[int] = set()
        self._used_steps: set[int] = set()  # loaded once; kept in memory (no per-step scans)
        self._steps_done = 0
        self._requeue: list[Node] = []
        self._pruned: set[int] = set()
        self._losses: dict[int, int] = {}  # node id -> evaluations lost with their worker
        self._started = time.time()
        self._best: float | None = None

    # ----------------------------------------------------------------- public
    async def run(self) -> Summary:
        self._set_state("running")
        self.store.add_event("engine", f"engine started (pid {os.getpid()})")
        self._requeue = [n for n in self.store.interrupted_nodes() if n.step >= 1]
        self._used_steps = self.store.used_steps()
        self._steps_done = self.store.steps_done()
        for node in self._requeue:
            self.store.add_event(
                "resume", f"re-running node #{node.id} (step {node.step})", node.id
            )
        best = self.store.best_node(self.task.maximize)
        self._best = best.score if best else None
        self.heartbeat.start()
        try:
            async with asyncio.TaskGroup() as group:
                poller = group.create_task(self.steering.poll_forever())
                group.create_task(self._main(poller))
        finally:
            self.heartbeat.stop()
            await self.agents.aclose()
            self._final_backup()
        if self.fatal:
            self._set_state("failed")
            self.store.add_event("engine", f"engine failed: {self.fatal}")
            raise EngineError(self.fatal)
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
        self._root_ready.set()

    def pause(self) -> None:
        self.paused = True
        self._set_state("paused")

    def resume(self) -> None:
        self.paused = False
        self._set_state("running")
        self._wake.set()

    def prune(self, node_id: int) -> None:
        self._pruned.add(node_id)
        self.sampler.prune(node_id)
        if node_id in self._in_flight:
            self._in_flight[node_id].cancel()  # stop spending compute on it

    def in_flight(self, node_id: int) -> bool:
        return node_id in self._in_flight

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

    # ------------------------------------------------------------------- main
    async def _main(self, poller: asyncio.Task) -> None:
        try:
            await self._root()
            owed = [
                n
                for n in self.store.nodes("status IN (?, ?, ?)", list(FINISHED))
                if n.step >= 1 and n.metadata.get(POST_PENDING)
            ]
            if owed and not self.stopping:
                self.store.add_event("resume", f"finishing the analysis of {len(owed)} node(s)")
                await asyncio.gather(*(self._tracked(n, self._post_only(n)) for n in owed))
            if not self.stopping:
                await asyncio.gather(*(self._worker() for _ in range(self.workers)))
        except EngineError as exc:
            self.fatal = str(exc)
        finally:
            poller.cancel()

    async def _root(self) -> None:
        roots = list(self.store.nodes("step = 0"))
        root = roots[0] if roots else None
        if root is not None and root.status in (DONE, PRUNED):
            if root.metadata.get(POST_PENDING):
                await self._tracked(root, self._post_only(root))
            return
        if root is None:
            root = Node(
                step=0,
                name="initial",
                code=self.task.initial_code(),
                status=PENDING,
                motivation="The task's initial program.",
            )
            self.store.insert_node(root)
        elif root.status == FAILED:
            # Resumed after the task was fixed: evaluate the task's initial program again.
            root.code, root.error, root.status = self.task.initial_code(), "", PENDING
            root.metadata.pop("stages", None)
            self.store.update_node(root.id, code=root.code, error="", status=PENDING)
        self.store.add_event("node", "evaluating the initial program", root.id)
        for _ in range(MAX_LOSSES + 1):  # a lost evaluation (a dead worker) runs again
            await self._tracked(root, self._candidate(root))
            if self.stopping:
                return
            root = self.store.get_node(root.id)
            if root is None or root.status != PENDING:
                break
        if root is None or root.status != DONE:
            reason = root.error if root else "the node is gone"
            raise EngineError(f"the initial program failed evaluation: {reason}")

    async def _tracked(self, node: Node, work: Any) -> None:
        """Run ``work`` for ``node`` as a cancellable in-flight task (stop, prune)."""
        task = asyncio.create_task(work)
        self._in_flight[node.id] = task
        try:
            await task
        except asyncio.CancelledError:
            if not self.stopping and not task.cancelled():
                raise
        finally:
            self._in_flight.pop(node.id, None)

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
            try:
                await self._tracked(job, self._candidate(job))
            finally:
                self._claimed_steps.discard(job.step)

    def _claim(self) -> Node | None:
        """The next node to work on: an interrupted one, else a new step within budget."""
        self._check_store()
        if self.stopping:
            return None
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
            selection = self.sampler.sample(step=step)
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

    def _check_store(self) -> None:
        """Stop at once when the run database was deleted, replaced or damaged."""
        check = getattr(self.store, "check_intact", None)
        if check is None:
            return
        try:
            check()
        except Exception as exc:  # noqa: BLE001 - StoreError and sqlite3 errors alike
            self.fatal = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            log.error("run database check failed: %s", self.fatal)
            self.request_stop(self.fatal)

    def _relatives(self, node: Node) -> tuple[Node | None, Node | None]:
        parent = self.store.get_node(node.parent_ids[0]) if node.parent_ids else None
        context = [n for i in node.context_ids if (n := self.store.get_node(i)) is not None]
        best = max(
            (n for n in context if n.status == DONE and n.score is not None),
            key=lambda n: n.score if self.task.maximize else -n.score,
            default=parent,
        )
        return parent, best

    async def _candidate(self, node: Node) -> None:
        try:
            parent, best = self._relatives(node)
            if not node.code:
                if parent is None:
                    raise AgentError("the node has no parent to work from")
                context = [n for i in node.context_ids if (n := self.store.get_node(i))]
                await self.pipeline.research(node, parent, context)
            await self.pipeline.static_check(node)
            await self.pipeline.evaluate(node)  # committed from here on
            await self.pipeline.post(node, parent, best)
            self._finished(node)
        except asyncio.CancelledError:
            if node.status in FINISHED:
                raise  # committed: only the analysis is owed, and resume finishes it
            if node.id in self._pruned and not self.stopping:
                self._fail(node, "pruned while in flight")
                return
            # Interrupted by stop: the node keeps its code and re-runs on resume.
            self.store.update_node(node.id, status=PENDING, started_at=None)
            raise
        except Rejected as exc:
            self._fail(node, str(exc))
        except EvaluationLost as exc:
            self._lost(node, str(exc))
        except AgentError as exc:
            self._fail(node, f"researcher: {exc}")
        except Exception as exc:  # noqa: BLE001 - one bad candidate must not end a days-long run
            log.exception("node %s failed in the engine", node.id)
            if node.status in FINISHED:
                self._finished(node)
            else:
                self._fail(node, f"engine error: {type(exc).__name__}: {exc}")

    def _lost(self, node: Node, reason: str) -> None:
        """A remote worker died under the node: run the same step again, a few times."""
        losses = self._losses.get(node.id, 0) + 1
        self._losses[node.id] = losses
        if losses > MAX_LOSSES:
            self._fail(node, f"evaluation lost {losses} times: {reason}")
            return
        node.status, node.started_at = PENDING, None
        self.store.update_node(node.id, status=PENDING, started_at=None, metadata=node.metadata)
        self.store.add_event("lost", f"{reason}; step {node.step} re-queued", node.id)
        if node.step >= 1:
            self._requeue.append(node)

    async def _post_only(self, node: Node) -> None:
        parent, best = self._relatives(node)
        await self.pipeline.post(node, parent, best)
        self.sampler.observe(node)

    def _fail(self, node: Node, reason: str) -> None:
        node.status = PRUNED if node.id in self._pruned else FAILED
        node.error = reason.splitlines()[0][:500] if reason else "failed"
        node.finished_at = time.time()
        self.store.update_node(
            node.id, status=node.status, error=node.error, finished_at=node.finished_at
        )
        self._finished(node)

    def _finished(self, node: Node) -> None:
        if node.step >= 1:
            self._steps_done += 1
        self.sampler.observe(node)
        self._report(node)
        if self.backups is not None:
            try:
                self.backups.maybe(self.store, self._steps_done)
            except Exception:  # noqa: BLE001 - a failed backup is logged, the run goes on
                log.exception("backup failed")
                self.store.add_event("backup", "backup failed: see engine.log")

    def _final_backup(self) -> None:
        if self.backups is None or self.fatal:
            return
        try:
            self.backups.now(self.store)
        except Exception:  # noqa: BLE001
            log.exception("final backup failed")

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
        self.say(f"step {node.step:>4}  #{node.id:<5} <- {parent:<6} {outcome}  | best {best}")

    # -------------------------------------------------------------- heartbeat
    def _status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "state": self._state,
            "busy": len(self._in_flight),
            "workers": self.workers,
            "started": self._started,
        }
        usage = getattr(self.pool, "usage", None)
        if usage is not None:
            status["slots"] = usage()
        return status

    def _set_state(self, state: str) -> None:
        self._state = state
        self.store.set_meta("state", state)
        self.store.set_meta("engine", self.heartbeat.content())
