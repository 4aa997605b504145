"""StoreThread: writes run in one db thread, in order, committed on await; the loop ticks on."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from pathlib import Path

import pytest

from engine.store.run_store import RunStore
from engine.store.writer import StoreThread


class SlowStore(RunStore):
    """A store whose every event write takes 0.5 s, like a commit on a slow disk."""

    def add_event(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        time.sleep(0.5)
        return super().add_event(*args, **kwargs)


def _run_dir(tmp_path: Path) -> Path:
    RunStore.create(tmp_path / "run").close()
    return tmp_path / "run"


@pytest.mark.slow
def test_slow_writes_do_not_stall_the_loop_and_commands_still_answer(tmp_path: Path) -> None:
    run_dir = _run_dir(tmp_path)
    writer = StoreThread(run_dir, opener=SlowStore.open)
    RunStore.open(run_dir).add_command("pause")  # an external client (CLI/TUI) sends a command

    async def main() -> tuple[float, list[str], int]:
        gaps: list[float] = []
        stop = asyncio.Event()

        async def ticker() -> None:
            last = time.monotonic()
            while not stop.is_set():
                await asyncio.sleep(0.02)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        tick = asyncio.create_task(ticker())
        writes = asyncio.gather(*(writer.add_event("node", f"slow {i}") for i in range(4)))
        commands = await writer.new_commands()  # queued behind the writes, loop still free
        await writes
        stop.set()
        await tick
        count = len(await writer.events())
        return max(gaps), [c.kind for c in commands], count

    started = time.monotonic()
    max_gap, kinds, count = asyncio.run(main())
    elapsed = time.monotonic() - started
    writer.close()
    assert elapsed >= 2.0  # the four slow writes really ran (and serially)
    assert max_gap < 0.3, max_gap
    assert kinds == ["pause"]
    assert count == 4
    # Committed: a separate connection sees every awaited write.
    assert len(RunStore.open(run_dir).events()) == 4


def test_calls_run_in_one_thread_in_order_and_generators_are_drained(tmp_path: Path) -> None:
    run_dir = _run_dir(tmp_path)
    writer = StoreThread(run_dir)
    seen: set[int] = set()

    def where(store: RunStore, label: str) -> str:
        seen.add(threading.get_ident())
        store.add_event("engine", label)
        return label

    async def main() -> list[str]:
        return list(await asyncio.gather(*(writer.call(where, str(i)) for i in range(20))))

    labels = asyncio.run(main())
    messages = [e["message"] for e in writer.call_sync(RunStore.events)]
    nodes = asyncio.run(writer.nodes())
    writer.close()
    assert labels == [str(i) for i in range(20)]
    assert messages == [str(i) for i in range(20)]
    assert len(seen) == 1 and threading.get_ident() not in seen
    assert nodes == []


def test_a_cancelled_caller_never_drops_its_queued_write(tmp_path: Path) -> None:
    """Stop cancels candidates mid-await; a commit they queued must still happen, in order."""
    run_dir = _run_dir(tmp_path)
    writer = StoreThread(run_dir, opener=SlowStore.open)

    async def main() -> bool:
        slow = asyncio.create_task(writer.add_event("node", "first (slow)"))
        await asyncio.sleep(0.05)  # the slow write is running; the next one waits behind it
        queued = asyncio.create_task(writer.call(RunStore.add_event, "node", "second"))
        await asyncio.sleep(0.05)
        queued.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await queued
        await slow
        return queued.cancelled()

    cancelled = asyncio.run(main())
    writer.close()
    assert cancelled
    messages = [e["message"] for e in RunStore.open(run_dir).events()]
    assert messages == ["first (slow)", "second"]


def test_posted_and_deferred_writes_keep_their_order_and_never_block(tmp_path: Path) -> None:
    run_dir = _run_dir(tmp_path)
    writer = StoreThread(run_dir, opener=SlowStore.open)
    started = time.monotonic()
    writer.post(RunStore.add_event, "engine", "posted 1")
    deferred = writer.deferred()
    deferred.add_event("llm", "deferred 2")
    deferred.add_llm_call(role="researcher", model="m", ok=1)
    queued_in = time.monotonic() - started
    last = writer.call_sync(lambda store: store.add_event("engine", "awaited 3"))
    writer.close()
    writer.post(RunStore.add_event, "engine", "after close")  # logged and dropped, no raise
    assert queued_in < 0.2  # three slow writes queued without waiting for any
    assert last is None
    store = RunStore.open(run_dir)
    assert [e["message"] for e in store.events()] == ["posted 1", "deferred 2", "awaited 3"]
    assert store.llm_totals()["calls"] == 1
