"""An evolution run in-process: the engine's sampler, barrier and store, no evaluator subprocess.

Search-quality benchmarks need hundreds of runs of hundreds of candidates, so they run the
real pieces that decide a run's course - a run store, ``make_sampler`` behind the engine's
step barrier (``engine/samplers/barrier.py``), the Researcher and the loop's bookkeeping of
lineage metadata and the elite - and replace only the evaluator subprocess by a function
called in-process. With W workers, step s sees exactly the nodes of steps <= s - W, as in a
real W-worker run, so a run does not depend on timing and equals the CLI's for its seed.

A candidate whose program text an earlier candidate of the run already had is counted
(``Trace.repeats``): the engine answers it from its cache, but it still costs a step.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine import direction
from engine.agents.base import ResearchContext
from engine.samplers import SamplerSettings, make_sampler
from engine.samplers.barrier import StepBarrier
from engine.store.records import DONE, FAILED, Node
from engine.store.run_store import RunStore

# code -> (score the search sees, score it is judged by, error): the two differ on a noisy task.
Evaluate = Callable[[str], tuple[float | None, float | None, str]]


@dataclass
class Trace:
    """What one run did: per step, the judged score of the best-looking node so far."""

    best: list[float] = field(default_factory=list)  # index 0: the initial program
    parents: list[int] = field(default_factory=list)
    newest3: int = 0  # steps whose parent was one of the 3 newest visible nodes
    repeats: int = 0  # candidates whose program an earlier node of the run already had
    seconds: float = 0.0

    def best_at(self, steps: int) -> float:
        return self.best[min(steps, len(self.best) - 1)]

    def best_step(self) -> int:
        return self.best.index(self.best[-1])


def run_search(
    code: str,
    evaluate: Evaluate,
    researcher: Any,
    *,
    steps: int,
    seed: int,
    workers: int = 2,
    sampler_name: str = "rank",
    maximize: bool = True,
    task_name: str = "task",
) -> Trace:
    """``steps`` candidates from ``code``; returns the run's trace."""
    start = time.perf_counter()
    trace = Trace()
    loop = asyncio.new_event_loop()
    with tempfile.TemporaryDirectory(prefix="search_harness_") as tmp:
        store = RunStore.create(Path(tmp))
        seen, judged, error = evaluate(code)
        root = Node(step=0, code=code, name="initial", status=DONE, score=seen, error=error)
        store.insert_node(root)
        sampler = StepBarrier(
            make_sampler(SamplerSettings(name=sampler_name), store, seed=seed), workers
        )
        nodes: dict[int, Node] = {root.id: root}
        by_step: dict[int, int] = {0: root.id}
        codes = {code}
        best_seen, best_judged = seen, judged
        trace.best.append(judged if judged is not None else float("nan"))
        try:
            for step in range(1, steps + 1):
                selection = sampler.sample(step=step, elite=getattr(researcher, "elite_size", 0))
                trace.parents.append(selection.parent_id)
                last = max(0, step - workers)
                trace.newest3 += selection.parent_id in {
                    by_step.get(k) for k in range(last - 2, last + 1)
                }
                parent = nodes[selection.parent_id]
                node = Node(
                    step=step,
                    parent_ids=[parent.id],
                    context_ids=selection.context_ids,
                    island=selection.island,  # the island sampler places a child by it
                    metadata={"elite_ids": selection.elite_ids} if selection.elite_ids else {},
                )
                store.insert_node(node)
                ctx = ResearchContext(
                    task_name=task_name,
                    task_description="",
                    parent=parent,
                    context=[nodes[i] for i in selection.context_ids],
                    elite=[nodes[i] for i in selection.elite_ids],
                    knowledge=[],
                    step=step,
                    node_id=node.id,
                    maximize=maximize,
                )
                proposal = loop.run_until_complete(researcher.propose(ctx))
                node.code, node.name = proposal.code, proposal.name
                node.motivation = proposal.motivation
                node.metadata.update(proposal.metadata)
                trace.repeats += node.code in codes
                codes.add(node.code)
                node.score, judged, node.error = evaluate(node.code)
                node.status = DONE if node.score is not None else FAILED
                store.save_node(node)
                nodes[node.id] = node
                by_step[step] = node.id
                sampler.observe(node)  # held by the barrier until step + W
                if node.score is not None and (
                    best_seen is None or direction.better(node.score, best_seen, maximize)
                ):
                    best_seen, best_judged = node.score, judged
                trace.best.append(best_judged if best_judged is not None else float("nan"))
        finally:
            client = getattr(researcher, "client", None)
            if client is not None:  # close the HTTP pool inside the loop that opened it
                loop.run_until_complete(client.close())
            loop.close()
        store.close()
    trace.seconds = time.perf_counter() - start
    return trace
