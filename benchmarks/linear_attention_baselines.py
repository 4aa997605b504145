"""Baseline table of the linear_attention domain: mixer x seed -> bpb, MQAR, time.

    python benchmarks/linear_attention_baselines.py [--seeds 0 1 2] [--mixers deltanet ...]
        [--steps N] [--mqar-steps N] [--workers 2] [--json FILE]

Trains each mixer with the explore-stage settings of domains/linear_attention/task.yaml
(byte LM and MQAR, one thread per job, ``--workers`` jobs at a time) and prints one row
per (mixer, seed) plus the mean over seeds. DeltaNet is the task's initial program; the
others live in domains/linear_attention/reference_mixers.py. The numbers calibrate the
task's score (``bpb_none`` = no_mixing, ``bpb_ref`` = deltanet) and show how far the
seed noise is below the gaps between mixers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

DOMAIN = Path(__file__).resolve().parents[1] / "domains" / "linear_attention"
ORDER = ["deltanet", "softmax_rope", "linear_attn_conv", "linear_attn", "mean_pool", "no_mixing"]


def factory(name: str):  # noqa: ANN201
    sys.path.insert(0, str(DOMAIN))
    if name == "deltanet":
        import initial

        return initial.TokenMixer
    import reference_mixers

    return reference_mixers.MIXERS[name]


def job(kind: str, name: str, seed: int, settings: dict) -> tuple[str, str, int, dict]:
    os.environ["OMP_NUM_THREADS"] = "1"
    sys.path.insert(0, str(DOMAIN))
    import torch

    torch.set_num_threads(1)
    import evaluate

    started = time.perf_counter()
    evaluate.load_program = lambda *_a, **_k: type("M", (), {"TokenMixer": factory(name)})
    out = evaluate.child_train(kind, "", settings, seed)
    out["wall"] = time.perf_counter() - started
    return kind, name, seed, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--mixers", nargs="+", default=ORDER, choices=ORDER)
    parser.add_argument("--steps", type=int, help="override the LM steps")
    parser.add_argument("--mqar-steps", type=int, help="override the MQAR steps")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    sys.path.insert(0, str(DOMAIN))
    os.environ.setdefault("ASI_EVOLVE_TASK_DIR", str(DOMAIN))
    import corpus
    import evaluate

    corpus.load()  # build the cache once, before the workers race for it
    settings = evaluate.load_settings(use_cuda=False)
    if args.steps:
        settings["steps"] = args.steps
    if args.mqar_steps:
        settings["mqar_steps"] = args.mqar_steps
    rows: dict[tuple[str, int], dict] = {}
    with ProcessPoolExecutor(args.workers) as pool:
        futures = [
            pool.submit(job, kind, name, seed, settings)
            for name in args.mixers
            for seed in args.seeds
            for kind in ("lm", "mqar")
        ]
        for future in futures:
            kind, name, seed, out = future.result()
            rows.setdefault((name, seed), {}).update({f"{kind}_wall": out.pop("wall"), **out})
    print(
        f"{'mixer':18} {'seed':>4} {'bpb':>7} {'mqar':>6} {'ms/step':>8} {'mqar ms':>8} "
        f"{'mixer params':>12}"
    )
    for name in args.mixers:
        for seed in args.seeds:
            r = rows[(name, seed)]
            print(
                f"{name:18} {seed:>4} {r['bpb']:7.3f} {r['mqar']:6.3f} "
                f"{1000 * r['step_time']:8.1f} {1000 * r['mqar_step_time']:8.1f} "
                f"{r['mixer_params']:>12}"
            )
        if len(args.seeds) > 1:
            bpbs = [rows[(name, s)]["bpb"] for s in args.seeds]
            mqars = [rows[(name, s)]["mqar"] for s in args.seeds]
            print(
                f"{name:18} {'mean':>4} {statistics.mean(bpbs):7.3f} "
                f"{statistics.mean(mqars):6.3f}   (bpb sd {statistics.stdev(bpbs):.3f}, "
                f"mqar sd {statistics.stdev(mqars):.3f})"
            )
    if args.json:
        Path(args.json).write_text(
            json.dumps([{"mixer": n, "seed": s, **r} for (n, s), r in rows.items()], indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
