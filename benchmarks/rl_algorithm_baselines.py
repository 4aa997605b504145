"""rl_algorithm: held-out accuracy of known GRPO variants, seed by seed, at the task's settings.

Prints a variant x seed table (plus mean and range), which is what the domain README quotes:
the seed noise of plain GRPO, and whether the score separates GRPO from variants that ignore
the rewards. Every run goes through the evaluator's own training and scoring path (a child
process trains, this process scores), so the numbers are the ones a search would see.

    python benchmarks/rl_algorithm_baselines.py                      # all variants, seeds 0 1 2
    python benchmarks/rl_algorithm_baselines.py --variants grpo,ignore_rewards --seeds 0,1
    python benchmarks/rl_algorithm_baselines.py --jobs 2 --steps 100  # shorter budget
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOMAIN = ROOT / "domains" / "rl_algorithm"
sys.path.insert(0, str(DOMAIN))

from evaluate import train_and_score  # noqa: E402
from rl_settings import SettingsError, load_settings  # noqa: E402

RETURN = "    return advantages.reshape(-1)"
# variant name -> (old text, new text) edits of the initial program
VARIANTS: dict[str, list[tuple[str, str]]] = {
    "grpo": [],
    "dr_grpo": [
        ("STD_WEIGHT = 1.0", "STD_WEIGHT = 0.0"),
        ("LENGTH_POWER = 1.0", "LENGTH_POWER = 0.0"),
    ],
    "rloo": [("BASELINE_MIX = 0.0", "BASELINE_MIX = 1.0")],
    "clip_higher": [("CLIP_HIGH = 0.2", "CLIP_HIGH = 0.28")],
    "no_kl": [("KL_BETA = 0.04", "KL_BETA = 0.0")],
    "ignore_rewards": [(RETURN, "    return torch.ones_like(rewards)")],
    "random_advantages": [(RETURN, "    return torch.randn_like(rewards)")],
}


def program_for(variant: str, directory: Path) -> Path:
    source = (DOMAIN / "initial.py").read_text(encoding="utf-8")
    for old, new in VARIANTS[variant]:
        if old not in source:
            raise SystemExit(f"error: variant {variant}: {old!r} not in initial.py")
        source = source.replace(old, new)
    path = directory / f"{variant}.py"
    path.write_text(source, encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--jobs", type=int, default=1, help="training runs at a time")
    parser.add_argument("--steps", type=int, default=None, help="override settings.rl.steps")
    parser.add_argument("--task-dir", type=Path, default=DOMAIN)
    args = parser.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        print(
            f"error: unknown variant {unknown[0]!r} (known: {', '.join(VARIANTS)})", file=sys.stderr
        )
        return 2
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s]
        settings = load_settings(args.task_dir)
    except (ValueError, SettingsError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.steps is not None:
        rl = dataclasses.replace(settings.rl, steps=args.steps)
        settings = dataclasses.replace(settings, rl=rl)
    print(f"rl settings: {settings.rl}")
    # transformers resolves names lazily and not thread-safely: resolve them once up front,
    # or two scoring threads can see "cannot import name 'AutoTokenizer'".
    from transformers import (  # noqa: F401
        AutoModelForCausalLM,
        AutoTokenizer,
        LlamaConfig,
        LlamaForCausalLM,
    )

    with tempfile.TemporaryDirectory(prefix="rl_bench_") as tmp:
        scratch = Path(tmp)
        programs = {v: program_for(v, scratch) for v in variants}

        def one(job: tuple[str, int]) -> tuple[str, int, str, dict]:
            variant, seed = job
            run_dir = scratch / f"{variant}_{seed}"
            error, metrics, _ = train_and_score(str(programs[variant]), settings, seed, run_dir)
            print(
                f"  {variant:<18} seed {seed}: "
                + (
                    f"FAILED {error}"
                    if error
                    else f"acc {metrics['accuracy']:.4f}  reward {metrics['reward_start']:.3f}"
                    f"->{metrics['reward_end']:.3f}  kl {metrics['kl_end']:.3f}  "
                    f"train {metrics['train_seconds']:.0f}s"
                ),
                flush=True,
            )
            return variant, seed, error, metrics

        start = time.monotonic()
        jobs = [(v, s) for v in variants for s in seeds]
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            results = list(pool.map(one, jobs))
    base = next((m["warm_start_accuracy"] for _, _, e, m in results if not e), float("nan"))
    print(f"\nwarm start held-out accuracy: {base:.4f}   ({time.monotonic() - start:.0f}s total)")
    header = "variant".ljust(18) + "".join(f"seed {s}".rjust(9) for s in seeds)
    print(header + "     mean    range")
    for variant in variants:
        row = {s: m.get("accuracy") for v, s, e, m in results if v == variant and not e}
        cells = "".join((f"{row[s]:.4f}" if s in row else "failed").rjust(9) for s in seeds)
        values = list(row.values())
        mean = sum(values) / len(values) if values else float("nan")
        spread = max(values) - min(values) if values else float("nan")
        print(variant.ljust(18) + cells + f"   {mean:.4f}   {spread:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
