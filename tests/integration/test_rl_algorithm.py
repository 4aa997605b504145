"""rl_algorithm domain: contract checks, cheating candidates, determinism, a tiny end-to-end run.

Everything runs on a copy of the domain with shrunk settings (a 1-layer model, problems up
to 19+19, a few GRPO steps) and a private cache directory, so the whole file stays well under
a minute on two CPU cores.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

torch = pytest.importorskip("torch", reason="the rl_algorithm domain needs torch")
for _extra in ("transformers", "trl", "datasets"):
    pytest.importorskip(_extra, reason="the rl_algorithm domain needs pip install -e '.[domains]'")

ROOT = Path(__file__).resolve().parents[2]
DOMAIN = ROOT / "domains" / "rl_algorithm"
sys.path.insert(0, str(DOMAIN))

from rl_checks import advantage_problems, loss_problems  # noqa: E402
from rl_data import exact_reward, make_splits  # noqa: E402
from rl_static import static_problems  # noqa: E402
from rl_trainer import CandidateError, check_advantages, check_loss  # noqa: E402

from domains.tiny_settings import RL_ALGORITHM  # noqa: E402

pytestmark = pytest.mark.domains

TINY = RL_ALGORITHM


def candidate(**replace: str) -> str:
    """The initial program with some lines replaced (old line -> new line)."""
    source = (DOMAIN / "initial.py").read_text(encoding="utf-8")
    for old, new in replace.items():
        assert old in source, old
        source = source.replace(old, new)
    return source


def load(source: str, tmp_path: Path):
    path = tmp_path / "candidate.py"
    path.write_text(source, encoding="utf-8")
    from rl_checks import load_candidate

    return load_candidate(str(path))


@pytest.fixture(scope="module")
def tiny_task(tmp_path_factory) -> Path:
    """A copy of the domain with tiny settings, and its own cache directory."""
    base = tmp_path_factory.mktemp("rl_task")
    task = base / "rl_algorithm"
    shutil.copytree(DOMAIN, task, ignore=shutil.ignore_patterns("__pycache__"))
    spec = yaml.safe_load((task / "task.yaml").read_text(encoding="utf-8"))
    spec["settings"] = TINY
    spec["timeout"] = 120
    (task / "task.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    # Build the warm start here, so that sandboxed evaluators only ever read the cache.
    from rl_model import cached_warm_start
    from rl_settings import load_settings

    saved = os.environ.get("ASI_EVOLVE_CACHE")
    os.environ["ASI_EVOLVE_CACHE"] = str(base / "cache")
    try:
        cached_warm_start(load_settings(task).warm_start)
    finally:
        if saved is None:
            os.environ.pop("ASI_EVOLVE_CACHE")
        else:
            os.environ["ASI_EVOLVE_CACHE"] = saved
    return task


def run_evaluator(task: Path, program: Path, stage: str | None, workdir: Path) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "ASI_EVOLVE_TASK_DIR": str(task),
        "ASI_EVOLVE_CACHE": str(task.parent / "cache"),
        "ASI_EVOLVE_RESULTS": str(workdir / "results.json"),
        "OMP_NUM_THREADS": "1",
    }
    cmd = [sys.executable, str(task / "evaluate.py"), str(program)]
    if stage:
        cmd[2:2] = ["--stage", stage]
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads((workdir / "results.json").read_text(encoding="utf-8"))


# --- pure checks -------------------------------------------------------------------------


def test_splits_are_disjoint_and_reward_is_exact() -> None:
    splits = make_splits(19, 60, 40, 0)
    prompts = [set(p.prompt for p in part) for part in (splits.train, splits.val, splits.test)]
    assert not (prompts[0] & prompts[1] or prompts[0] & prompts[2] or prompts[1] & prompts[2])
    assert sum(len(p) for p in prompts) == 400
    assert exact_reward(" 12", "12") == 1.0
    assert exact_reward("123", "12") == 0.0 and exact_reward("1 2", "12") == 0.0


def test_initial_program_passes_the_contract(tmp_path: Path) -> None:
    source = (DOMAIN / "initial.py").read_text(encoding="utf-8")
    assert static_problems(source) == []
    compute_advantages, policy_loss = load(source, tmp_path)
    assert advantage_problems(compute_advantages) == []
    assert loss_problems(policy_loss) == []
    advantages = compute_advantages(torch.tensor([1.0, 0, 0, 0, 1, 1, 1, 1]), 4)
    assert advantages[0] > 0 > advantages[1] and torch.all(advantages[4:] == 0)


def test_static_check_rejects_imports_and_file_access() -> None:
    bad = candidate(**{"import torch": "import torch\nimport os"})
    assert any("'os'" in p for p in static_problems(bad))
    leak = candidate(**{"    grouped = rewards": "    open('x')\n    grouped = rewards"})
    assert any("'open'" in p for p in static_problems(leak))
    assert "syntax error" in static_problems("def compute_advantages(:\n")[0]
    assert any("policy_loss" in p for p in static_problems("def compute_advantages(r, g): pass"))


@pytest.mark.parametrize(
    ("replace", "reason"),
    [
        (
            {"    return advantages.reshape(-1)": "    return torch.ones_like(rewards)"},
            "advantages ignore the rewards",
        ),
        ({"    return advantages.reshape(-1)": "    return advantages"}, "shape"),
        (
            {"    return advantages.reshape(-1)": "    return advantages.reshape(-1) / 0.0"},
            "NaN or infinity",
        ),
        ({"ADV_EPS = 0.0001": "ADV_EPS = 0.0"}, "NaN or infinity"),
    ],
)
def test_broken_advantages_are_caught(tmp_path: Path, replace: dict, reason: str) -> None:
    compute_advantages, _ = load(candidate(**replace), tmp_path)
    problems = advantage_problems(compute_advantages)
    assert problems and reason in problems[0], problems


@pytest.mark.parametrize(
    ("replace", "reason"),
    [
        (
            {"    return per_sequence.mean()": "    return -(logp * mask).sum() / mask.sum()"},
            "ignores the advantages",
        ),
        (
            {"    return per_sequence.mean()": "    return per_sequence.mean() * float('nan')"},
            "non-finite",
        ),
        ({"    return per_sequence.mean()": "    return per_sequence"}, "scalar"),
        ({"    return per_sequence.mean()": "    return -per_sequence.mean()"}, "wrong way"),
        (
            {"    return per_sequence.mean()": "    return per_sequence.mean().detach()"},
            "without gradient",
        ),
        ({"(per_token * mask).sum(dim=1)": "per_token.sum(dim=1)"}, "padding"),
    ],
)
def test_broken_losses_are_caught(tmp_path: Path, replace: dict, reason: str) -> None:
    _, policy_loss = load(candidate(**replace), tmp_path)
    problems = loss_problems(policy_loss)
    assert problems and reason in problems[0], problems


def test_trainer_side_guards() -> None:
    assert check_advantages(torch.zeros(8, 1), 8).shape == (8,)
    with pytest.raises(CandidateError, match="shape"):
        check_advantages(torch.zeros(4), 8)
    with pytest.raises(CandidateError, match="NaN"):
        check_advantages(torch.full((8,), float("nan")), 8)
    with pytest.raises(CandidateError, match="non-finite"):
        check_loss(torch.tensor(float("inf"), requires_grad=True))
    with pytest.raises(CandidateError, match="without gradient"):
        check_loss(torch.tensor(1.0))


def test_real_model_settings_and_math_set(tmp_path: Path) -> None:
    """The real-model path: a local datasets directory, last-number reward, settings checks."""
    from datasets import Dataset, DatasetDict
    from rl_data import number_reward
    from rl_real import problem_source
    from rl_settings import SettingsError, load_settings

    rows = {
        "question": [f"{i}+1=" for i in range(12)],
        "answer": [f"so #### {i + 1}" for i in range(12)],
    }
    DatasetDict({"train": Dataset.from_dict(rows)}).save_to_disk(tmp_path / "math")
    task = tmp_path / "task"
    task.mkdir()
    real = {"model_path": str(tmp_path), "dataset_path": str(tmp_path / "math"), "n_test": 4}
    (task / "task.yaml").write_text(yaml.safe_dump({"settings": {"real_model": real}}), "utf-8")
    source = problem_source(load_settings(task))
    assert len(source.splits.test) == 4 and len(source.splits.train) == 8
    assert source.splits.test[0].prompt.startswith("0+1=")
    assert source.reward("1+1 is 2, #### 2", "x #### 2") == 1.0 == number_reward("1,000", "1000")
    assert number_reward("no number", "#### 2") == 0.0
    (task / "task.yaml").write_text(
        yaml.safe_dump({"settings": {"real_model": {"model_path": "m"}}}), "utf-8"
    )
    with pytest.raises(SettingsError, match="dataset_path"):
        load_settings(task)
    (task / "task.yaml").write_text(yaml.safe_dump({"settings": {"rl": {"stepz": 1}}}), "utf-8")
    with pytest.raises(SettingsError, match="stepz"):
        load_settings(task)


def test_missing_packages_give_one_clear_line(monkeypatch) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("rl_algorithm_evaluate", DOMAIN / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    result = module.evaluate(str(DOMAIN / "initial.py"), "check")
    assert result["valid"] is False
    assert "pip install 'asi-evolve[domains]'" in result["error"]


# --- the evaluator, through its command line ----------------------------------------------


@pytest.mark.slow
def test_check_stage_reports_reasons(tiny_task: Path, tmp_path: Path) -> None:
    bad = tmp_path / "imports_os.py"
    bad.write_text(candidate(**{"import torch": "import torch\nimport os"}), encoding="utf-8")
    result = run_evaluator(tiny_task, bad, "check", tmp_path / "a")
    assert result["valid"] is False and "'os'" in result["error"]
    exits = tmp_path / "exits.py"
    exits.write_text(candidate(**{"import torch": "import torch\nraise SystemExit(3)"}), "utf-8")
    result = run_evaluator(tiny_task, exits, "check", tmp_path / "b")
    assert result["valid"] is False and "SystemExit" in result["error"]


@pytest.mark.slow
def test_nan_loss_in_training_fails_with_reason(tiny_task: Path, tmp_path: Path) -> None:
    """A loss that is fine on the synthetic tensors but NaN in real training is still caught."""
    sneaky = tmp_path / "nan_late.py"
    sneaky.write_text(
        candidate(
            **{
                "    return per_sequence.mean()": "    if logp.shape[0] > 8:\n"
                "        return per_sequence.mean() * float('nan')\n"
                "    return per_sequence.mean()"
            }
        ),
        encoding="utf-8",
    )
    result = run_evaluator(tiny_task, sneaky, "explore", tmp_path / "nan")
    assert result["valid"] is False
    assert "non-finite loss" in result["error"]


@pytest.mark.slow
def test_end_to_end_run_through_the_cli(tiny_task: Path, tmp_path: Path) -> None:
    """One offline step through the real CLI and all three stages (the initial program and
    one candidate). The tiny task's verify seed is the explore seed, so verify re-running the
    initial program must reproduce its explore score exactly (determinism across processes)."""
    run_dir = tmp_path / "run"
    env = {
        **os.environ,
        "ASI_EVOLVE_CACHE": str(tiny_task.parent / "cache"),
        "OMP_NUM_THREADS": "1",
    }
    for key in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "ASI_EVOLVE_MODEL"):
        env.pop(key, None)
    cmd = [
        sys.executable,
        "-m",
        "engine.cli",
        "run",
        str(tiny_task),
        "--steps",
        "1",
        "--workers",
        "1",
        "--run-dir",
        str(run_dir),
        "--quiet",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=170)
    assert proc.returncode == 0, proc.stderr[-2000:]
    status = subprocess.run(
        [sys.executable, "-m", "engine.cli", "status", str(run_dir), "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    summary = json.loads(status.stdout)
    assert summary["steps_done"] == 1
    assert summary["best_score"] is not None and 0.0 <= summary["best_score"] <= 1.0
    from engine.store.run_store import RunStore

    root = next(RunStore.open(run_dir, readonly=True).nodes("step = 0"))
    stages = {name: record["results"] for name, record in root.results["stages"].items()}
    assert stages["check"]["valid"] is True
    explore = stages["explore"]
    for key in ("accuracy", "warm_start_accuracy", "accuracy_gain", "reward_end", "kl_end"):
        assert key in explore["metrics"]
    assert root.score == explore["metrics"]["accuracy"]
    assert "reward curve" in explore["logs"]
    assert stages["verify"]["metrics"]["accuracy_seed0"] == root.score
