"""GPU/CPU slot pool: never more experiments than slots, each on its own devices."""

from __future__ import annotations

import asyncio

import pytest

from engine.execution.resources import FAKE_GPUS_ENV, ResourceError, SlotPool, discover_gpus
from engine.task import Resources, Stage


def test_four_acquirers_on_two_fake_gpus_never_share_a_device() -> None:
    pool = SlotPool(["0", "1"], cpus=8)
    held: set[str] = set()
    seen: list[str] = []
    peak = 0

    async def job() -> None:
        nonlocal peak
        async with pool.acquire(Resources(cpus=1, gpus=1)) as grant:
            (gpu,) = grant.gpu_ids
            assert gpu not in held
            held.add(gpu)
            peak = max(peak, len(held))
            seen.append(grant.env["CUDA_VISIBLE_DEVICES"])
            await asyncio.sleep(0.05)
            held.discard(gpu)

    async def main() -> None:
        await asyncio.gather(*(job() for _ in range(6)))

    asyncio.run(main())
    assert peak == 2 and pool.peak["gpus"] == 2
    assert sorted(set(seen)) == ["0", "1"] and len(seen) == 6
    assert pool.usage()["gpus"]["busy"] == 0 and pool.usage()["cpus"]["busy"] == 0


def test_grants_are_first_come_first_served() -> None:
    pool = SlotPool([], cpus=2)
    order: list[str] = []

    async def job(name: str, cpus: int, delay: float) -> None:
        await asyncio.sleep(delay)
        async with pool.acquire(Resources(cpus=cpus)):
            order.append(name)
            await asyncio.sleep(0.05)

    async def main() -> None:
        # "big" waits for both CPUs; "small" arrives later and must not overtake it.
        await asyncio.gather(job("first", 1, 0), job("big", 2, 0.01), job("small", 1, 0.02))

    asyncio.run(main())
    assert order == ["first", "big", "small"]


def test_cpu_stage_gets_no_gpu_and_thread_counts() -> None:
    pool = SlotPool(["0"], cpus=4)

    async def main() -> dict[str, str]:
        async with pool.acquire(Resources(cpus=3, gpus=0)) as grant:
            return grant.env

    env = asyncio.run(main())
    assert env["CUDA_VISIBLE_DEVICES"] == ""
    assert env["OMP_NUM_THREADS"] == "3" and env["MKL_NUM_THREADS"] == "3"


def test_cancelled_waiter_gives_its_place_back() -> None:
    pool = SlotPool(["0"], cpus=2)

    async def main() -> list[str]:
        got: list[str] = []
        async with pool.acquire(Resources(gpus=1)):
            waiter = asyncio.create_task(_hold(pool, got, "waiter"))
            await asyncio.sleep(0.01)
            waiter.cancel()
            await asyncio.gather(waiter, return_exceptions=True)
        await _hold(pool, got, "later")
        return got

    assert asyncio.run(main()) == ["later"]
    assert pool.usage()["gpus"]["busy"] == 0


async def _hold(pool: SlotPool, got: list[str], name: str) -> None:
    async with pool.acquire(Resources(gpus=1)):
        got.append(name)


def test_fit_drops_gpus_on_a_cpu_box_and_refuses_too_many() -> None:
    stages = [Stage("explore", "x", 10, Resources(cpus=4, gpus=1))]
    fitted, notes = SlotPool([], cpus=2).fit(stages)
    assert fitted[0].resources == Resources(cpus=2, gpus=0)
    assert any("no GPU" in n for n in notes) and any("capped to 2" in n for n in notes)
    with pytest.raises(ResourceError, match="needs 3 GPUs, this machine has 2"):
        SlotPool(["0", "1"], cpus=2).fit([Stage("big", "x", 10, Resources(gpus=3))])


def test_discovery_settings(monkeypatch) -> None:
    monkeypatch.delenv(FAKE_GPUS_ENV, raising=False)
    assert discover_gpus(2) == ["0", "1"]
    assert discover_gpus(["3", 5]) == ["3", "5"]
    monkeypatch.setenv(FAKE_GPUS_ENV, "3")
    assert discover_gpus("auto") == ["0", "1", "2"]
    monkeypatch.setenv(FAKE_GPUS_ENV, "many")
    with pytest.raises(ResourceError):
        discover_gpus("auto")
    monkeypatch.delenv(FAKE_GPUS_ENV)
    with pytest.raises(ResourceError):
        discover_gpus("lots")
