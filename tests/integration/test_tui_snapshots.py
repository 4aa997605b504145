"""SVG snapshots of the terminal UI (pytest-textual-snapshot).

The run database has fixed timestamps and the app a fixed clock, so every pixel is
deterministic. Update after an intended change with ``pytest --snapshot-update``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from tui_support import NOW, build_run

from engine.store.lock import RunLock
from tui.app import EvolveApp

pytest.importorskip("pytest_textual_snapshot")


@pytest.fixture(autouse=True)
def utc() -> None:
    """Event times are shown in local time: pin the zone."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if old is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = old
    time.tzset()


def app_for(tmp_path: Path, **kwargs) -> EvolveApp:  # noqa: ANN003
    build_run(tmp_path / "run", **kwargs)
    # The header shows the run dir: tests chdir to tmp_path so it reads "run" every time.
    return EvolveApp(Path("run"), clock=lambda: NOW, poll_seconds=60)


def keys(*presses: str):  # noqa: ANN201 - run_before callback
    async def run_before(pilot) -> None:  # noqa: ANN001
        await pilot.app.synced()
        await pilot.press(*presses)
        await pilot.app.synced()
        await pilot.pause(0.3)

    return run_before


@pytest.mark.slow
def test_main_screen(tmp_path: Path, snap_compare, monkeypatch) -> None:  # noqa: ANN001
    """A live engine (it holds the run lock, heartbeat fresh by the app's clock)."""
    monkeypatch.chdir(tmp_path)
    app = app_for(tmp_path)
    with RunLock(tmp_path / "run"):
        assert snap_compare(app, terminal_size=(100, 30), run_before=keys("down"))


def test_main_screen_80x24(tmp_path: Path, snap_compare, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.chdir(tmp_path)
    assert snap_compare(app_for(tmp_path), terminal_size=(80, 24), run_before=keys("down"))


@pytest.mark.slow
def test_wide_screen_with_cognition(tmp_path: Path, snap_compare, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.chdir(tmp_path)
    app = app_for(tmp_path)
    assert snap_compare(app, terminal_size=(140, 40), run_before=keys("down", "down", "down", "a"))


def test_verifying_run(tmp_path: Path, snap_compare, monkeypatch) -> None:  # noqa: ANN001
    """Explore and verify side by side, a flag, the reported best, stages in flight."""
    from tui_stages import add_stages

    monkeypatch.chdir(tmp_path)
    app = app_for(tmp_path)
    add_stages(tmp_path / "run")
    assert snap_compare(app, terminal_size=(100, 30), run_before=keys("3"))


@pytest.mark.slow
def test_diff_screen(tmp_path: Path, snap_compare, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.chdir(tmp_path)
    app = app_for(tmp_path)
    assert snap_compare(app, terminal_size=(100, 30), run_before=keys("down", "down", "down", "d"))


def test_lineage_screen(tmp_path: Path, snap_compare, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.chdir(tmp_path)
    app = app_for(tmp_path)
    assert snap_compare(app, terminal_size=(100, 30), run_before=keys("down", "l"))
