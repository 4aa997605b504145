"""benchmarks/gpu_smoke.sh: its refusal without CUDA, its table, and its CPU dry run of the
linear_attention domain (the same flow as on a GPU, tiny budgets). Not needed by the suite."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_smoke.sh"


def _driver():
    spec = importlib.util.spec_from_file_location(
        "gpu_smoke_driver", ROOT / "benchmarks" / "gpu_smoke.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(
    shutil.which("nvidia-smi") is not None or Path("/dev/nvidia0").exists(),
    reason="a CUDA machine: the script would install and run",
)
def test_refuses_without_cuda_in_one_line():
    proc = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "CUDA is not available" in proc.stderr and "--cpu-dry-run" in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_table_rows():
    table = _driver().format_table(
        [
            {
                "domain": "linear_attention",
                "time": 61.04,
                "score": 99.19,
                "error": None,
                "device": "fla, cuda bf16",
            },
            {
                "domain": "rl_algorithm",
                "time": 3.0,
                "score": None,
                "error": "explore: timeout",
                "device": "cpu",
            },
        ]
    )
    lines = table.splitlines()
    assert lines[0] == "| domain | time (s) | score | kernel / device |"
    assert lines[2] == "| linear_attention | 61.0 | 99.19 | fla, cuda bf16 |"
    assert "FAILED: explore: timeout" in lines[3]


@pytest.mark.slow
@pytest.mark.domains
def test_cpu_dry_run_of_linear_attention():
    for extra in ("torch", "fla", "yaml"):
        pytest.importorskip(extra, reason="needs pip install -e '.[domains]'")
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--cpu-dry-run", "--domains", "linear_attention"],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    row = [line for line in proc.stdout.splitlines() if line.startswith("| linear_attention")]
    assert len(row) == 1 and "PyTorch WY delta rule, cpu" in row[0], proc.stdout
    float(row[0].split("|")[3])  # a score, not FAILED
