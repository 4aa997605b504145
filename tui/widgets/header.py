"""The header: the run at a glance (task, engine state, progress, best, LLM use, elapsed).

Progress is what a person checks first on a long run: the speed (candidates per minute),
when the budget will be spent (ETA, while an engine works), and how many candidates have
finished since the best was found, turned into a visible warning once the search stalls.

Where the task verifies its promising nodes, the best shown is the run's *reported* best
(``engine/store/standing.py``): the best verified node, naming the stage its score comes
from (``best 0.6117 (#3, verify; explore 0.9)``), and the nodes whose verify score fell
below the initial program's are counted as a warning.

Facts are short segments packed greedily into as many lines as the width needs, so a fact
is never split across lines at 80 columns and the header stays two lines on wide screens.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.text import Text
from textual.geometry import Size
from textual.widget import Widget

from engine.store.progress import Progress, format_eta
from engine.store.reader import EngineState, LlmTotals, NodeRow
from engine.store.standing import Best
from tui import format as fmt

SEP = "  "


@dataclass
class RunSummary:
    """What the header shows; built by the poller on every tick."""

    task: str = "?"
    run_dir: str = ""
    engine: EngineState = field(default_factory=lambda: EngineState(False, "not running"))
    steps_done: int = 0
    steps_total: int | None = None
    nodes: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    best: NodeRow | None = None
    llm_mode: str = "?"
    llm: LlmTotals = field(default_factory=LlmTotals)
    elapsed: float | None = None
    pending_items: int | None = None  # None: the run has no cognition base
    progress: Progress | None = None
    verify_stage: str | None = None  # the task's verify stage: ``reported`` is the best
    reported: Best | None = None  # the run's reported best (Standings.best())
    flagged: int = 0  # verified nodes below the baseline's verify score


def segments(s: RunSummary) -> list[Text]:
    out = [
        Text.assemble(("ASI-Evolve ", "bold"), (fmt.one_line(s.task, 30), "bold cyan")),
        Text(_short_path(s.run_dir), style="dim"),
        fmt.state(s.engine.state),
        Text(f"steps {s.steps_done}/{'?' if s.steps_total is None else s.steps_total}"),
    ]
    p = s.progress
    if p is not None and p.per_minute is not None:
        speed = f"{p.per_minute:.3g}/min"
        if s.engine.live and p.eta_seconds is not None:
            speed += f" · eta {format_eta(p.eta_seconds)}"
        out.append(Text(speed))
    if s.engine.live:
        out.append(Text(f"workers {s.engine.busy}/{s.engine.workers} busy"))
        if slots := slot_use(s.engine.slots):
            out.append(Text(slots))
    if s.verify_stage is not None:
        best = "-" if s.reported is None else s.reported.describe()
    else:
        best = "-" if s.best is None else f"{fmt.score(s.best.score)} (#{s.best.id})"
    out.append(Text.assemble("best ", (best, "bold green")))
    if s.flagged:
        below = f"⚠ {s.flagged} {s.verify_stage} below baseline"
        out.append(Text(below, style="bold red"))
    if p is not None and p.stalled:
        out.append(Text(f"⚠ stalled: {p.since_improvement} since best", style="bold yellow"))
    elif p is not None and p.best_step is not None:
        out.append(Text(f"{p.since_improvement} since best"))
    tail = ", ".join(
        f"{s.counts[k]} {k}" for k in ("running", "failed", "pruned") if s.counts.get(k)
    )
    out.append(Text(f"nodes {s.nodes}" + (f" ({tail})" if tail else "")))
    out.append(Text(f"llm {s.llm_mode} · {fmt.tokens(s.llm.tokens)} tok · ${s.llm.cost:.2f}"))
    if s.elapsed is not None:
        out.append(Text(f"elapsed {fmt.duration(s.elapsed)}"))
    if s.pending_items:
        out.append(Text(f"{s.pending_items} proposals pending", style="bold magenta"))
    return out


def slot_use(slots: dict | None) -> str:
    """``GPU 1/2 CPU 3/8`` from the heartbeat's slot use (GPUs only on a machine with some)."""
    if not isinstance(slots, dict):
        return ""
    parts = []
    for key, label in (("gpus", "GPU"), ("cpus", "CPU")):
        use = slots.get(key)
        if isinstance(use, dict) and isinstance(use.get("total"), int) and use["total"] > 0:
            parts.append(f"{label} {use.get('busy', 0)}/{use['total']}")
    return " ".join(parts)


def pack(parts: list[Text], width: int) -> list[Text]:
    """Greedy line packing of segments; a segment longer than the width is cropped."""
    lines: list[Text] = []
    line = Text()
    for part in parts:
        need = len(part) if not line else len(line) + len(SEP) + len(part)
        if line and need > width:
            lines.append(line)
            line = Text()
        if line:
            line.append(SEP)
        line.append_text(part)
    if line or not lines:
        lines.append(line)
    for text in lines:
        text.truncate(max(1, width), overflow="ellipsis")
    return lines


def _short_path(path: str, width: int = 40) -> str:
    return path if len(path) <= width else "…" + path[-(width - 1) :]


class RunHeader(Widget):
    """The first lines of the screen."""

    DEFAULT_CSS = "RunHeader { height: auto; }"

    def __init__(self, **kwargs) -> None:  # noqa: ANN003 - Widget's keyword arguments
        super().__init__(**kwargs)
        self.summary = RunSummary()

    def show(self, summary: RunSummary) -> None:
        old = len(pack(segments(self.summary), max(1, self.size.width)))
        self.summary = summary
        new = len(pack(segments(summary), max(1, self.size.width)))
        self.refresh(layout=old != new)

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return len(pack(segments(self.summary), max(1, width)))

    def render(self) -> Text:
        return Text("\n").join(pack(segments(self.summary), max(1, self.size.width)))
