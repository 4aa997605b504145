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

from engine.execution import reaper, sandbox
from engine.execution.engineer import Limits, run_command


async def _time_runs(
    runs: int, work: Path, box: sandbox.Sandbox | None, keeper: reaper.Reaper | None
) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        result = await run_command("true", work, 30, Limits(), sandbox=box, reaper=keeper)
        times.append(time.perf_counter() - started)
        if result.returncode != 0:
            raise SystemExit(f"the command failed: {result.stderr_tail.strip()}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        work = run_dir / "nodes" / "1"
        work.mkdir(parents=True)
        settings: list[tuple[str, sandbox.Sandbox | None, reaper.Reaper | None]] = [
            ("no sandbox, no reaper", None, None),
            ("no sandbox, reaper", None, reaper.Reaper(run_dir)),
        ]
        for kind in ("bwrap", "landlock"):
            why = sandbox.probe(kind)
            if why:
                print(f"{kind}: skipped ({why})")
                continue
            box = sandbox.make_sandbox(sandbox.SandboxSettings(kind, writable=()), run_dir)
            settings.append((f"{kind}, reaper", box, reaper.Reaper(run_dir)))
        for name, box, keeper in settings:
            times = asyncio.run(_time_runs(args.runs, work, box, keeper))
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
