"""linear_attention domain end to end at tiny sizes: the explore stage is deterministic and
separates a real mixer from no mixing; a 2-step offline run goes through the real CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from domains.tiny_settings import LINEAR_ATTENTION

pytestmark = pytest.mark.domains
for _extra in ("torch", "fla"):
    pytest.importorskip(
        _extra, reason="the linear_attention domain needs pip install -e '.[domains]'"
    )

ROOT = Path(__file__).resolve().parents[2]
DOMAIN = ROOT / "domains" / "linear_attention"
TINY = LINEAR_ATTENTION
NO_MIXING = """import torch
from torch import nn

# EVOLVE-BLOCK-START
class TokenMixer(nn.Module):
    def __init__(self, d_model, n_heads):
        super().__init__()
        self.proj = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x):
        return self.proj(x) * 1.0
# EVOLVE-BLOCK-END
"""


@pytest.fixture(scope="module")
def tiny_task(tmp_path_factory) -> Path:
    """A copy of the domain with tiny settings (and its own corpus cache)."""
    root = tmp_path_factory.mktemp("la")
    task = root / "linear_attention"
    shutil.copytree(DOMAIN, task, ignore=shutil.ignore_patterns("__pycache__"))
    spec = yaml.safe_load((task / "task.yaml").read_text())
    spec["settings"].update(TINY)
    # verify (several seeds, candidate and baseline) is tested in-process below
    spec["stages"] = [stage for stage in spec["stages"] if stage["name"] != "verify"]
    for stage in spec["stages"]:
        stage["timeout"] = 240
    (task / "task.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    sys.path.insert(0, str(task))
    import corpus

    old = os.environ.get("ASI_EVOLVE_CACHE")
    os.environ["ASI_EVOLVE_CACHE"] = str(root / "cache")
    corpus.load()  # built once here, read by every evaluator of this module
    if old is None:
        del os.environ["ASI_EVOLVE_CACHE"]
    else:
        os.environ["ASI_EVOLVE_CACHE"] = old
    return task


def test_training_is_deterministic_in_process(tiny_task, monkeypatch):
    monkeypatch.setenv("ASI_EVOLVE_CACHE", str(tiny_task.parent / "cache"))
    monkeypatch.setenv("ASI_EVOLVE_TASK_DIR", str(tiny_task))
    monkeypatch.syspath_prepend(str(tiny_task))
    import evaluate

    settings = evaluate.load_settings(use_cuda=False)
    program = str(tiny_task / "initial.py")
    lm = evaluate.child_train("lm", program, settings, seed=0)
    assert lm["bpb"] == evaluate.child_train("lm", program, settings, seed=0)["bpb"]
    assert lm["bpb"] != evaluate.child_train("lm", program, settings, seed=1)["bpb"]
    assert 3.0 < lm["bpb"] < 9.0
    mqar = evaluate.child_train("mqar", program, settings, seed=0)
    assert mqar["mqar"] == evaluate.child_train("mqar", program, settings, seed=0)["mqar"]
    assert 0.0 <= mqar["mqar"] <= 1.0


def test_verify_compares_with_a_cached_baseline(tiny_task, tmp_path, monkeypatch):
    monkeypatch.setenv("ASI_EVOLVE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ASI_EVOLVE_TASK_DIR", str(tiny_task))
    monkeypatch.syspath_prepend(str(tiny_task))
    import evaluate

    calls = []

    def fake_pairs(program, settings, seeds, scratch, tag):
        calls.append(tag)
        bpb = 3.0 if tag == "verify" else 3.1
        return [({"bpb": bpb + 0.01 * s}, {"mqar": 0.9}) for s in seeds]

    monkeypatch.setattr(evaluate, "run_pairs", fake_pairs)
    settings = {**evaluate.load_settings(use_cuda=False), "verify_seeds": [0, 1]}
    candidate = tmp_path / "cand.py"
    candidate.write_text(NO_MIXING)
    out = evaluate.stage_verify(str(candidate), settings, tmp_path)
    assert out["beats_baseline"] and out["baseline_bpb"] == 3.105 and out["bpb"] == 3.005
    assert calls == ["verify", "baseline"]
    evaluate.stage_verify(str(candidate), settings, tmp_path)
    assert calls == ["verify", "baseline", "verify"]  # the baseline came from the cache
    skipped = evaluate.stage_verify(str(tiny_task / "initial.py"), settings, tmp_path)
    assert skipped["beats_baseline"] is False and "verify_skipped" in skipped
    assert calls == ["verify", "baseline", "verify"]  # nothing trained for the baseline itself


@pytest.mark.slow
def test_no_stage_runs_check_then_explore(tiny_task, tmp_path):
    program = tmp_path / "program.py"
    program.write_text(NO_MIXING)
    results = tmp_path / "results.json"
    env = {
        **os.environ,
        "ASI_EVOLVE_RESULTS": str(results),
        "ASI_EVOLVE_TASK_DIR": str(tiny_task),
        "ASI_EVOLVE_CACHE": str(tiny_task.parent / "cache"),
    }
    subprocess.run(
        [sys.executable, str(tiny_task / "evaluate.py"), str(program)],
        env=env,
        cwd=tmp_path,
        check=True,
        capture_output=True,
        timeout=300,
    )
    both = json.loads(results.read_text())
    assert both["valid"], both.get("error")
    metrics = both["metrics"]
    assert "param_ratio" in metrics and "growth_flops" in metrics  # the check stage ran
    for key in ("bpb", "mqar", "delta_bpb", "delta_mqar", "lm_step_ms", "params"):
        assert key in metrics  # and the explore stage
    assert isinstance(both["score"], float)


@pytest.mark.slow
def test_offline_run_through_the_cli(tiny_task, tmp_path):
    run_dir = tmp_path / "run"
    env = {
        **os.environ,
        "ASI_EVOLVE_CACHE": str(tiny_task.parent / "cache"),
        "OPENAI_BASE_URL": "",
        "OPENAI_API_KEY": "",
    }
    config = tmp_path / "config.yaml"  # the sandbox may write the corpus cache
    config.write_text(
        yaml.safe_dump({"engineer": {"sandbox_writable": [str(tiny_task.parent / "cache")]}})
    )
    cmd = [
        sys.executable,
        "-m",
        "engine.cli",
        "run",
        str(tiny_task),
        "--steps",
        "2",
        "--workers",
        "1",
        "--run-dir",
        str(run_dir),
        "--quiet",
        "--no-cognition",
        "--config",
        str(config),
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-2000:]
    status = subprocess.run(
        [sys.executable, "-m", "engine.cli", "status", str(run_dir), "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    summary = json.loads(status.stdout)
    assert summary["steps_done"] == 2
    assert summary["done"] >= 1 and summary["best_score"] is not None
