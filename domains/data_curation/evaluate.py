"""Evaluator of pretraining-data cleaners: ``python evaluate.py [--stage S] PROGRAM``.

Stages (task.yaml ``stages:``):

- ``check``: the first ``check_docs`` documents of the dev corpus; the program must
  import, define ``clean`` and fail on at most ``max_error_rate`` of the documents.
- ``explore``: the whole dev corpus; score = 100 x F1(kept, removed) (see
  curation_score.py) behind three gates: error rate, good text kept >= ``min_kept``,
  and byte 5-gram bits per byte at most ``bpb_margin`` above the unchanged input's.
- ``verify``: the same on the held-out variant (other documents, seed and templates),
  plus, when ``neural.enabled``, a tiny neural LM trained on the cleaned output.
- no ``--stage``: check, then explore, in one process (a single-stage task).

The candidate runs in a child process (run_candidate.py) with ``child_timeout`` seconds
and sees the document texts only. ``results.json`` goes to ``$ASI_EVOLVE_RESULTS``
(default ./results.json); the exit code is 0 whenever it was written. Besides the usual
fields it carries ``breakdown`` (per noise type: docs, dropped, kept, removed) and
``samples`` ((original, cleaned) pairs: the worst, then random) for the Analyzer.
Settings come from ``settings:`` in task.yaml next to this file, or in
``$ASI_EVOLVE_TASK_DIR``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import curation_corpus  # noqa: E402
import curation_ngram  # noqa: E402
import curation_score  # noqa: E402
import yaml  # noqa: E402

from domains import harness  # noqa: E402

log = logging.getLogger("data_curation")

DEFAULTS: dict[str, Any] = {
    "corpus": {"source": "builtin"},
    "n_docs": 100000,  # source documents per variant (the built-in dev part has ~830)
    "seed": 11,
    "heldout_seed": 23,
    "check_docs": 120,
    "child_timeout": 120,
    "max_error_rate": 0.01,
    "min_kept": 0.5,
    "ngram_order": 5,
    "lm_train_chars": 300000,
    "lm_eval_chars": 150000,
    "bpb_margin": 0.1,
    "samples_random": 20,
    "samples_worst": 5,
    "neural": {"enabled": False},
}
LOG_LIMIT = 6000
CHILD_LOG_LIMIT = 2000  # of the candidate's own output


class EvalError(Exception):
    """The evaluation itself cannot run (bad settings, unreadable corpus)."""


def load_settings() -> dict[str, Any]:
    task_dir = Path(os.environ.get("ASI_EVOLVE_TASK_DIR") or HERE)
    spec = task_dir / "task.yaml"
    raw: dict[str, Any] = {}
    if spec.is_file():
        raw = (yaml.safe_load(spec.read_text(encoding="utf-8")) or {}).get("settings") or {}
    unknown = set(raw) - set(DEFAULTS)
    if unknown:
        raise EvalError(f"unknown settings in {spec}: {', '.join(sorted(unknown))}")
    return {**DEFAULTS, **raw}


def run_cleaner(program: str, texts: list[str], timeout: float) -> dict[str, Any]:
    """Run the candidate over ``texts`` in a child; its JSON answer, or {"fatal": reason}."""
    with tempfile.TemporaryDirectory(prefix="curation_eval_") as tmp:
        in_path, out_path = os.path.join(tmp, "in.json"), os.path.join(tmp, "out.json")
        with open(in_path, "w", encoding="utf-8") as handle:
            json.dump(texts, handle)
        log_path = os.path.join(tmp, "child.log")
        cmd = [
            sys.executable,
            str(HERE / "run_candidate.py"),
            os.path.abspath(program),
            in_path,
            out_path,
        ]
        # No task dir, cache or results path for the candidate.
        env = {k: v for k, v in os.environ.items() if not k.startswith("ASI_EVOLVE_")}
        returncode = harness.run_child(cmd, log_path, timeout, env=env, cwd=tmp)
        if returncode is None:
            return {
                "fatal": f"timeout: clean() over {len(texts)} documents ran longer "
                f"than {timeout:g}s"
            }
        tail = harness.tail(log_path, CHILD_LOG_LIMIT)
        if not os.path.isfile(out_path):
            return {
                "fatal": f"program exited with code {returncode} and no result",
                "trace": tail,
            }
        with open(out_path, encoding="utf-8") as handle:
            answer = json.load(handle)
        answer["child_output"] = tail
        if "fatal" in answer:
            answer["fatal"] = f"program failed to load: {answer['fatal']}"
        return answer


def score_docs(program: str, data: Any, settings: dict[str, Any], lm: Any) -> dict[str, Any]:
    """Run and score the candidate on one corpus; a full results dict."""
    texts, refs, labels = list(data["text"]), list(data["reference"]), list(data["noise"])
    start = time.monotonic()
    answer = run_cleaner(program, texts, float(settings["child_timeout"]))
    if "fatal" in answer:
        return _invalid(answer["fatal"], {"docs": len(texts)}, answer.get("trace", ""))
    outputs = answer["outputs"]
    if len(outputs) != len(texts):
        return _invalid("the child returned a wrong number of outputs", {})
    scored = curation_score.score_corpus(texts, refs, labels, outputs)
    error_rate = answer["errors"] / max(1, len(texts))
    metrics: dict[str, Any] = {
        "f1": round(scored.score, 4),
        "kept": round(scored.kept, 4),
        "removed": round(scored.removed, 4),
        "docs": len(texts),
        "dropped_share": round(scored.total.dropped / max(1, len(texts)), 4),
        "error_rate": round(error_rate, 4),
        "clean_seconds": answer.get("seconds"),
    }
    if lm is not None:
        # The gate reads the untouched good documents (reference == input): there the
        # no-op is perfect, so removed noise cannot mask damage done to real text.
        good = [i for i in range(len(texts)) if refs[i] == texts[i]] or list(range(len(texts)))
        pick = [
            good[j]
            for j in curation_ngram.strided(
                len(good), [len(texts[i]) for i in good], int(settings["lm_eval_chars"])
            )
        ]
        metrics["bpb_noop"] = round(curation_ngram.bits_per_byte(lm, [texts[i] for i in pick]), 4)
        kept_out = [outputs[i] for i in pick if outputs[i]]
        bpb = curation_ngram.bits_per_byte(lm, kept_out) if kept_out else float("nan")
        metrics["bpb"] = round(bpb, 4) if math.isfinite(bpb) else None
    metrics.update(curation_score.flat_metrics(scored))
    breakdown = curation_score.breakdown(scored)
    samples = curation_score.samples(
        scored,
        texts,
        labels,
        outputs,
        int(settings["samples_random"]),
        int(settings["samples_worst"]),
    )
    error = _gate(metrics, error_rate, answer, settings)
    metrics["eval_seconds"] = round(time.monotonic() - start, 3)
    result = {
        "score": round(scored.score, 4) if not error else 0.0,
        "valid": not error,
        "metrics": metrics,
        "breakdown": breakdown,
        "samples": samples,
        "logs": _logs(metrics, breakdown, samples, answer),
        "_outputs": outputs,  # for the verify stage's neural check; never written out
    }
    if error:
        result["error"] = error
    return result


def _gate(
    metrics: dict[str, Any], error_rate: float, answer: dict[str, Any], settings: dict[str, Any]
) -> str:
    if error_rate > float(settings["max_error_rate"]):
        return (
            f"clean() failed on {error_rate:.1%} of documents (limit "
            f"{float(settings['max_error_rate']):.0%}); first: {answer['first_error']}"
        )
    if metrics["kept"] < float(settings["min_kept"]):
        return (
            f"only {metrics['kept']:.1%} of the good text was kept (minimum "
            f"{float(settings['min_kept']):.0%}): the cleaner destroys real text"
        )
    if "bpb_noop" in metrics:
        bpb, noop = metrics["bpb"], metrics["bpb_noop"]
        if bpb is None or bpb > noop + float(settings["bpb_margin"]):
            return (
                f"untouched good documents read worse after cleaning under a clean-text "
                f"{settings['ngram_order']}-gram LM ({bpb} vs {noop} bits/byte, margin "
                f"{settings['bpb_margin']}): text damaged, e.g. punctuation stripped"
            )
    return ""


def _logs(
    metrics: dict[str, Any],
    breakdown: dict[str, Any],
    samples: list[dict[str, Any]],
    answer: dict[str, Any],
) -> str:
    """Readable summary; the per-type table last, as log views keep the tail."""
    lines = []
    for s in samples[:6]:
        lines.append(
            f"--- doc {s['doc']} [{s['noise']}, {s['why']}] lost {s['lost_words']} "
            f"left {s['leftover_words']}"
        )
        lines.append(f"original: {s['original'][:220]!r}")
        lines.append(f"cleaned:  {s['cleaned'][:220] if s['cleaned'] is not None else None!r}")
    if answer.get("first_error"):
        lines.append(f"first clean() error: {answer['first_error']}")
    if answer.get("child_output"):
        lines.append(f"candidate output (tail): {answer['child_output'][-400:]}")
    lines.append("noise type        docs  dropped  kept    removed")
    for label, row in breakdown.items():
        kept = "-" if row["kept"] is None else f"{row['kept']:.3f}"
        removed = "-" if row["removed"] is None else f"{row['removed']:.3f}"
        lines.append(f"{label:<17} {row['docs']:>4}  {row['dropped']:>7.3f}  {kept:<6}  {removed}")
    lines.append(
        f"F1 {metrics['f1']:.2f}  kept {metrics['kept']:.4f}  removed "
        f"{metrics['removed']:.4f}  bpb {metrics.get('bpb')} (no-op "
        f"{metrics.get('bpb_noop')})"
    )
    return "\n".join(lines)[-LOG_LIMIT:]


def _invalid(error: str, metrics: dict[str, Any], logs: str = "") -> dict[str, Any]:
    return {"score": 0.0, "valid": False, "metrics": metrics, "logs": logs, "error": error[:500]}


def ngram_lm(settings: dict[str, Any]) -> curation_ngram.NgramLM:
    return curation_ngram.NgramLM(int(settings["ngram_order"])).fit(
        curation_corpus.lm_text(settings)
    )


def evaluate(program: str, stage: str | None, settings: dict[str, Any]) -> dict[str, Any]:
    dev = curation_corpus.load_variant(settings, "dev")
    if stage in (None, "check"):
        subset = dev.select(range(min(len(dev), int(settings["check_docs"]))))
        result = score_docs(program, subset, settings, lm=None)
        result.pop("_outputs", None)
        result["metrics"] = {
            f"check_{k}": v
            for k, v in result["metrics"].items()
            if k in ("f1", "kept", "removed", "error_rate", "eval_seconds")
        }
        # A poor start is not an error at check time: only crashes and errors fail here.
        if not result["valid"] and "good text" in result.get("error", ""):
            result["valid"] = True
            result.pop("error")
        if stage == "check" or not result["valid"]:
            return result
    lm = ngram_lm(settings)
    if stage == "verify":
        held = curation_corpus.load_variant(settings, "heldout")
        result = score_docs(program, held, settings, lm)
        result["metrics"] = {f"heldout_{k}": v for k, v in result["metrics"].items()}
        outputs = result.pop("_outputs", None)
        if result["valid"] and (settings.get("neural") or {}).get("enabled"):
            import curation_neural

            neural_error = curation_neural.check(program, held, settings, result, outputs)
            if neural_error:
                result.update(valid=False, error=neural_error, score=0.0)
        return result
    result = score_docs(program, dev, settings, lm)
    result.pop("_outputs", None)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("program")
    parser.add_argument("--stage", choices=("check", "explore", "verify"), default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if not os.path.isfile(args.program):
        print(f"error: program {args.program} not found", file=sys.stderr)
        return 2
    try:
        settings = load_settings()
        result = evaluate(args.program, args.stage, settings)
    except (EvalError, curation_corpus.CorpusError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - still leave a results.json behind
        result = _invalid(
            f"evaluator error: {type(exc).__name__}: {exc}", {}, traceback.format_exc()[-2000:]
        )
    harness.write_results(result, indent=1)
    status = "valid" if result["valid"] else f"invalid ({result['error']})"
    print(f"stage={args.stage or 'check+explore'} score={result['score']:.4f} {status}"[:600])
    return 0


if __name__ == "__main__":
    sys.exit(main())
