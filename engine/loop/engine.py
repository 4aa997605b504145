"""The evolution loop's scheduling: which node runs next, how many at once, and stopping.

``workers`` candidates are in flight at once, each an asyncio task running one round of
``engine.loop.pipeline.Pipeline``; the command poller and the heartbeat (``engine.loop.steering``)
run beside them in one ``asyncio.TaskGroup`` from the first second, so Ctrl-C, pause and
stop work even while the initial program is still being evaluated. Every state change of
a node is committed when it happens; a restart re-runs what a crash interrupted (same
node, same step), finishes the analysis a committed evaluation still owes, and fills the
step budget exactly.

The loop never touches SQLite itself: every read and commit runs in the engine's db thread
(``engine.store.writer.StoreThread``, the one user of the engine's one connection while the
loop runs) and is awaited, so a slow disk or a reader holding the WAL delays only the
candidate that writes, never the poller, Ctrl-C or the others. The sampler, the heartbeat and
the cognition retriever reach the database only through that thread too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine import direction
from engine.agents.base import AgentError, Agents, EndpointError
from engine.execution.engineer import Engineer, EvaluationLost
from engine.loop.heartbeat import Heartbeat
from engine.loop.ledger import MAX_LOSSES, Ledger
from engine.loop.pipeline import POST_PENDING, Pipeline, PipelineSettings, Rejected, SlotPool
from engine.loop.steering import Steering
from engine.loop.step_queue import StepQueue
from engine.samplers.barrier import StepBarrier
from engine.samplers.base import Sampler
from engine.store import progress, twins
from engine.store.records import DONE, FAILED, FINISHED, PENDING, PRUNED, Node
from engine.store.run_store import RunStore, StoreError
from engine.store.writer import StoreThread
from engine.task import TaskSpec

log = logging.getLogger(__name__)

__all__ = ["Engine", "EngineError", "Rejected", "Summary"]

# A role's calls failing in a row in a way every call would (a refused key, no such model:
# ``EndpointError``) stop the run at this many: a few, in case it was a passing fault.
ENDPOINT_STOP_AFTER = 3


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
    best_text: str = "-"  # the reported best with its stage (engine/store/standing.py)


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
        can_start: Callable[[RunStore], str | None] = lambda store: None,
        pool: SlotPool | None = None,
        debug_attempts: int = 2,
        backups: Any | None = None,
        reuse_evaluations: bool = True,
    ) -> None:
        # The engine's one connection: the caller's store, which the caller uses before and
        # after run() and the loop only through the db thread, while run() runs. An Engine
        # runs once: run() ends the db thread (the store stays open for the caller).
        self.store = store
        self.db = StoreThread.adopt(store)
        self._sampler_store = getattr(sampler, "store", None)
        if self._sampler_store is not None:
            sampler.store = self.db.store  # sample/observe/prune run in the db thread only
        self.task = task
        self.run_dir = run_dir
        self.agents = agents
        # Step s sees exactly the nodes of steps <= s - workers (reproducible for a seed).
        barrier = sampler if isinstance(sampler, StepBarrier) else StepBarrier(sampler, workers)
        self.sampler = barrier
        self.steps_total = steps_total
        self.workers = workers
        self.say = log
        # A reason not to start another candidate (e.g. a spent budget), or None; it is called
        # in the db thread with the engine's store.
        self.can_start = can_start
        self.pool = pool
        self.engineer = engineer
        self.pipeline = Pipeline(
            self.db,
            task,
            run_dir,
            agents,
            engineer,
            PipelineSettings(use_analyzer, novelty_retries, debug_attempts, reuse_evaluations),
            pool=pool,
            is_pruned=lambda node_id: node_id in self._pruned,
            say=log,
        )
        self.heartbeat = Heartbeat(self.db.post, self._status)
        self.steering = Steering(self.db, self, self.heartbeat.tick)
        self.paused = False
        self.stopping = False
        self.stop_reason = ""
        self.fatal = ""
        self._state = "starting"
        self._wake = asyncio.Event()
        self._root_ready = asyncio.Event()
        self._in_flight: dict[int, asyncio.Task] = {}  # node id -> its task
        # Step count, best score, lost evaluations; the sampler and backups of finished nodes.
        self.ledger = Ledger(task.maximize, lambda node: self.sampler.observe(node), backups)
        self.steps = StepQueue(
            self.db,
            barrier,
            steps_total,
            lambda: self.ledger.steps_done,
            self._wake,
            lambda: self.stopping,
            self.request_stop,
            elite_size=getattr(agents.researcher, "elite_size", 0),
            paused=lambda: self.paused,
        )
        self._pruned: set[int] = set()
        self._started = time.time()

    # ----------------------------------------------------------------- public
    async def run(self) -> Summary:
        try:
            return await self._run()
        finally:
            self.db.close()  # runs what is still queued, then ends the db thread
            if self._sampler_store is not None:
                self.sampler.store = self._sampler_store

    async def _run(self) -> Summary:
        await self.db.call(_book_downtime, time.time())  # before the first beat replaces it
        self._set_state("running")
        requeue, used, done, best = await self.db.call(self._load)
        self.steps.load(requeue, used)
        self.ledger.steps_done, self.ledger.best = done, (best.score if best else None)
        self.heartbeat.start()
        try:
            async with asyncio.TaskGroup() as group:
                poller = group.create_task(self.steering.poll_forever())
                group.create_task(self._main(poller))
        finally:
            self.heartbeat.stop()
            flush = getattr(self.agents.retriever, "flush", None)  # deferred cache fills
            if flush is not None:
                try:
                    await flush()
                except Exception:  # noqa: BLE001 - a cache: the run's outcome stands
                    log.exception("deferred cache fill failed")
            await self.agents.aclose()
            await self.engineer.aclose()
            await self.db.call(self.ledger.final_backup, self.fatal)
        if self.fatal:
            self._set_state("failed")
            try:
                await self.db.add_event("engine", f"engine failed: {self.fatal}")
            except StoreError:  # the store is what broke: the reason goes to the console
                log.warning("engine failed, not recorded in the run database: %s", self.fatal)
            raise EngineError(self.fatal)
        state = "stopped" if self.stopping or self.stop_reason else "finished"
        self._set_state(state)
        summary = await self.summary(state)
        await self.db.add_event(
            "engine",
            f"engine {state}: {summary.steps_done}/{summary.steps_total} steps"
            + (f" ({self.stop_reason})" if self.stop_reason else ""),
        )
        return summary

    def _load(self, store: RunStore) -> tuple[list[Node], set[int], int, Node | None]:
        """(db thread) What a (re)started engine needs: interrupted nodes, used steps, best."""
        store.add_event("engine", f"engine started (pid {os.getpid()})")
        if self.pipeline.settings.reuse_evaluations:
            twins.index(store)  # once per run: a run from before the index gets one
        requeue = [n for n in store.interrupted_nodes() if n.step >= 1]
        for node in requeue:
            store.add_event("resume", f"re-running node #{node.id} (step {node.step})", node.id)
        best = store.best_node(self.task.maximize)
        used = store.used_steps()
        # Resumed: what the next step sees must not depend on where the run was stopped.
        next_step = min(set(range(1, len(used) + 2)) - used)
        lag = self.sampler.lag or 0
        later = store.nodes("step >= ?", [max(1, next_step - lag + 1)]) if lag else []
        held = self.sampler.hold_back(later, next_step)
        if held:
            log.info("resume: %d finished node(s) held back until their steps are due", held)
        return requeue, used, store.steps_done(), best

    def request_stop(self, reason: str = "stop requested") -> None:
        """Stop starting candidates and interrupt those in flight (they re-run on resume)."""
        if self.stopping:
            return
        self.stopping = True
        self.stop_reason = reason
        self.db.post(RunStore.add_event, "engine", f"stopping: {reason}")  # a signal handler
        for task in self._in_flight.values():
            task.cancel()
        self._wake.set()
        self._root_ready.set()

    def pause(self) -> None:
        self.paused = True
        self._set_state("paused")
        self.db.post(_book_idle, progress.idle_opened, time.time())

    def resume(self) -> None:
        self.paused = False
        self._set_state("running")
        self.db.post(_book_idle, progress.idle_closed, time.time())
        self._wake.set()

    def prune(self, node_id: int) -> None:
        self._pruned.add(node_id)
        # Queued before any later sample (same thread, in order): never chosen again.
        self.db.post(lambda store: self.sampler.prune(node_id))
        if node_id in self._in_flight:
            self._in_flight[node_id].cancel()  # stop spending compute on it

    def in_flight(self, node_id: int) -> bool:
        return node_id in self._in_flight

    async def summary(self, state: str) -> Summary:
        best, steps_done = await self.db.call(
            lambda store: (store.standings(self.task.maximize).best(), store.steps_done())
        )
        return Summary(
            steps_done=steps_done,
            steps_total=self.steps_total,
            best_score=best.score if best else None,
            best_node=best.node_id if best else None,
            state=state,
            elapsed=time.time() - self._started,
            best_text=best.describe() if best else "-",
        )

    # ------------------------------------------------------------------- main
    async def _main(self, poller: asyncio.Task) -> None:
        # The retriever's model loads (and the knowledge is embedded), and the LLM SDK is
        # imported, while the initial program is evaluated: neither waits for the other.
        warm_ups = [getattr(self.agents.retriever, "warm_up", None), *self.agents.warmers]
        warming = [asyncio.create_task(self._warm_up(w)) for w in warm_ups if w is not None]
        try:
            await self._root()
            finished = await self.db.nodes("status IN (?, ?, ?)", list(FINISHED))
            owed = [
                n
                for n in finished
                if n.step >= 1 and n.status != PRUNED and n.metadata.get(POST_PENDING)
            ]
            if owed and not self.stopping:
                await self.db.add_event("resume", f"finishing the analysis of {len(owed)} node(s)")
                await asyncio.gather(*(self._tracked(n, self._post_only(n)) for n in owed))
            if not self.stopping:
                await asyncio.gather(*(self._worker() for _ in range(self.workers)))
        except (EngineError, StoreError) as exc:  # StoreError: e.g. the disk is full
            self.fatal = str(exc)
            self.request_stop(self.fatal)
        finally:
            poller.cancel()
            for task in warming:
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    async def _warm_up(self, warm_up: Callable[[], Any]) -> None:
        """Run the retriever's warm-up and say what it reports; a failure is its own to
        report (retrieval degrades to no knowledge), never the run's."""
        try:
            line = await warm_up()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001
            log.exception("retriever warm-up failed")
            return
        if line:
            self.say(line)

    async def _root(self) -> None:
        roots = await self.db.nodes("step = 0")
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
            await self.db.insert_node(root)
        elif root.status == FAILED:
            # Resumed after the task was fixed: evaluate the task's initial program again.
            root.code, root.error, root.status = self.task.initial_code(), "", PENDING
            root.metadata.pop("stages", None)
            await self.db.update_node(root.id, code=root.code, error="", status=PENDING)
        await self.db.add_event("node", "evaluating the initial program", root.id)
        for _ in range(MAX_LOSSES + 1):  # a lost evaluation (a dead worker) runs again
            await self._tracked(root, self._candidate(root))
            if self.stopping:
                return
            root = await self.db.get_node(root.id)
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
            broken, reason = await self.db.call(self._preflight)
            if broken:
                self._broken(broken)
            elif reason:
                # Budget spent: start nothing new; candidates in flight finish normally.
                if not self.stop_reason:
                    self.stop_reason = reason
                    await self.db.add_event("engine", f"no new candidates: {reason}")
                return
            if self.paused:
                continue  # paused while the db thread answered: start nothing
            job = await self.steps.claim()
            if job is None:
                return
            try:
                await self._tracked(job, self._candidate(job))
            finally:
                self.steps.release(job.step)

    def _preflight(self, store: RunStore) -> tuple[str, str | None]:
        """(db thread) Before a claim: (why the database is unusable, why not to start)."""
        try:
            store.check_intact()
        except Exception as exc:  # noqa: BLE001 - StoreError and sqlite3 errors alike
            return (str(exc).splitlines()[0] if str(exc) else type(exc).__name__), None
        return "", self.can_start(store)

    def _broken(self, reason: str) -> None:
        """Stop at once when the run database was deleted, replaced or damaged."""
        self.fatal = reason
        log.error("run database check failed: %s", reason)
        self.request_stop(reason)

    async def _relatives(self, node: Node) -> tuple[Node | None, Node | None, list[Node]]:
        """The node's parent, its best-scoring relative, and its context nodes."""

        def read(store: RunStore) -> tuple[Node | None, list[Node]]:
            parent = store.get_node(node.parent_ids[0]) if node.parent_ids else None
            return parent, [n for i in node.context_ids if (n := store.get_node(i)) is not None]

        parent, context = await self.db.call(read)
        best = direction.best(
            (n for n in context if n.status == DONE and n.score is not None),
            lambda n: n.score,
            self.task.maximize,
            default=parent,
        )
        return parent, best, context

    async def _candidate(self, node: Node) -> None:
        try:
            parent, best, context = await self._relatives(node)
            if not node.code:
                if parent is None:
                    raise AgentError("the node has no parent to work from")
                await self.pipeline.research(node, parent, context)
            if await self.pipeline.reuse_twin(node):  # an earlier node ran this program
                await self._finished(node)
                return
            await self.pipeline.static_check(node)
            await self.pipeline.evaluate(node)  # committed from here on
            await self.pipeline.post(node, parent, best)
            await self._finished(node)
        except asyncio.CancelledError:
            if node.id in self._pruned:  # stopping or not: the prune was answered, it holds
                await self._pruned_in_flight(node)
                return
            if node.status in FINISHED:
                raise  # committed: only the analysis is owed, and resume finishes it
            # Interrupted by stop: the node keeps its code and re-runs on resume. (Queued
            # in order even if this await is cancelled again: see StoreThread.call.) Where
            # even that cannot be written (a full disk), resume re-runs it as "running".
            with contextlib.suppress(StoreError):
                await self.db.update_node(node.id, status=PENDING, started_at=None)
            raise
        except Rejected as exc:
            await self._fail(node, str(exc))
        except EvaluationLost as exc:
            await self._lost(node, str(exc))
        except EndpointError as exc:
            await self._endpoint_down(node, exc)
        except AgentError as exc:
            await self._fail(node, f"researcher: {exc}")
        except StoreError as exc:  # the disk is full: nothing can be recorded, stop the run
            self._broken(str(exc))
        except Exception as exc:  # noqa: BLE001 - one bad candidate must not end a days-long run
            log.exception("node %s failed in the engine", node.id)
            if node.status in FINISHED:
                await self._finished(node)
            else:
                await self._fail(node, f"engine error: {type(exc).__name__}: {exc}")

    async def _lost(self, node: Node, reason: str) -> None:
        """A remote worker died under the node: run the same step again, a few times."""
        losses = self.ledger.lost(node.id)
        if losses > MAX_LOSSES:
            await self._fail(node, f"evaluation lost {losses} times: {reason}")
            return
        node.status, node.started_at = PENDING, None

        def requeue(store: RunStore) -> None:
            store.update_node(node.id, status=PENDING, started_at=None, metadata=node.metadata)
            store.add_event("lost", f"{reason}; step {node.step} re-queued", node.id)

        await self.db.call(requeue)
        self.steps.again(node)

    async def _post_only(self, node: Node) -> None:
        parent, best, _ = await self._relatives(node)
        try:
            await self.pipeline.post(node, parent, best)
        except EndpointError as exc:  # still owed: the next resume tries again
            await self._endpoint_down(node, exc, counted=True)
            return
        await self.db.call(lambda store: self.sampler.observe(node))

    async def _endpoint_down(self, node: Node, exc: EndpointError, counted: bool = False) -> None:
        """An LLM call failed in a way every call would (``EndpointError``). A node not yet
        evaluated goes back to pending, uncounted, and runs again: a spent budget of failed
        steps would leave nothing for the resume after the configuration is fixed. A node
        already evaluated keeps its evaluation; what it owes (judge, analysis) stays owed.
        After ENDPOINT_STOP_AFTER such failures of one role in a row the run stops (exit 1).
        """
        reason = str(exc).splitlines()[0][:500] if str(exc) else "the endpoint failed"
        if node.status in FINISHED:
            owed = ", ".join(node.metadata.get(POST_PENDING) or []) or "nothing"
            await self.db.add_event("endpoint", f"{reason}; owed for a resume: {owed}", node.id)
            if not counted:
                await self._finished(node)
        else:
            node.status, node.started_at = PENDING, None

            def requeue(store: RunStore) -> None:
                store.update_node(node.id, status=PENDING, started_at=None)
                store.add_event("endpoint", f"{reason}; step {node.step} not counted", node.id)

            await self.db.call(requeue)
            self.say(f"step {node.step:>4}  #{node.id:<5} not counted: {reason}"[:300])
            if exc.repeated < ENDPOINT_STOP_AFTER:
                self.steps.again(node)
        if exc.repeated >= ENDPOINT_STOP_AFTER and not self.fatal:
            # Last: request_stop cancels the tasks in flight, this one included.
            self.fatal = (
                f"{exc.role or 'LLM'} calls failed {exc.repeated} times in a row, as every call "
                f"would: {reason} (the steps they failed are not counted: run again with the "
                "configuration fixed to resume them)"
            )
            log.error("%s", self.fatal)
            self.request_stop(self.fatal)

    async def _pruned_in_flight(self, node: Node) -> None:
        """A node pruned while it ran: pruned for good, counted once. (Its status was
        committed as pruned when the command was answered; an evaluation already committed
        keeps its score, its owed analysis is dropped.)"""
        if node.status in FINISHED:
            node.status = PRUNED
            node.metadata.pop(POST_PENDING, None)
            await self.db.update_node(node.id, status=PRUNED, metadata=node.metadata)
            await self._finished(node)
        else:
            await self._fail(node, "pruned while in flight")

    async def _fail(self, node: Node, reason: str) -> None:
        node.status = PRUNED if node.id in self._pruned else FAILED
        node.error = reason.splitlines()[0][:500] if reason else "failed"
        node.finished_at = time.time()
        await self.db.update_node(
            node.id, status=node.status, error=node.error, finished_at=node.finished_at
        )
        await self._finished(node)

    async def _finished(self, node: Node) -> None:
        line, event = self.ledger.finish(node)
        # One db call: the sampler sees the node, then the event, then a periodic backup.
        await self.db.call(self.ledger.record, node, event, self.ledger.steps_done)
        self.say(line)

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
        """Synchronous (pause/resume come from the poller); the meta writes are queued."""
        self._state = state

        def write(store: RunStore) -> None:
            store.set_meta("state", state)
            # Taken when written, not when queued: never older than the heartbeat's own.
            store.set_meta("engine", self.heartbeat.content())

        self.db.post(write)


def _book_idle(store: RunStore, change: Callable[[Any, float], list], at: float) -> None:
    """(db thread) Open or close an idle interval: paused time is not working time
    (``engine/store/progress.py``)."""
    store.set_meta(progress.IDLE_KEY, change(store.get_meta(progress.IDLE_KEY), at))


def _book_downtime(store: RunStore, now: float) -> None:
    """(db thread) The time from the last engine's last beat (a stop, a crash) to this start
    was idle, and so was the rest of a pause it died in."""
    engine = store.get_meta("engine")
    last = engine.get("heartbeat") if isinstance(engine, dict) else None
    if isinstance(last, bool) or not isinstance(last, int | float) or not last < now:
        return
    idle = progress.idle_closed(store.get_meta(progress.IDLE_KEY), last)
    idle = progress.idle_closed(progress.idle_opened(idle, last), now)
    store.set_meta(progress.IDLE_KEY, idle)
