"""What confinement costs per evaluation: run ``true`` under each sandbox, with the reaper.

    python benchmarks/sandbox_overhead.py [--runs 30]

Prints the mean and 90th percentile wall time of one ``run_command`` per setting, and the
time of one reaper sweep (a /proc scan) with the number of processes on the machine. An
evaluation that trains a model for minutes does not notice either; this shows by how much.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from engine.execution import launcher, reaper, sandbox
from engine.execution.engineer import Limits, run_command
from engine.execution.launcher import Launcher


async def _time_runs(
    runs: int,
    work: Path,
    box: sandbox.Sandbox | None,
    keeper: reaper.Reaper | None,
    forked: bool = False,
) -> list[float]:
    times = []
    launcher = Launcher() if forked else None
    if launcher is not None:  # the server starts once per engine: not part of a launch
        await run_command("true", work, 30, Limits(), sandbox=box, launcher=launcher)
    for _ in range(runs):
        started = time.perf_counter()
        result = await run_command(
            "true", work, 30, Limits(), sandbox=box, reaper=keeper, launcher=launcher
        )
        times.append(time.perf_counter() - started)
        if result.returncode != 0:
            raise SystemExit(f"the command failed: {result.stderr_tail.strip()}")
    if launcher is not None:
        await launcher.aclose()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        work = run_dir / "nodes" / "1"
        work.mkdir(parents=True)
        Setting = tuple[str, sandbox.Sandbox | None, reaper.Reaper | None, bool]
        settings: list[Setting] = [
            ("no sandbox, no reaper", None, None, False),
            ("no sandbox, reaper", None, reaper.Reaper(run_dir), False),
        ]
        for kind in ("bwrap", "landlock", "none"):
            why = sandbox.probe(kind) if kind != "none" else ""
            if why:
                print(f"{kind}: skipped ({why})")
                continue
            box = sandbox.make_sandbox(sandbox.SandboxSettings(kind, writable=()), run_dir)
            keeper = None if box.contains_all else reaper.Reaper(run_dir)
            name = f"{kind}{', reaper' if keeper else ''}"
            settings.append((f"{name}, script", box, keeper, False))
            if box.supervised and launcher.available():
                settings.append((f"{name}, fork server", box, keeper, True))
        for name, box, keeper, forked in settings:
            times = asyncio.run(_time_runs(args.runs, work, box, keeper, forked))
            p90 = sorted(times)[int(0.9 * (len(times) - 1))]
            print(
                f"{name:<24} mean {1000 * statistics.mean(times):7.1f} ms   "
                f"p90 {1000 * p90:7.1f} ms   ({args.runs} runs)"
            )
    procs = len(reaper.snapshot())
    started = time.perf_counter()
    for _ in range(args.runs):
        reaper.sweep_token("no-such-token")
    sweep = (time.perf_counter() - started) / args.runs
    print(f"one reaper sweep: {1000 * sweep:.1f} ms with {procs} processes on the machine")


if __name__ == "__main__":
    main()
