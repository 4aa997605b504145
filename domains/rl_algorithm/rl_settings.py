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

    steps: int = 120
    prompts_per_step: int = 16
    group_size: int = 8
    num_iterations: int = 2
    learning_rate: float = 1e-3
    temperature: float = 1.0
    max_completion_length: int = 5


class SettingsError(Exception):
    """task.yaml's settings are unusable; the message is one line."""


@dataclass(frozen=True)
class TaskSettings:
    """Everything the evaluator needs besides the program.

    warm_start: the model, the data splits and the supervised warm-up (rl_model.py).
    rl: the GRPO budget every candidate gets (rl_trainer.py).
    seed: GRPO seed of the explore stage.
    verify_seeds: GRPO seeds of the verify stage (score = mean accuracy over them).
    check_timeout: seconds the check child may run.
    train_timeout: seconds one training child may run.
    """

    warm_start: WarmStartSettings = field(default_factory=WarmStartSettings)
    rl: RLSettings = field(default_factory=RLSettings)
    seed: int = 0
    verify_seeds: tuple[int, ...] = (1, 2, 3)
    check_timeout: float = 60.0
    train_timeout: float = 400.0

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


def load_settings(task_dir: Path | None = None) -> TaskSettings:
    """Settings from ``task_dir`` / $ASI_EVOLVE_TASK_DIR / this file's directory."""
    if task_dir is None:
        env = os.environ.get("ASI_EVOLVE_TASK_DIR")
        task_dir = Path(env) if env else Path(__file__).resolve().parent
    spec = task_dir / "task.yaml"
    raw = yaml.safe_load(spec.read_text(encoding="utf-8")) or {}
    settings = raw.get("settings") or {}
    if not isinstance(settings, dict):
        raise SettingsError(f"{spec}: settings must be a mapping")
    top = {f.name for f in fields(TaskSettings)}
    unknown = sorted(set(settings) - top)
    if unknown:
        raise SettingsError(f"{spec}: unknown setting settings.{unknown[0]}")
    values = dict(settings)
    values["warm_start"] = _build(WarmStartSettings, settings.get("warm_start"), "warm_start")
    values["rl"] = _build(RLSettings, settings.get("rl"), "rl")
    if "verify_seeds" in values:
        values["verify_seeds"] = tuple(int(s) for s in values["verify_seeds"])
    return TaskSettings(**values)
