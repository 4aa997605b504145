"""The contracts between the loop and its agents.

The loop only knows these shapes: a Researcher turns a research context into a
Proposal, an Analyzer turns an evaluated node into a Report, and a Retriever returns
knowledge for the context nodes. Offline and LLM agents implement the same methods,
so the loop never asks which kind it holds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from engine.store.records import Node


class AgentSetupError(Exception):
    """The agents cannot be built from this configuration (one-line reason)."""


class AgentError(Exception):
    """An agent could not produce its output; the node fails with this reason."""


class EndpointError(AgentError):
    """A failure of the model endpoint that every call meets again: a refused key (401),
    no access (403), no such model (404), a parameter the model refuses that cannot be left
    out. Failing node after node for it would spend the whole step budget in seconds, so
    the loop does not count the step and stops the run after a few in a row.

    ``role``: whose calls fail; ``repeated``: how many of that role's calls failed so in a
    row (a successful call of the role starts the count again).
    """

    def __init__(self, message: str, role: str = "", repeated: int = 1) -> None:
        super().__init__(message)
        self.role = role
        self.repeated = repeated


@dataclass
class Knowledge:
    """One retrieved cognition item, with the similarity that brought it."""

    id: int
    title: str
    content: str
    score: float = 0.0


@dataclass
class ResearchContext:
    """Everything the Researcher sees for one round."""

    task_name: str
    task_description: str
    parent: Node
    context: list[Node]
    knowledge: list[Knowledge]
    step: int
    node_id: int
    maximize: bool = True
    # The run's fittest nodes, for a researcher that models the population (the offline
    # one asks for them with ``elite_size``); prompts do not show them.
    elite: list[Node] = field(default_factory=list)
    # Free-form extras (e.g. the cognition ablation flag, raw logs when no analyzer).
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class Proposal:
    """The Researcher's candidate: code plus why it was written."""

    code: str
    name: str
    motivation: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class AnalysisInput:
    """Everything the Analyzer sees for one evaluated node."""

    task_name: str
    task_description: str
    node: Node
    parent: Node | None
    best: Node | None
    maximize: bool = True


@dataclass
class Report:
    """The Analyzer's decision-oriented summary, and knowledge it proposes to keep."""

    analysis: str
    knowledge_proposals: list[dict[str, str]] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)


class Researcher(Protocol):
    label: str

    async def propose(self, ctx: ResearchContext) -> Proposal: ...


class Analyzer(Protocol):
    label: str

    async def analyze(self, inp: AnalysisInput) -> Report: ...


class Retriever(Protocol):
    """The loop's view of the cognition base."""

    async def retrieve(self, node_id: int, context: list[Node]) -> list[Knowledge]:
        """Knowledge for a round whose sampled context nodes are ``context``."""
        ...

    async def propose(self, node_id: int, proposals: list[dict[str, str]]) -> None:
        """Keep what the Analyzer proposes (pending a person's approval)."""
        ...

    async def novelty(self, node_id: int, motivation: str) -> str | None:
        """A reason such as 'duplicate of #12' when the idea was already tried, else None."""
        ...


class NoRetriever:
    """Retrieval switched off (no cognition base, or the --no-cognition ablation)."""

    async def retrieve(self, node_id: int, context: list[Node]) -> list[Knowledge]:
        return []

    async def propose(self, node_id: int, proposals: list[dict[str, str]]) -> None:
        return None

    async def novelty(self, node_id: int, motivation: str) -> str | None:
        return None


class Judge(Protocol):
    """Optional LLM judge: a score for a candidate on the evaluation's scale."""

    async def judge(self, inp: AnalysisInput) -> float: ...


@dataclass
class Agents:
    """The agents one run works with (the judge is optional)."""

    researcher: Researcher
    analyzer: Analyzer
    retriever: Retriever
    judge: Judge | None = None
    judge_ratio: float = 0.0
    # Optional: fixes crashes within a node (engine/agents/debugger.py) and refuses a
    # candidate before any experiment (engine/agents/llm/static_check.py).
    debugger: Any | None = None
    static_checker: Any | None = None
    # Releases what the agents hold (HTTP connection pools), inside the event loop that
    # used them: a pool closed later, by the garbage collector, finds its loop gone.
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # Run beside the initial program's evaluation: slow imports and model loads (the LLM
    # SDK) that would otherwise delay the first evaluation. Each returns a line to print,
    # or "".
    warmers: list[Callable[[], Awaitable[str]]] = field(default_factory=list)

    async def aclose(self) -> None:
        for close in self.closers:
            await close()
