"""Run configuration: defaults, a YAML file, and command-line flags, in that order.

The resolved configuration is stored in the run database when a run starts, so a
resumed run keeps its settings and two runs can be compared by what they were told.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from engine.samplers.base import SamplerSettings

LLM_MODES = ("offline", "openai")
BUDGET_KEYS = ("max_cost_usd", "max_tokens_total")


class ConfigError(Exception):
    """The configuration is unusable; the message is a one-line explanation."""


@dataclass
class EngineerSettings:
    """How candidates are run: wall-clock limit (None = the task's), rlimits, kept output.

    sandbox: auto | bwrap | landlock | none (``engine/sandbox.py``); auto takes the best
      one that works here and says which.
    sandbox_network: False runs evaluators without network (bwrap only).
    sandbox_writable: extra paths evaluators may write besides their node's work dir
      (model and dataset caches); the run and task directories stay read-only.
    backend: local (subprocesses on this machine, GPU/CPU slots from the slot pool) or
      ray (stage runs on a Ray cluster, placed by Ray; see the ``ray:`` section).
    gpus: the GPUs experiments may use: auto (nvidia-smi/torch), a count, or a list of ids
      (``ASI_EVOLVE_FAKE_GPUS=N`` fakes N for tests).
    cpus: CPU slots shared by running experiments (None: this machine's core count).
    resources: per-stage overrides of the task's requests on this machine, e.g.
      ``{explore: {gpus: 1, cpus: 4}}``.
    debug_attempts: fixes the debug agent may try after a candidate crashes (0: off).
    """

    timeout: float | None = None
    cpu_seconds: int | None = None
    memory_mb: int | None = None
    output_tail_bytes: int = 64_000
    sandbox: str = "auto"
    sandbox_network: bool = True
    sandbox_writable: list[str] = field(default_factory=lambda: ["~/.cache"])
    backend: str = "local"
    gpus: Any = "auto"
    cpus: int | None = None
    resources: dict[str, Any] = field(default_factory=dict)
    debug_attempts: int = 2


@dataclass
class RunConfig:
    steps: int = 60
    workers: int = 2
    seed: int | None = None
    llm: str | None = None  # None: openai when an endpoint is configured, else offline
    use_analyzer: bool = True
    use_cognition: bool = True
    backup_every: int = 10  # online backup of the run database every N finished nodes (0: off)
    sampler: SamplerSettings = field(default_factory=SamplerSettings)
    engineer: EngineerSettings = field(default_factory=EngineerSettings)
    # Sections owned by the agents and the cognition base; kept as plain mappings here.
    api: dict[str, Any] = field(default_factory=dict)
    judge: dict[str, Any] = field(default_factory=dict)
    cognition: dict[str, Any] = field(default_factory=dict)
    novelty: dict[str, Any] = field(default_factory=dict)
    budget: dict[str, Any] = field(default_factory=dict)
    researcher: dict[str, Any] = field(default_factory=dict)
    # engineer.backend = ray: address / max_retries / num_cpus (engine.ray_backend.RaySettings).
    ray: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        if self.steps < 0:
            raise ConfigError(f"steps must be >= 0, got {self.steps}")
        if self.workers < 1:
            raise ConfigError(f"workers must be >= 1, got {self.workers}")
        timeout = self.engineer.timeout
        if timeout is not None and not (0 < timeout < float("inf")):
            raise ConfigError(f"engineer.timeout must be a positive number, got {timeout!r}")
        if self.seed is not None and self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")
        unknown = sorted(set(self.budget) - set(BUDGET_KEYS))
        if unknown:
            raise ConfigError(
                f"budget: unknown key {unknown[0]!r} (known: {', '.join(BUDGET_KEYS)})"
            )
        for key, value in self.budget.items():
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
                raise ConfigError(f"budget.{key} must be a number, got {value!r}")
            if value < 0:
                raise ConfigError(f"budget.{key} must be >= 0, got {value!r}")
        if self.backup_every < 0:
            raise ConfigError(f"backup_every must be >= 0, got {self.backup_every}")
        if self.engineer.cpus is not None and self.engineer.cpus < 1:
            raise ConfigError(f"engineer.cpus must be >= 1, got {self.engineer.cpus}")
        if self.engineer.debug_attempts < 0:
            raise ConfigError("engineer.debug_attempts must be >= 0")
        for name, wanted in self.engineer.resources.items():
            if not isinstance(wanted, dict) or not set(wanted) <= {"cpus", "gpus"}:
                raise ConfigError(f"engineer.resources.{name} must be a mapping of cpus/gpus")
            if any(not isinstance(v, int) or isinstance(v, bool) or v < 0 for v in wanted.values()):
                raise ConfigError(f"engineer.resources.{name}: counts must be integers >= 0")
        if self.engineer.backend not in ("local", "ray"):
            backend = self.engineer.backend
            raise ConfigError(f"engineer.backend must be local or ray, got {backend!r}")
        from engine.ray_backend import RaySettings

        try:
            RaySettings(**self.ray)
        except TypeError as exc:
            raise ConfigError(f"ray: {exc}".replace("RaySettings.__init__() ", "")) from None
        if self.llm is not None and self.llm not in LLM_MODES:
            raise ConfigError(f"llm must be one of {', '.join(LLM_MODES)}, got {self.llm!r}")
        s = self.sampler
        from engine.samplers import SAMPLERS

        if s.name not in SAMPLERS:
            raise ConfigError(f"unknown sampler {s.name!r} (choose from {', '.join(SAMPLERS)})")
        if s.n_context < 1:
            raise ConfigError("sampler.n_context must be >= 1")
        if s.num_islands < 1 or s.migration_interval < 1 or s.feature_bins < 1:
            raise ConfigError("sampler island settings must be >= 1")
        if not 0 <= s.exploration_ratio + s.exploitation_ratio <= 1:
            raise ConfigError("sampler exploration_ratio + exploitation_ratio must be in [0, 1]")
        if self.engineer.timeout is not None and self.engineer.timeout <= 0:
            raise ConfigError("engineer.timeout must be positive")
        from engine.sandbox import KINDS

        if self.engineer.sandbox not in KINDS:
            raise ConfigError(
                f"engineer.sandbox must be one of {', '.join(KINDS)}, got {self.engineer.sandbox!r}"
            )
        if not all(isinstance(p, str) and p for p in self.engineer.sandbox_writable):
            raise ConfigError("engineer.sandbox_writable must be a list of paths")


def from_dict(
    raw: dict[str, Any], base: RunConfig | None = None, origin: str = "config"
) -> RunConfig:
    """Overlay a mapping (a YAML file, a stored config) on ``base`` with type checks."""
    config = dataclasses.replace(base) if base is not None else RunConfig()
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: expected a mapping at the top level")
    known = {f.name: f for f in dataclasses.fields(RunConfig)}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"{origin}: unknown setting {key!r}")
        current = getattr(config, key)
        if dataclasses.is_dataclass(current):
            setattr(config, key, _overlay(current, value, f"{origin}: {key}"))
        elif isinstance(current, dict) or key in ("api", "judge", "cognition", "novelty"):
            if not isinstance(value, dict):
                raise ConfigError(f"{origin}: {key} must be a mapping")
            setattr(config, key, {**(current or {}), **value})
        else:
            setattr(config, key, _coerce(value, current, f"{origin}: {key}", key))
    return config


def load_file(path: Path, base: RunConfig | None = None) -> RunConfig:
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: malformed YAML ({' '.join(str(exc).split())})") from None
    return from_dict(raw, base, origin=str(path))


def _overlay(obj: Any, value: Any, origin: str) -> Any:
    if not isinstance(value, dict):
        raise ConfigError(f"{origin} must be a mapping")
    fields = {f.name for f in dataclasses.fields(obj)}
    updates = {}
    for key, item in value.items():
        if key not in fields:
            raise ConfigError(f"{origin}: unknown setting {key!r}")
        updates[key] = _coerce(item, getattr(obj, key), f"{origin}.{key}", key)
    try:
        return dataclasses.replace(obj, **updates)
    except ValueError as exc:  # the section's own checks (e.g. SamplerSettings)
        raise ConfigError(f"{origin}: {exc}") from None


_OPTIONAL_INT = {"seed", "cpu_seconds", "memory_mb", "parent_top_k", "context_top_k", "cpus"}
_FREE_FORM = {"gpus"}  # auto | a count | a list of ids: checked by engine.resources
_OPTIONAL_FLOAT = {"timeout"}
_OPTIONAL_STR = {"llm"}


def _coerce(value: Any, current: Any, origin: str, key: str) -> Any:
    """Check a value against the type of the default it replaces."""
    if value is None and (key in _OPTIONAL_INT | _OPTIONAL_FLOAT | _OPTIONAL_STR):
        return None
    if key in _FREE_FORM:
        return value
    expected: type
    if key in _OPTIONAL_INT:
        expected = int
    elif key in _OPTIONAL_FLOAT:
        expected = float
    elif key in _OPTIONAL_STR:
        expected = str
    else:
        expected = type(current)
    if expected is bool:
        if isinstance(value, bool):
            return value
    elif expected is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif expected is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif expected is list:
        if isinstance(value, list):
            return list(value)
    elif expected is dict:
        if isinstance(value, dict):
            return dict(value)
    elif isinstance(value, expected):
        return value
    raise ConfigError(f"{origin} must be {expected.__name__}, got {value!r}")
