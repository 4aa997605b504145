"""The task's ``settings:`` mapping (task.yaml), parsed and checked.

The evaluator reads its sizes from the task directory rather than from constants, so tests
can copy the domain to a temporary directory and shrink everything. Unknown keys are errors:
a misspelt setting silently falling back to a default would make runs incomparable.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml
from rl_model import WarmStartSettings
from rl_trainer import RLSettings


class SettingsError(Exception):
    """task.yaml's settings are unusable; the message is one line."""


@dataclass(frozen=True)
class TaskSettings:
    """Everything the evaluator needs besides the program.

    warm_start: the model, the data splits and the supervised warm-up (rl_model.py).
    rl: the GRPO budget every candidate gets (rl_trainer.py).
    seed: GRPO seed of the explore stage.
    verify_seeds: GRPO seeds of the verify stage (score = mean accuracy over them).
    check_steps: real GRPO steps the check stage runs to exercise the trainer.
    check_timeout: seconds the check child may run.
    train_timeout: seconds one training child may run.
    """

    warm_start: WarmStartSettings = field(default_factory=WarmStartSettings)
    rl: RLSettings = field(default_factory=RLSettings)
    seed: int = 0
    verify_seeds: tuple[int, ...] = (1, 2, 3)
    check_steps: int = 2
    check_timeout: float = 120.0
    train_timeout: float = 400.0

    def rl_dict(self) -> dict[str, Any]:
        return asdict(self.rl)

    def check_rl(self) -> dict[str, Any]:
        """A two-step budget with two prompts: enough to run every code path once."""
        return {**asdict(self.rl), "steps": self.check_steps, "prompts_per_step": 2}


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
