"""The task's ``settings:`` mapping (task.yaml), parsed and checked.

The evaluator reads its sizes from the task directory rather than from constants, so tests
can copy the domain to a temporary directory and shrink everything. Unknown keys are errors:
a misspelt setting silently falling back to a default would make runs incomparable.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

CACHE_VERSION = 2  # bump when the warm-start recipe changes, so old caches are not reused


@dataclass(frozen=True)
class WarmStartSettings:
    """Everything that determines the warm-start model (and so its cache key).

    max_operand: problems are ``a+b=`` with 0 <= a, b <= max_operand.
    n_test: held-out problems the score is measured on.
    n_val: problems that decide when the warm-up stops.
    data_seed: shuffles the pairs into splits.
    hidden_size, intermediate_size, num_layers, num_heads: the Llama's shape.
    init_seed: seeds the weights and the warm-up batches.
    sft_lr, sft_batch_size: AdamW step size and batch size of the warm-up.
    sft_max_steps: upper bound on warm-up steps.
    sft_eval_every: steps between validation checks.
    sft_target_accuracy: stop at the first check whose validation accuracy reaches this.
    max_new_tokens: generation length for the answers (digits plus EOS).
    """

    max_operand: int = 99
    n_test: int = 400
    n_val: int = 200
    data_seed: int = 0
    hidden_size: int = 96
    intermediate_size: int = 256
    num_layers: int = 2
    num_heads: int = 4
    init_seed: int = 0
    sft_lr: float = 3e-3
    sft_batch_size: int = 64
    sft_max_steps: int = 3000
    sft_eval_every: int = 25
    sft_target_accuracy: float = 0.3
    max_new_tokens: int = 5

    def key(self) -> str:
        text = json.dumps({"v": CACHE_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RLSettings:
    """The fixed GRPO budget every candidate gets (identical for all, so scores compare).

    steps: optimiser steps.
    prompts_per_step: distinct prompts per generation batch.
    group_size: completions sampled per prompt (G).
    num_iterations: optimiser passes over each generation batch (> 1 makes the ratio and
      its clipping matter, as in PPO).
    learning_rate: AdamW step size (constant schedule).
    temperature: sampling temperature of the rollouts.
    max_completion_length: tokens sampled per completion.
    """

    steps: int = 600
    prompts_per_step: int = 16
    group_size: int = 8
    num_iterations: int = 2
    learning_rate: float = 3e-4
    temperature: float = 1.0
    max_completion_length: int = 5


@dataclass(frozen=True)
class RealModelSettings:
    """Optional: a real small model on a real math set instead of the tiny synthetic setup.

    model_path: a local Hugging Face model directory (e.g. a 0.5B instruct model); when set,
      it is the starting policy (no warm-up) and ``dataset_path`` must be set too.
    dataset_path: a ``datasets.save_to_disk`` directory: a DatasetDict with ``train`` and
      ``test`` splits, or one Dataset whose first ``n_test`` rows become the test split.
    question_field, answer_field: its columns; the answer's last number is the target
      (so GSM8K's ``... #### 42`` works as is).
    prompt_template: the prompt, with ``{question}`` in it.
    n_test: held-out problems to score on (taken from ``test`` or from the front).
    max_new_tokens: greedy generation length when scoring.
    eval_batch_size: prompts per generate call when scoring.
    """

    model_path: str | None = None
    dataset_path: str | None = None
    question_field: str = "question"
    answer_field: str = "answer"
    prompt_template: str = (
        "{question}\nSolve step by step, then write the final number after '####'.\n"
    )
    n_test: int = 200
    max_new_tokens: int = 256
    eval_batch_size: int = 32

    @property
    def enabled(self) -> bool:
        return bool(self.model_path)


class SettingsError(Exception):
    """task.yaml's settings are unusable; the message is one line."""


@dataclass(frozen=True)
class TaskSettings:
    """Everything the evaluator needs besides the program.

    warm_start: the model, the data splits and the supervised warm-up (rl_model.py).
    rl: the GRPO budget every candidate gets (rl_trainer.py).
    real_model: a real model and data set instead of the tiny setup (rl_real.py).
    seed: GRPO seed of the explore stage.
    verify_seeds: GRPO seeds of the verify stage (score = mean accuracy over them).
    check_timeout: seconds the check child may run.
    train_timeout: seconds one training child may run.
    source_dir: the task directory these settings were read from (set by load_settings;
      training children re-read the settings from it).
    """

    warm_start: WarmStartSettings = field(default_factory=WarmStartSettings)
    rl: RLSettings = field(default_factory=RLSettings)
    real_model: RealModelSettings = field(default_factory=RealModelSettings)
    seed: int = 0
    verify_seeds: tuple[int, ...] = (1, 2, 3)
    check_timeout: float = 60.0
    train_timeout: float = 400.0
    source_dir: str = ""

    def rl_dict(self) -> dict[str, Any]:
        return asdict(self.rl)


def _build(cls, raw: Any, where: str):
    if raw is None:
        return cls()
    if not isinstance(raw, dict):
        raise SettingsError(f"settings.{where} must be a mapping")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise SettingsError(f"unknown setting settings.{where}.{unknown[0]}")
    return cls(**raw)


def task_dir() -> Path:
    """$ASI_EVOLVE_TASK_DIR, else the directory of this file (the domain itself)."""
    env = os.environ.get("ASI_EVOLVE_TASK_DIR")
    return Path(env).resolve() if env else Path(__file__).resolve().parent


def load_settings(directory: Path | None = None) -> TaskSettings:
    """Settings from the task.yaml in ``directory`` (default: ``task_dir()``)."""
    directory = (directory or task_dir()).resolve()
    spec = directory / "task.yaml"
    raw = yaml.safe_load(spec.read_text(encoding="utf-8")) or {}
    settings = raw.get("settings") or {}
    if not isinstance(settings, dict):
        raise SettingsError(f"{spec}: settings must be a mapping")
    top = {f.name for f in fields(TaskSettings)} - {"source_dir"}
    unknown = sorted(set(settings) - top)
    if unknown:
        raise SettingsError(f"{spec}: unknown setting settings.{unknown[0]}")
    values = dict(settings)
    values["warm_start"] = _build(WarmStartSettings, settings.get("warm_start"), "warm_start")
    values["rl"] = _build(RLSettings, settings.get("rl"), "rl")
    values["real_model"] = _build(RealModelSettings, settings.get("real_model"), "real_model")
    if values["real_model"].enabled and not values["real_model"].dataset_path:
        raise SettingsError(f"{spec}: settings.real_model.model_path needs dataset_path too")
    if "verify_seeds" in values:
        values["verify_seeds"] = tuple(int(s) for s in values["verify_seeds"])
    values["source_dir"] = str(directory)
    return TaskSettings(**values)
