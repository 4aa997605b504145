"""The header: the run at a glance (task, engine state, progress, best, LLM use, elapsed).

Facts are short segments packed greedily into as many lines as the width needs, so a fact
is never split across lines at 80 columns and the header stays two lines on wide screens.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.text import Text
from textual.geometry import Size
from textual.widget import Widget

from tui import format as fmt
from tui.data import EngineState, LlmTotals, NodeRow

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


def segments(s: RunSummary) -> list[Text]:
    out = [
        Text.assemble(("ASI-Evolve ", "bold"), (fmt.one_line(s.task, 30), "bold cyan")),
        Text(_short_path(s.run_dir), style="dim"),
        fmt.state(s.engine.state),
        Text(f"steps {s.steps_done}/{'?' if s.steps_total is None else s.steps_total}"),
    ]
    if s.engine.state != "not running":
        out.append(Text(f"workers {s.engine.busy}/{s.engine.workers} busy"))
    best = "-" if s.best is None else f"{fmt.score(s.best.score)} (#{s.best.id})"
    out.append(Text.assemble("best ", (best, "bold green")))
    running = s.counts.get("running", 0)
    failed = s.counts.get("failed", 0)
    tail = f" ({running} running, {failed} failed)" if running or failed else ""
    out.append(Text(f"nodes {s.nodes}{tail}"))
    out.append(Text(f"llm {s.llm_mode} · {fmt.tokens(s.llm.tokens)} tok · ${s.llm.cost:.2f}"))
    if s.elapsed is not None:
        out.append(Text(f"elapsed {fmt.duration(s.elapsed)}"))
    if s.pending_items:
        out.append(Text(f"{s.pending_items} proposals pending", style="bold magenta"))
    return out


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
