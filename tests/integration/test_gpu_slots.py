"""GPU slots end to end: 4 workers, 2 fake GPUs, never more than 2 experiments at once.

The evaluate command of a copied circle-packing task is wrapped by a probe that records,
in the node's own work dir (the only place a sandboxed evaluator may write), when it ran
and which devices it was given, then runs the real evaluator.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest
from conftest import REPO, cli

PROBE = textwrap.dedent(
    """
    import json, os, subprocess, sys, time
    start = time.time()
    time.sleep(0.4)  # long enough for overlaps to show
    rc = subprocess.call([sys.executable] + sys.argv[1:])
    record = {"start": start, "end": time.time(), "gpus": os.environ["CUDA_VISIBLE_DEVICES"],
              "threads": os.environ.get("OMP_NUM_THREADS")}
    with open(f"probe-{os.getpid()}.json", "w") as f:
        json.dump(record, f)
    sys.exit(rc)
    """
)


@pytest.mark.slow
def test_four_workers_two_fake_gpus(tmp_path: Path) -> None:
    task = tmp_path / "cp"
    shutil.copytree(REPO / "domains" / "circle_packing", task)
    (task / "probe.py").write_text(PROBE)
    spec = (task / "task.yaml").read_text()
    spec += 'evaluate_command: "{python} {task_dir}/probe.py {evaluator} {program}"\n'
    (task / "task.yaml").write_text(spec)
    config = tmp_path / "config.yaml"
    config.write_text(
        "engineer:\n  gpus: 2\n  cpus: 8\n  resources: {evaluate: {gpus: 1, cpus: 2}}\n"
    )
    run = tmp_path / "run"
    result = cli(
        "run",
        str(task),
        "--steps",
        "10",
        "--workers",
        "4",
        "--run-dir",
        str(run),
        "--config",
        str(config),
    )
    assert result.returncode == 0, result.stderr
    assert "local slots: 8 CPUs, GPUs 0,1" in result.stdout
    records = [json.loads(p.read_text()) for p in run.glob("nodes/*/probe-*.json")]
    assert len(records) == 11  # the root and 10 candidates
    assert {r["gpus"] for r in records} <= {"0", "1"}
    assert all(r["threads"] == "2" for r in records)
    for r in records:  # whoever runs when r starts holds a device of its own
        at_start = [o for o in records if o["start"] <= r["start"] < o["end"]]
        assert len({o["gpus"] for o in at_start}) == len(at_start)
    events = sorted([(r["start"], 1) for r in records] + [(r["end"], -1) for r in records])
    running = most = 0
    for _, change in events:  # ends sort before starts at the same instant
        running += change
        most = max(most, running)
    assert most == 2  # never more than 2, and the slots were really shared out


def test_a_request_this_machine_cannot_meet_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("engineer:\n  gpus: 1\n  resources: {evaluate: {gpus: 2}}\n")
    run = tmp_path / "run"
    result = cli(
        "run", "circle_packing", "--steps", "1", "--run-dir", str(run), "--config", str(config)
    )
    assert result.returncode == 2
    assert "needs 2 GPUs, this machine has 1" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not run.exists()
    config.write_text("engineer:\n  resources: {explore: {gpus: 1}}\n")
    result = cli(
        "run", "circle_packing", "--steps", "1", "--run-dir", str(run), "--config", str(config)
    )
    assert result.returncode == 2 and "names no stage of circle_packing: explore" in result.stderr
    assert not run.exists()
