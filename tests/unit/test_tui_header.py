"""The header: progress (speed, ETA, since best, stall), slot use, pruned, engine states."""

from __future__ import annotations

from pathlib import Path

import pytest
from tui_support import NOW, build_run

from engine.store.lock import RunLock
from engine.store.progress import Progress
from engine.store.reader import RunReader
from tui.app import EvolveApp
from tui.widgets.header import RunHeader, RunSummary, pack, segments, slot_use

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def text_of(summary: RunSummary) -> str:
    return "\n".join(t.plain for t in pack(segments(summary), 300))


async def header_of(run_dir: Path, size: tuple[int, int] = (100, 30)) -> str:
    app = EvolveApp(run_dir, clock=lambda: NOW, poll_seconds=60)
    async with app.run_test(size=size):
        await app.synced()
        return text_of(app.query_one(RunHeader).summary)


async def test_progress_slots_and_pruned_while_an_engine_works(tmp_path: Path) -> None:
    run_dir = build_run(tmp_path / "run")
    with RunLock(run_dir):  # live: the lock, and a heartbeat fresh by the app's clock
        text = await header_of(run_dir)
    # six candidates finished 30 s apart: 2 per minute; 34 steps left: 17 minutes.
    assert "● running" in text and "2/min · eta 17 min 00 s" in text
    assert "workers 1/2 busy" in text and "CPU 1/4" in text and "GPU" not in text
    assert "1 since best" in text and "stalled" not in text
    assert "nodes 9 (1 running, 1 failed, 1 pruned)" in text


async def test_no_eta_or_slots_without_an_engine(tmp_path: Path) -> None:
    text = await header_of(build_run(tmp_path / "run"))
    assert "● not running" in text and "2/min" in text  # the speed it had
    assert "· eta" not in text and "CPU" not in text and "workers" not in text


def test_stall_warning_and_slot_text() -> None:
    stalled = Progress(1.5, 60.0, 40, 3, True, pruned=2)
    text = text_of(RunSummary(progress=stalled))
    assert "⚠ stalled: 40 since best" in text and "1.5/min" in text
    assert "· eta" not in text  # no engine: no ETA
    assert slot_use({"gpus": {"total": 2, "busy": 1}, "cpus": {"total": 8, "busy": 3}}) == (
        "GPU 1/2 CPU 3/8"
    )
    assert slot_use({"gpus": "odd"}) == "" and slot_use(None) == ""


@pytest.mark.parametrize(
    ("last", "locked", "shown"),
    [
        ("finished", False, "finished"),
        ("stopped", False, "stopped"),
        ("failed", False, "failed"),
        ("running", False, "not running"),  # killed: it said nothing
        ("paused", True, "paused"),
        ("starting", True, "starting"),
    ],
)
def test_engine_states_match_the_readme(
    tmp_path: Path, last: str, locked: bool, shown: str
) -> None:
    run_dir = build_run(tmp_path / "run", engine_state=last)
    reader = RunReader(run_dir)
    if locked:
        with RunLock(run_dir):
            state = reader.engine_state(reader.meta(), NOW)
            assert reader.engine_state(reader.meta(), NOW + 60).state == "not running"  # stale
    else:
        state = reader.engine_state(reader.meta(), NOW)
    reader.close()
    assert state.state == shown
    assert state.live == (shown in ("running", "paused", "starting"))
    assert (state.slots is not None) == state.live
