"""linear_attention's settings: shape checks and the peak GPU-memory estimate (no torch,
no GPU): the domain's own ``cuda:`` settings fit an 80 GB card with margin; the 24 GB
verdict is reported in the assert messages (and in the domain README's table)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

DOMAIN = Path(__file__).resolve().parents[2] / "domains" / "linear_attention"
GB = 10**9


def _load(name: str, file: str):
    spec = importlib.util.spec_from_file_location(name, DOMAIN / file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


memory = _load("la_memory_under_test", "memory.py")
evaluate = _load("la_evaluate_under_test", "evaluate.py")


def _cuda_settings() -> dict:
    return evaluate.load_settings(use_cuda=True)


def test_the_cuda_settings_are_the_sized_ones():
    s = _cuda_settings()
    assert (s["n_layers"], s["d_model"], s["seq_len"], s["batch"]) == (8, 256, 512, 32)
    assert memory.check_shapes(s) == []
    assert memory.check_shapes(evaluate.load_settings(use_cuda=False)) == []


@pytest.mark.parametrize("mixer_factor", [1.0, 2.0])
def test_cuda_settings_fit_80gb_with_margin_and_report_24gb(mixer_factor):
    s = _cuda_settings()
    est = memory.estimate(s, mixer_factor=mixer_factor)
    need = est["total_bytes"]
    lm = est["lm"]
    # order of magnitude of each term at 8 x 256, T=512, batch 32 (float32, AdamW)
    assert lm["parameters"] == memory.model_parameters(256, 256, 4, 8) * 4 == 6_476_576 * 4
    assert lm["adam_states"] == 2 * lm["parameters"]
    assert lm["logits"] == 3 * 32 * 512 * 256 * 4
    assert 2 * GB < lm["activations"] < 20 * GB
    report = (
        f"estimated peak {need / GB:.1f} GB (LM {est['lm_bytes'] / GB:.1f} + MQAR "
        f"{est['mqar_bytes'] / GB:.1f}, mixer_factor {mixer_factor}); "
        f"24 GB card: {'fits' if need < 0.9 * 24 * GB else 'does NOT fit'}"
    )
    assert need < 0.5 * 80 * GB, report  # half the card: leaves room for a heavier mixer
    assert memory.refusal(s, 80 * GB) is None, report
    # the verdict for a 24 GB card (the README's table): the shipped settings fit
    assert memory.refusal(s, 24 * GB) is None, report


def test_estimate_grows_with_the_sizes_and_refuses_what_cannot_fit():
    s = _cuda_settings()
    base = memory.estimate(s)["total_bytes"]
    for key in ("batch", "seq_len", "n_layers", "d_model"):
        assert memory.estimate({**s, key: 2 * s[key]})["total_bytes"] > base, key
    huge = {**s, "batch": 1024, "seq_len": 4096}
    line = memory.refusal(huge, 80 * GB)
    assert line and "GiB of GPU memory" in line and "\n" not in line
    assert memory.refusal(huge, None) is None  # no known card (CPU): shapes only


@pytest.mark.parametrize(
    "change, words",
    [
        ({"n_heads": 3}, "heads do not divide"),
        ({"mqar_d_model": 66}, "heads do not divide"),
        ({"d_model": 2048, "n_heads": 4}, "head dim 512 > 256"),
        ({"n_layers": 0}, "n_layers=0"),
        ({"mqar_pairs": 40}, "drawn without replacement"),
    ],
)
def test_inconsistent_shapes_are_named(change, words):
    s = {**_cuda_settings(), **change}
    errors = memory.check_shapes(s)
    assert any(words in e for e in errors), errors
    assert words in memory.refusal(s, None)


def test_notes_name_padding():
    s = {**_cuda_settings(), "seq_len": 500, "n_heads": 32}
    text = " ".join(memory.notes(s))
    assert "seq_len=500" in text and "512" in text and "head dim 8" in text


def test_the_evaluator_refuses_inconsistent_settings_up_front(monkeypatch):
    bad = {**_cuda_settings(), "n_heads": 3}
    monkeypatch.syspath_prepend(str(DOMAIN))  # evaluate.py imports memory from its folder
    monkeypatch.setattr(evaluate, "load_settings", lambda use_cuda: bad)
    monkeypatch.setattr(evaluate, "_cuda_available", lambda: False)
    with pytest.raises(ValueError, match="heads do not divide"):
        evaluate.evaluate(str(DOMAIN / "initial.py"), "check")
