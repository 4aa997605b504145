"""Run configuration: defaults, a YAML file, and command-line flags, in that order.

The resolved configuration is stored in the run database when a run starts, so a
resumed run keeps its settings and two runs can be compared by what they were told.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.samplers.settings import SamplerSettings
from engine.yaml_input import load_yaml

LLM_MODES = ("offline", "openai")
BUDGET_KEYS = ("max_cost_usd", "max_tokens_total")


class ConfigError(Exception):
    """The configuration is unusable; the message is a one-line explanation."""


@dataclass(frozen=True)
class EngineerSettings:
    """How candidates are run: wall-clock limit (None = the task's), rlimits, kept output.

    sandbox: auto | bwrap | landlock | none (``engine/execution/sandbox.py``); auto takes the best
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
    reuse_evaluations: a program whose text was evaluated earlier in the run takes that
      evaluation instead of running again (false: evaluate every candidate, e.g. to draw a
      noisy score again).
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
    reuse_evaluations: bool = True


@dataclass(frozen=True)
class RunConfig:
    steps: int = 60
    workers: int = 2
    seed: int | None = None
    llm: str | None = None  # None: openai when an endpoint is configured, else offline
    use_analyzer: bool = True
    use_cognition: bool = True
    backup_every: int = 10  # online backup of the run database every N finished nodes (0: off)
    # ... and at most one backup per this many seconds (0: no floor). A copy of a large
    # database takes seconds of the db thread; cheap candidates must not pay it every 10.
    backup_seconds: float = 60.0
    sampler: SamplerSettings = field(default_factory=SamplerSettings)
    engineer: EngineerSettings = field(default_factory=EngineerSettings)
    # Sections owned by the agents and the cognition base; kept as plain mappings here.
    api: dict[str, Any] = field(default_factory=dict)
    judge: dict[str, Any] = field(default_factory=dict)
    cognition: dict[str, Any] = field(default_factory=dict)
    novelty: dict[str, Any] = field(default_factory=dict)
    budget: dict[str, Any] = field(default_factory=dict)
    researcher: dict[str, Any] = field(default_factory=dict)
    # engineer.backend = ray: address / max_retries / num_cpus
    # (engine.execution.ray_backend.RaySettings).
    ray: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        """Every setting in its range, each failure a one-line ConfigError."""
        _integer(self.steps, "steps", 0, MAX_STEPS)
        _integer(self.workers, "workers", 1, MAX_WORKERS)
        _integer(self.seed, "seed", 0, MAX_SEED, optional=True)
        _integer(self.backup_every, "backup_every", 0, MAX_STEPS)
        _number(self.backup_seconds, "backup_seconds", 0, MAX_TIMEOUT_S)
        for name in ("use_analyzer", "use_cognition"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(
                    f"{name} must be true or false, got {_short(getattr(self, name))}"
                )
        unknown = sorted(set(self.budget) - set(BUDGET_KEYS))
        if unknown:
            raise ConfigError(
                f"budget: unknown key {unknown[0]!r} (known: {', '.join(BUDGET_KEYS)})"
            )
        for key, value in self.budget.items():  # .inf: no limit
            _number(value, f"budget.{key}", 0, float("inf"), optional=True)
        self._validate_engineer()
        self._validate_ray()
        if self.llm is not None and self.llm not in LLM_MODES:
            raise ConfigError(f"llm must be one of {', '.join(LLM_MODES)}, got {self.llm!r}")
        self._validate_sampler()

    def _validate_engineer(self) -> None:
        e = self.engineer
        timeout = e.timeout
        if timeout is not None and (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not 0 < timeout < float("inf")
        ):
            raise ConfigError(f"engineer.timeout must be a positive number, got {_short(timeout)}")
        _number(timeout, "engineer.timeout", 0, MAX_TIMEOUT_S, optional=True, above=True)
        _integer(e.cpu_seconds, "engineer.cpu_seconds", 1, MAX_CPU_SECONDS, optional=True)
        _integer(e.memory_mb, "engineer.memory_mb", 1, MAX_MEMORY_MB, optional=True)
        _integer(e.output_tail_bytes, "engineer.output_tail_bytes", 0, MAX_OUTPUT_TAIL_BYTES)
        _integer(e.cpus, "engineer.cpus", 1, MAX_CPUS, optional=True)
        _integer(e.debug_attempts, "engineer.debug_attempts", 0, MAX_DEBUG_ATTEMPTS)
        _check_gpus(e.gpus)
        if not isinstance(e.resources, dict):
            raise ConfigError("engineer.resources must be a mapping of stage -> {cpus, gpus}")
        for name, wanted in e.resources.items():
            if not isinstance(wanted, dict) or not set(wanted) <= {"cpus", "gpus"}:
                raise ConfigError(f"engineer.resources.{name} must be a mapping of cpus/gpus")
            if any(not isinstance(v, int) or isinstance(v, bool) or v < 0 for v in wanted.values()):
                raise ConfigError(f"engineer.resources.{name}: counts must be integers >= 0")
            for kind, count in wanted.items():
                limit = MAX_CPUS if kind == "cpus" else MAX_GPUS
                _integer(count, f"engineer.resources.{name}.{kind}", 0, limit)
        if e.backend not in ("local", "ray"):
            raise ConfigError(f"engineer.backend must be local or ray, got {_short(e.backend)}")
        from engine.execution.sandbox import KINDS

        if e.sandbox not in KINDS:
            raise ConfigError(
                f"engineer.sandbox must be one of {', '.join(KINDS)}, got {_short(e.sandbox)}"
            )
        if not isinstance(e.sandbox_writable, list) or not all(
            isinstance(p, str) and p and "\x00" not in p for p in e.sandbox_writable
        ):
            raise ConfigError("engineer.sandbox_writable must be a list of paths")

    def _validate_ray(self) -> None:
        from engine.execution.ray_backend import RaySettings

        try:
            ray = RaySettings(**self.ray)
        except TypeError as exc:
            raise ConfigError(f"ray: {exc}".replace("RaySettings.__init__() ", "")) from None
        if not isinstance(ray.address, str) or not ray.address.strip():
            raise ConfigError(f"ray.address must be a non-empty string, got {_short(ray.address)}")
        _integer(ray.max_retries, "ray.max_retries", 0, MAX_RAY_RETRIES)
        _integer(ray.num_cpus, "ray.num_cpus", 1, MAX_CPUS, optional=True)

    def _validate_sampler(self) -> None:
        s = self.sampler
        from engine.samplers import SAMPLER_NAMES as SAMPLERS

        if s.name not in SAMPLERS:
            raise ConfigError(
                f"unknown sampler {_short(s.name)} (choose from {', '.join(SAMPLERS)})"
            )
        _integer(s.n_context, "sampler.n_context", 1, MAX_SAMPLER_COUNT)
        _number(s.ucb_c, "sampler.ucb_c", 0, MAX_SAMPLER_WEIGHT)
        _number(s.rank_tau, "sampler.rank_tau", 0, MAX_SAMPLER_WEIGHT, above=True)
        _number(s.visit_power, "sampler.visit_power", 0, MAX_SAMPLER_WEIGHT)
        _number(s.context_explore, "sampler.context_explore", 0, 1)
        _integer(s.parent_top_k, "sampler.parent_top_k", 1, MAX_STEPS, optional=True)
        _integer(s.context_top_k, "sampler.context_top_k", 1, MAX_STEPS, optional=True)
        _integer(s.num_islands, "sampler.num_islands", 1, MAX_SAMPLER_COUNT)
        _integer(s.migration_interval, "sampler.migration_interval", 1, MAX_STEPS)
        _number(s.migration_rate, "sampler.migration_rate", 0, 1)
        _number(s.exploration_ratio, "sampler.exploration_ratio", 0, 1)
        _number(s.exploitation_ratio, "sampler.exploitation_ratio", 0, 1)
        if s.exploration_ratio + s.exploitation_ratio > 1:
            raise ConfigError("sampler exploration_ratio + exploitation_ratio must be in [0, 1]")
        _integer(s.feature_bins, "sampler.feature_bins", 1, MAX_SAMPLER_COUNT)
        dims = s.feature_dimensions
        if (
            not isinstance(dims, list)
            or not 1 <= len(dims) <= MAX_FEATURE_DIMENSIONS
            or not all(isinstance(d, str) and d.strip() for d in dims)
        ):
            raise ConfigError(
                f"sampler.feature_dimensions must be a list of 1 to {MAX_FEATURE_DIMENSIONS} "
                f"names, got {_short(dims)}"
            )
        if not isinstance(s.feature_ranges, dict):
            raise ConfigError("sampler.feature_ranges must map a feature to [low, high]")
        for name, bounds in s.feature_ranges.items():
            where = f"sampler.feature_ranges.{name}"
            if not isinstance(bounds, list | tuple) or len(bounds) != 2:
                raise ConfigError(f"{where} must be [low, high], got {_short(bounds)}")
            low, high = bounds
            _number(low, f"{where} low", -_FINITE, _FINITE)
            _number(high, f"{where} high", -_FINITE, _FINITE)
            if not low < high:
                raise ConfigError(
                    f"{where} must be [low, high] with low < high, got {_short(bounds)}"
                )


# Upper bounds: far beyond any real run, low enough that no setting can overflow what it
# feeds (rlimits, timers, SQLite integers) or make the engine allocate per unit of it.
MAX_STEPS = 10_000_000  # the samplers are built for ~100,000 nodes
MAX_WORKERS = 4096
MAX_SEED = 2**63 - 1  # a SQLite integer
MAX_TIMEOUT_S = 10_000_000.0  # ~116 days; timers overflow near 2**33 s
MAX_CPU_SECONDS = 10**9  # RLIMIT_CPU, ~32 CPU-years
MAX_MEMORY_MB = 2**24  # RLIMIT_AS of 16 TiB; its byte count stays a C long
MAX_OUTPUT_TAIL_BYTES = 2**24  # 16 MiB kept per stream of each stage, in memory and stored
MAX_CPUS = 4096  # CPU slots (a list of them is kept)
MAX_GPUS = 1024  # GPU ids (a list of them is kept)
MAX_DEBUG_ATTEMPTS = 100
MAX_RAY_RETRIES = 1000
MAX_SAMPLER_COUNT = 10_000  # n_context, islands, bins: each allocates per unit
MAX_SAMPLER_WEIGHT = 1e6
MAX_FEATURE_DIMENSIONS = 32
_FINITE = 1e300


def _short(value: Any) -> str:
    """``repr`` cut to one short piece (never fails, even on a 10,000-digit integer)."""
    try:
        text = repr(value)
    except ValueError:  # int too large to convert to a string
        return f"an integer of {value.bit_length()} bits"
    text = " ".join(text.split())
    return text if len(text) <= 80 else text[:77] + "..."


def _integer(value: Any, name: str, low: int, high: int, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer, got {_short(value)}")
    if value < low:
        raise ConfigError(f"{name} must be >= {low}, got {_short(value)}")
    if value > high:
        raise ConfigError(f"{name} must be <= {high}, got {_short(value)}")


def _number(
    value: Any, name: str, low: float, high: float, optional: bool = False, above: bool = False
) -> None:
    """A number in [low, high] (``above``: in (low, high]); NaN and booleans are refused."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise ConfigError(f"{name} must be a number, got {_short(value)}")
    if value < low or (above and value == low):
        raise ConfigError(f"{name} must be {'>' if above else '>='} {low:g}, got {_short(value)}")
    if value > high:
        raise ConfigError(f"{name} must be <= {high:g}, got {_short(value)}")


def _check_gpus(gpus: Any) -> None:
    """``engineer.gpus``: auto, a count, or a list of ids (read by
    ``engine.execution.resources``)."""
    if gpus == "auto" and isinstance(gpus, str):
        return
    if isinstance(gpus, int) and not isinstance(gpus, bool):
        _integer(gpus, "engineer.gpus", 0, MAX_GPUS)
        return
    if isinstance(gpus, list | tuple):
        if len(gpus) > MAX_GPUS:
            raise ConfigError(f"engineer.gpus: at most {MAX_GPUS} ids, got {len(gpus)}")
        if all(isinstance(g, str | int) and not isinstance(g, bool) for g in gpus):
            return
    raise ConfigError(f"engineer.gpus must be auto, a count or a list of ids, got {_short(gpus)}")


def from_dict(
    raw: dict[str, Any], base: RunConfig | None = None, origin: str = "config"
) -> RunConfig:
    """Overlay a mapping (a YAML file, a stored config) on ``base`` with type checks."""
    config = base if base is not None else RunConfig()
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: expected a mapping at the top level")
    known = {f.name: f for f in dataclasses.fields(RunConfig)}
    updates: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"{origin}: unknown setting {_short(key)}")
        current = getattr(config, key)
        if dataclasses.is_dataclass(current):
            updates[key] = _overlay(current, value, f"{origin}: {key}")
        elif isinstance(current, dict) or key in ("api", "judge", "cognition", "novelty"):
            if not isinstance(value, dict):
                raise ConfigError(f"{origin}: {key} must be a mapping")
            updates[key] = {**(current or {}), **value}
        else:
            updates[key] = _coerce(value, current, f"{origin}: {key}", key)
    return dataclasses.replace(config, **updates)


def load_file(path: Path, base: RunConfig | None = None) -> RunConfig:
    """A YAML config file over ``base`` (size, encoding, aliases and nesting checked)."""
    raw = load_yaml(path, ConfigError, "config file")
    return from_dict({} if raw is None else raw, base, origin=str(path))


def _overlay(obj: Any, value: Any, origin: str) -> Any:
    if not isinstance(value, dict):
        raise ConfigError(f"{origin} must be a mapping")
    fields = {f.name for f in dataclasses.fields(obj)}
    updates = {}
    for key, item in value.items():
        if key not in fields:
            raise ConfigError(f"{origin}: unknown setting {_short(key)}")
        updates[key] = _coerce(item, getattr(obj, key), f"{origin}.{key}", key)
    try:
        return dataclasses.replace(obj, **updates)
    except ValueError as exc:  # the section's own checks (e.g. SamplerSettings)
        raise ConfigError(f"{origin}: {exc}") from None


_OPTIONAL_INT = {"seed", "cpu_seconds", "memory_mb", "parent_top_k", "context_top_k", "cpus"}
_FREE_FORM = {"gpus"}  # auto | a count | a list of ids: checked by engine.execution.resources
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
    raise ConfigError(f"{origin} must be {expected.__name__}, got {_short(value)}")
