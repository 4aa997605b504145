"""Research replay: a real run of an AI domain driven by a scripted model over real HTTP.

The engine runs as the real ``asi-evolve run`` CLI in its own process with ``--llm
openai``; the "model" is the scripted OpenAI-compatible server of the test suite with the
replay handler (``replay_model.py``), which answers each role as a model would: the
designs of ``replay_<domain>.py`` as SEARCH/REPLACE edits, malformed answers, a crash for
the debug agent, verdicts of the static-check reviewer, analyses with knowledge proposals.
What the engine made of each design is read back from the run database.

    python benchmarks/research_replay.py [--domain linear_attention|rl_algorithm] [--tiny]
        [--verify | --no-verify] [--judge RATIO] [--workers N] [--keep DIR]

Default: the domain's own CPU settings without the verify stage (``linear_attention``:
~3 min per explored design on the shared 2-core box; one verify LM seed of three took 19
min there, and the baseline's verify costs as much again once, so ``--verify`` means
hours). ``--tiny``: a copy of the domain with test-size settings, verify included (a few
minutes in all). ``--judge 0.2`` turns the LLM Judge on. Prints, per design: how it was
checked (passed, or refused and by what), repaired (researcher repair turns, debug agent),
explored (score), promoted to verify or not, verified (score), beats the baseline on both
metrics or not; then the LLM calls per role, the pending knowledge proposals and the
provenance report (``asi-evolve report``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT / "tests", ROOT / "benchmarks"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from replay_fates import Fate, fates, table  # noqa: E402
from replay_model import ReplayModel  # noqa: E402
from scripted_server import ScriptedServer  # noqa: E402

log = logging.getLogger("research_replay")
DOMAINS = ("linear_attention", "rl_algorithm")


@dataclass
class Replay:
    """What one replay did: the CLI's exit, its output, the fates and the model's calls."""

    returncode: int
    wall: float
    stdout: str
    stderr: str
    fates: list[Fate]
    calls: dict[str, int]  # LLM calls per role, as the run database recorded them
    pending: list[str]  # titles of the Analyzer's proposals waiting for approval
    report: str  # asi-evolve report
    run_dir: Path


def prepare_task(domain: str, tiny: bool, verify: bool, root: Path) -> tuple[Path, Path]:
    """A copy of the domain (tiny settings if asked) and the cache its evaluators use."""
    script = importlib.import_module(f"replay_{domain}")
    task = root / domain
    shutil.copytree(ROOT / "domains" / domain, task, ignore=shutil.ignore_patterns("__pycache__"))
    spec = yaml.safe_load((task / "task.yaml").read_text(encoding="utf-8"))
    cache = Path(os.environ.get("ASI_EVOLVE_CACHE") or "~/.cache/asi-evolve").expanduser()
    if tiny:
        spec["settings"] = script.tiny_settings(spec["settings"])
        for stage in spec["stages"]:
            stage["timeout"] = min(stage["timeout"], 300)
        cache = root / "cache"
    if not verify:
        spec["stages"] = [s for s in spec["stages"] if s["name"] != "verify"]
    (task / "task.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    cache.mkdir(parents=True, exist_ok=True)
    return task, cache


def run_replay(
    domain: str,
    root: Path,
    tiny: bool = False,
    verify: bool = True,
    workers: int = 1,
    seed: int = 0,
    timeout: float = 24 * 3600,
    judge: float = 0.0,
) -> Replay:
    """One replay in ``root`` (task copy, cache when tiny, config, run directory);
    ``judge`` > 0: the LLM Judge is on with that ratio (its rating on the domain's scale)."""
    script = importlib.import_module(f"replay_{domain}").SCRIPT
    task, cache = prepare_task(domain, tiny, verify, root)
    model = ReplayModel(script, (task / "initial.py").read_text(encoding="utf-8"))
    run_dir = root / "run"
    config = root / "config.yaml"
    with ScriptedServer(model) as server:
        api = {"base_url": server.base_url, "retries": 1, "backoff_base": 0.05, "timeout": 120}
        engineer = {"sandbox_writable": [str(cache)]}
        raw: dict = {"api": api, "engineer": engineer}
        if judge:
            raw["judge"] = {"enabled": True, "ratio": judge, "scale": list(script.judge_scale)}
        config.write_text(json.dumps(raw), encoding="utf-8")
        env = {**os.environ, "OPENAI_API_KEY": "sk-replay", "ASI_EVOLVE_CACHE": str(cache)}
        env.pop("OPENAI_BASE_URL", None)
        argv = [sys.executable, "-m", "engine.cli", "run", str(task), "--llm", "openai"]
        argv += ["--config", str(config), "--steps", str(len(script.designs))]
        argv += ["--workers", str(workers), "--seed", str(seed), "--run-dir", str(run_dir)]
        start = time.perf_counter()
        done = subprocess.run(
            argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
        )
        wall = time.perf_counter() - start
    report = subprocess.run(
        [sys.executable, "-m", "engine.cli", "report", str(run_dir)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    found, calls, pending = fates(run_dir, script)
    return Replay(
        done.returncode,
        wall,
        done.stdout,
        done.stderr,
        found,
        calls,
        pending,
        report.stdout + report.stderr,
        run_dir,
    )


def show(replay: Replay, domain: str, settings: str) -> None:
    print(f"research replay: {domain} at {settings}, exit {replay.returncode}, {replay.wall:.0f} s")
    print(table(replay.fates))
    calls = ", ".join(f"{role} {n}" for role, n in sorted(replay.calls.items()))
    print(f"\nLLM calls per role: {calls} (total {sum(replay.calls.values())})")
    print(f"pending knowledge proposals ({len(replay.pending)}):")
    for title in replay.pending:
        print(f"  - {title}")
    print("\nprovenance report (asi-evolve report):")
    print(replay.report.rstrip())
    if replay.returncode != 0:
        print("\nrun stderr (tail):\n" + replay.stderr[-3000:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domain", choices=DOMAINS, default="linear_attention")
    parser.add_argument("--tiny", action="store_true", help="test-size settings (minutes)")
    parser.add_argument(
        "--verify",
        action=argparse.BooleanOptionalAction,
        help="run the verify stage (default: with --tiny only; at CPU settings a finalist's "
        "verify and the baseline's take hours on a busy 2-core box)",
    )
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--judge", type=float, default=0.0, help="LLM Judge ratio (0: off)")
    parser.add_argument("--keep", type=Path, help="keep the task copy and run here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    verify = args.tiny if args.verify is None else args.verify
    with tempfile.TemporaryDirectory(prefix="replay-") as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        replay = run_replay(
            args.domain,
            root,
            args.tiny,
            verify,
            args.workers,
            args.seed,
            judge=args.judge,
        )
        settings = "tiny settings" if args.tiny else "the domain's CPU settings"
        show(replay, args.domain, settings + ("" if verify else ", no verify stage"))
    return replay.returncode


if __name__ == "__main__":
    sys.exit(main())
