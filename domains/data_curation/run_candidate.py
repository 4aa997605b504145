"""Child side of the evaluator: run a candidate's ``clean`` over unlabelled documents.

``python run_candidate.py PROGRAM IN_JSON OUT_JSON``. IN_JSON is a JSON list of document
texts and nothing else: the references, the noise labels, the generator's seeds and
templates stay in the parent, so a candidate cannot learn the answer from its input.
This file imports none of the domain's own modules for the same reason.

``clean`` is called once per document, in corpus order, in one process (state across
calls is allowed, e.g. for de-duplication). A call that raises, or returns something
other than ``str`` or ``None``, counts as an error and its document passes through
unchanged. OUT_JSON gets the outputs, the error count and the first error.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
import traceback
from pathlib import Path


def main(argv: list[str]) -> int:
    program, in_path, out_path = argv
    # The evaluator's own modules (and the generator) are not importable by the candidate.
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [p for p in sys.path if p and Path(p).resolve() != Path(here)]
    start = time.monotonic()
    try:
        path = Path(program).resolve()
        spec = importlib.util.spec_from_file_location("candidate_program", path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        clean = getattr(module, "clean", None)
        if not callable(clean):
            raise AttributeError("program defines no clean(doc) function")
    except BaseException as exc:  # noqa: BLE001 - SystemExit included
        _write(
            out_path,
            {
                "fatal": f"{type(exc).__name__}: {exc}"[:400],
                "trace": traceback.format_exc()[-1500:],
            },
        )
        return 1
    with open(in_path, encoding="utf-8") as handle:
        texts = json.load(handle)
    outputs: list[str | None] = []
    errors = 0
    first_error = ""
    for i, text in enumerate(texts):
        try:
            out = clean(text)
            if out is not None and not isinstance(out, str):
                raise TypeError(f"clean() returned {type(out).__name__}, expected str or None")
        except Exception as exc:  # noqa: BLE001 - one document's failure is a counted error
            errors += 1
            if not first_error:
                first_error = f"document {i}: {type(exc).__name__}: {exc}"[:400]
            out = text
        outputs.append(out)
    _write(
        out_path,
        {
            "outputs": outputs,
            "errors": errors,
            "first_error": first_error,
            "seconds": round(time.monotonic() - start, 3),
        },
    )
    return 0


def _write(path: str, payload: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(payload, handle)
    Path(tmp).replace(path)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
