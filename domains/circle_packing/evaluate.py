"""Evaluator for 26-circle packing in the unit square: ``python evaluate.py PROGRAM``.

The program runs in a child process (so a crash, a hang or a stray ``sys.exit`` cannot
take the evaluator down) and sends its arrays back through an ``.npz`` file. The parent
checks the packing strictly - no positive tolerance on containment or overlap, since a
tolerance is exactly what an optimiser learns to exploit - and writes ``results.json``
(``$ASI_EVOLVE_RESULTS``, else the current directory). It exits 0 whenever that file was
written: an invalid packing is a result, not a crash. The child process, its log tail and
the results file are the shared harness's (``domains/harness.py``).

The child time limit comes from ``--timeout SECONDS`` or ``CIRCLE_PACKING_TIMEOUT``.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from domains import harness

N_CIRCLES = 26
DEFAULT_TIMEOUT = 50.0
SUM_TOLERANCE = 1e-6
LOG_LIMIT = 2000


def run_child(program: str, out_path: str) -> int:
    """Child side: import the program, call construct_packing, save what it returned."""
    error_path = out_path + ".error"
    try:
        path = Path(program).resolve()
        sys.path.insert(0, str(path.parent))
        spec = importlib.util.spec_from_file_location("candidate_program", path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        if not hasattr(module, "construct_packing"):
            raise AttributeError("program defines no construct_packing()")
        result = module.construct_packing()
        if not isinstance(result, tuple | list) or len(result) != 3:
            raise TypeError("construct_packing() must return (centers, radii, sum_radii)")
        centers, radii, reported = result
        np.savez(
            out_path,
            centers=np.asarray(centers, dtype=float),
            radii=np.asarray(radii, dtype=float),
            reported=np.asarray(float(reported)),
        )
    except BaseException as exc:  # noqa: BLE001 - report anything, SystemExit included
        tail = traceback.format_exc()[-LOG_LIMIT:]
        Path(error_path).write_text(f"{type(exc).__name__}: {exc}\n{tail}", encoding="utf-8")
        return 1
    return 0


def run_program(program: str, timeout: float) -> tuple[dict[str, np.ndarray] | None, str, str]:
    """Run the program in a child; (arrays or None, error reason, captured output tail)."""
    with tempfile.TemporaryDirectory(prefix="circle_eval_") as tmp:
        out_path = os.path.join(tmp, "packing.npz")
        log_path = os.path.join(tmp, "child.log")
        cmd = [sys.executable, os.path.abspath(__file__), "--child", program, out_path]
        returncode = harness.run_child(cmd, log_path, timeout)
        if returncode is None:
            return None, f"timeout: construct_packing() ran longer than {timeout:g}s", ""
        logs = harness.tail(log_path, LOG_LIMIT)
        error_file = Path(out_path + ".error")
        if error_file.is_file():
            first = error_file.read_text(encoding="utf-8").splitlines()[0]
            return None, f"program raised {first}"[:500], logs
        if returncode != 0 or not os.path.isfile(out_path):
            return None, f"program exited with code {returncode} and no result", logs
        with np.load(out_path) as data:
            arrays = {key: data[key] for key in data.files}
        return arrays, "", logs


def check_packing(
    centers: np.ndarray, radii: np.ndarray, reported: float
) -> tuple[str, dict[str, Any]]:
    """Strict validity check; (error reason or "", metrics)."""
    if centers.shape != (N_CIRCLES, 2):
        return f"centers has shape {centers.shape}, expected ({N_CIRCLES}, 2)", {}
    if radii.shape != (N_CIRCLES,):
        return f"radii has shape {radii.shape}, expected ({N_CIRCLES},)", {}
    if not (np.all(np.isfinite(centers)) and np.all(np.isfinite(radii))):
        return "centers or radii contain NaN or infinity", {}
    if not math.isfinite(reported):
        return "reported sum_radii is not finite", {}

    x, y = centers[:, 0], centers[:, 1]
    wall_gaps = np.stack([x - radii, 1 - (x + radii), y - radii, 1 - (y + radii)], axis=1)
    diff = centers[:, None, :] - centers[None, :, :]
    dist = np.sqrt(np.sum(diff**2, axis=-1))
    i, j = np.triu_indices(N_CIRCLES, k=1)
    pair_gaps = dist[i, j] - (radii[i] + radii[j])
    total = float(radii.sum())
    metrics = {
        "sum_radii": total,
        "min_radius": float(radii.min()),
        "max_radius": float(radii.max()),
        "min_gap": float(min(wall_gaps.min(), pair_gaps.min())),
        "n_circles": N_CIRCLES,
    }

    if np.any(radii < 0):
        k = int(np.argmin(radii))
        return f"circle {k} has negative radius {radii[k]:.6g}", metrics
    inside = (x - radii >= 0) & (x + radii <= 1) & (y - radii >= 0) & (y + radii <= 1)
    if not np.all(inside):
        k = int(np.flatnonzero(~inside)[0])
        return (
            f"circle {k} at ({x[k]:.6g}, {y[k]:.6g}) with radius {radii[k]:.6g} "
            f"is not inside the unit square (by {-wall_gaps[k].min():.3g})"
        ), metrics
    overlap = dist[i, j] < radii[i] + radii[j]
    if np.any(overlap):
        k = int(np.argmin(pair_gaps))
        return (
            f"circles {i[k]} and {j[k]} overlap by {-pair_gaps[k]:.3g} "
            f"({int(overlap.sum())} overlapping pairs)"
        ), metrics
    if abs(reported - total) > SUM_TOLERANCE:
        return f"reported sum_radii {reported:.9g} differs from radii.sum() {total:.9g}", metrics
    return "", metrics


def evaluate(program: str, timeout: float) -> dict[str, Any]:
    start = time.monotonic()
    arrays, error, logs = run_program(program, timeout)
    metrics: dict[str, Any] = {}
    if arrays is not None:
        error, metrics = check_packing(
            arrays["centers"], arrays["radii"], float(arrays["reported"])
        )
    metrics["eval_time"] = round(time.monotonic() - start, 3)
    valid = not error
    result: dict[str, Any] = {
        "score": metrics["sum_radii"] if valid else 0.0,
        "valid": valid,
        "metrics": metrics,
        "logs": logs,
    }
    if error:
        result["error"] = error
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("program")
    parser.add_argument("out", nargs="?", help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--timeout",
        type=float,
        default=float(os.environ.get("CIRCLE_PACKING_TIMEOUT", DEFAULT_TIMEOUT)),
        help="seconds construct_packing() may run (env CIRCLE_PACKING_TIMEOUT)",
    )
    args = parser.parse_args(argv)
    if args.child:
        return run_child(args.program, args.out)

    try:
        result = evaluate(args.program, args.timeout)
    except Exception as exc:  # noqa: BLE001 - still leave a results.json behind
        result = harness.evaluator_error(exc, LOG_LIMIT)
    harness.write_results(result)
    status = "valid" if result["valid"] else f"invalid ({result['error']})"
    print(f"score={result['score']:.6f} {status}"[:600])
    return 0


if __name__ == "__main__":
    sys.exit(main())
