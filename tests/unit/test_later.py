"""cognition/later.py: cache fills off the critical path, in batches, flushed at the end."""

from __future__ import annotations

import asyncio

from cognition.later import Later


def test_fills_wait_for_a_batch_or_a_flush_and_a_failure_is_only_a_miss() -> None:
    fills: list[dict] = []

    async def fill(items: dict) -> None:
        fills.append(dict(items))
        if "bad" in items:
            raise RuntimeError("embedder down")

    async def scenario() -> None:
        later = Later(fill, batch=3, wait=60.0)
        later.add({"a": 1})
        later.add({"b": 2})
        await asyncio.sleep(0.05)
        assert fills == []  # two of three: still waiting, nothing on anyone's path
        later.add({"c": 3})
        await asyncio.sleep(0.05)
        assert fills == [{"a": 1, "b": 2, "c": 3}]  # one batch, one call
        later.add({"bad": 0})
        later.add({"d": 4})
        await later.flush()  # the engine's stop: what is pending is filled now
        assert fills[1:] == [{"bad": 0, "d": 4}]
        later.add({"e": 5})
        await later.flush()  # the failed fill did not stop later ones
        assert fills[-1] == {"e": 5}

    asyncio.run(scenario())


def test_a_batch_that_never_fills_goes_after_the_wait() -> None:
    fills: list[dict] = []

    async def fill(items: dict) -> None:
        fills.append(dict(items))

    async def scenario() -> None:
        later = Later(fill, batch=100, wait=0.05)
        later.add({"a": 1})
        await asyncio.sleep(0.3)
        assert fills == [{"a": 1}]

    asyncio.run(scenario())
