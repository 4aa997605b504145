"""Data curation at full size: baselines, seed noise, held-out gap and time per candidate.

    python benchmarks/data_curation_baselines.py [--seeds 11 12 13] [--quick]

For each reference cleaner (no-op, drop-all, the initial program, the initial program
with careful knob values, that cleaner with one rule switched off at a time, and two
damaging cleaners) it runs the real evaluator (child process, gates) on the dev corpus
built with each generator seed, then on the held-out variant, and prints score, kept,
removed, validity and seconds per candidate. The spread over seeds is the noise floor
a score difference has to beat. Corpora are cached under $ASI_EVOLVE_CACHE.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

DOMAIN = Path(__file__).resolve().parents[1] / "domains" / "data_curation"
sys.path.insert(0, str(DOMAIN))

import evaluate  # noqa: E402

STRONG = {
    "MAX_TAG_CHARS": 60.0,
    "ENTITY_FIX": 1.0,
    "MOJIBAKE_FIX": 1.0,
    "LINE_MIN_ALPHA": 0.55,
    "LINE_MIN_VOWELS": 0.12,
    "BOILERPLATE_RATIO": 0.5,
    "MAX_LINE_REPEATS": 1.0,
    "DOC_MIN_WORDS": 30.0,
    "DOC_MIN_ALPHA": 0.6,
    "DUP_SIMILARITY": 0.5,
}
ABLATIONS = {  # rule switched off -> the knob value that disables it
    "no dedup": {"DUP_SIMILARITY": 1.01},
    "no tag strip": {"MAX_TAG_CHARS": 0.5},
    "no mojibake fix": {"MOJIBAKE_FIX": 0.2},
    "no junk lines": {"LINE_MIN_ALPHA": 0.0, "LINE_MIN_VOWELS": 0.0},
    "no boilerplate": {"BOILERPLATE_RATIO": 1.01},
}


def with_knobs(code: str, knobs: dict[str, float]) -> str:
    for name, value in knobs.items():
        code, n = re.subn(rf"^{name} = [0-9.]+", f"{name} = {value}", code, flags=re.M)
        if n != 1:
            raise SystemExit(f"knob {name} not found in initial.py")
    return code


def programs() -> dict[str, str]:
    initial = (DOMAIN / "initial.py").read_text()
    strong = with_knobs(initial, STRONG)
    out = {
        "no-op": "def clean(doc):\n    return doc\n",
        "drop all": "def clean(doc):\n    return None\n",
        "initial": initial,
        "careful knobs": strong,
    }
    for name, knobs in ABLATIONS.items():
        out[f"careful, {name}"] = with_knobs(strong, knobs)
    out["careful + strip punctuation"] = strong.replace(
        "    return text\n\n\ndef _junk_line",
        "    return re.sub(r'[^\\w\\s]', ' ', text)\n\n\ndef _junk_line",
    )
    out["careful + lowercase"] = strong.replace(
        "    return text\n\n\ndef _junk_line", "    return text.lower()\n\n\ndef _junk_line"
    )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[11, 12, 13])
    parser.add_argument("--quick", action="store_true", help="initial and careful only")
    args = parser.parse_args()
    base = evaluate.load_settings()
    chosen = programs()
    if args.quick:
        chosen = {k: v for k, v in chosen.items() if k in ("initial", "careful knobs")}
    print(
        f"{'cleaner':<30} {'dev score (seeds)':<26} {'mean':>6} {'spread':>6} "
        f"{'kept':>6} {'removed':>7} {'held-out':>8} {'s/cand':>6}  validity"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for name, code in chosen.items():
            path = Path(tmp) / "program.py"
            path.write_text(code)
            scores, seconds, last = [], [], {}
            for seed in args.seeds:
                start = time.monotonic()
                last = evaluate.evaluate(str(path), "explore", {**base, "seed": seed})
                seconds.append(time.monotonic() - start)
                scores.append(last["score"])
            held = evaluate.evaluate(str(path), "verify", base)
            m = last.get("metrics", {})
            spread = max(scores) - min(scores)
            status = "valid" if last["valid"] else f"invalid: {last['error'][:60]}"
            print(
                f"{name:<30} {' '.join(f'{s:6.2f}' for s in scores):<26} "
                f"{statistics.mean(scores):6.2f} {spread:6.2f} {m.get('kept', 0):6.3f} "
                f"{m.get('removed', 0):7.3f} {held['score']:8.2f} "
                f"{statistics.mean(seconds):6.2f}  {status}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
