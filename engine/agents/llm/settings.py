"""The ``api:``, ``researcher:`` and ``judge:`` configuration sections, checked early.

Everything here is resolved before a run directory is created, so a typo or a missing
endpoint is a one-line error that writes nothing. The API key is read here and kept
only in memory: ``redact_config`` strips it from the copy of the configuration that is
stored in the run database.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.agents.base import AgentSetupError

ROLES = ("researcher", "analyzer", "judge", "debugger", "static_check")
DEFAULT_KEY_ENV = "OPENAI_API_KEY"
# How the output token limit is named in a request. Reasoning models (o1, o3, gpt-5, ...)
# refuse ``max_tokens`` and want ``max_completion_tokens``; older servers know only the
# former. ``auto`` sends ``max_tokens`` and switches once a model refuses it.
TOKEN_PARAMETERS = ("auto", "max_tokens", "max_completion_tokens")


DEFAULT_PROMPT_ROOM = 16_000  # prompt tokens the default budget leaves beside a large max_tokens


@dataclass(frozen=True)
class LLMSettings:
    """Where and how one role calls its model. ``model=None``: the endpoint's first model."""

    base_url: str
    model: str | None = None
    api_key: str | None = field(default=None, repr=False)
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    # The model's context, in estimated tokens: the researcher's prompt is trimmed to it
    # less max_tokens (engine/agents/llm/budget.py); None: no limit.
    # Not configured: 32000, or max_tokens + DEFAULT_PROMPT_ROOM when that is larger.
    context_tokens: int | None = 32_000
    token_parameter: str = "auto"  # auto | max_tokens | max_completion_tokens
    reasoning_effort: str | None = None  # sent only when set (e.g. low, medium, high)
    seed: int | None = None
    timeout: float = 300.0  # seconds without an answer (streamed: without a new token)
    stream: bool = False  # stream answers: a long generation is then not cut by the timeout
    retries: int = 4
    backoff_base: float = 1.0  # seconds; doubled per attempt, with jitter
    backoff_max: float = 60.0
    retry_after_max: float = 300.0  # a server's Retry-After is honoured up to this
    extra_body: dict[str, Any] = field(default_factory=dict)
    prices: dict[str, dict[str, float]] = field(default_factory=dict)

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        """USD from per-million-token prices; 0 for a model without a price."""
        price = self.prices.get(model) or self.prices.get(self.model or "")
        if price is None:  # served names often carry a date suffix: gpt-4o-2024-08-06
            keys = [k for k in self.prices if model.startswith(k)]
            price = self.prices[max(keys, key=len)] if keys else None
        if not price:
            return 0.0
        return (
            prompt_tokens * float(price.get("prompt", 0.0))
            + completion_tokens * float(price.get("completion", 0.0))
        ) / 1e6


@dataclass(frozen=True)
class ResearcherSettings:
    mode: str = "diff"  # diff: SEARCH/REPLACE edits of the parent; full: a whole program
    max_repair_turns: int = 2
    max_code_chars: int = 200_000
    context_code_chars: int = 8_000  # code of non-parent context nodes is cut (marked) here
    logs_chars: int = 3_000


@dataclass(frozen=True)
class JudgeSettings:
    enabled: bool = False
    ratio: float = 0.0
    template: str = "judge"
    scale: list[float] = field(default_factory=lambda: [0.0, 1.0])


_ROLE_KEYS = {f.name for f in dataclasses.fields(LLMSettings)} - {"prices"}
_API_KEYS = _ROLE_KEYS | {"api_key_env", "prices", "roles"}


def resolve_settings(
    api: Mapping[str, Any], role: str | None = None, env: Mapping[str, str] | None = None
) -> LLMSettings:
    """Settings for ``role``: its ``api.roles`` entry over ``api`` over the environment."""
    env = os.environ if env is None else env
    _check_keys(api, _API_KEYS | {"api_key_env"}, "api")
    roles = api.get("roles") or {}
    if not isinstance(roles, dict):
        raise AgentSetupError("api.roles must be a mapping of role -> settings")
    for name, section in roles.items():
        if name not in ROLES:
            raise AgentSetupError(f"api.roles: unknown role {name!r} (use {', '.join(ROLES)})")
        if not isinstance(section, dict):
            raise AgentSetupError(f"api.roles.{name} must be a mapping")
        _check_keys(section, _ROLE_KEYS | {"api_key_env"}, f"api.roles.{name}")
    merged = {k: v for k, v in api.items() if k != "roles"}
    if role is not None:
        merged.update(roles.get(role) or {})

    base_url = merged.get("base_url") or env.get("OPENAI_BASE_URL")
    if not base_url:
        raise AgentSetupError(
            "no LLM endpoint configured: set api.base_url in the config or OPENAI_BASE_URL "
            "(or use --llm offline)"
        )
    key_env = merged.pop("api_key_env", None)
    api_key = merged.get("api_key")
    if not api_key:
        api_key = env.get(key_env or DEFAULT_KEY_ENV)
        if key_env and not api_key:
            raise AgentSetupError(f"api.api_key_env names {key_env}, which is not set")
    prices = merged.get("prices") or {}
    _check_prices(prices)
    values: dict[str, Any] = {
        "base_url": str(base_url),
        "model": merged.get("model") or env.get("ASI_EVOLVE_MODEL") or None,
        "api_key": api_key or None,
        "prices": prices,
    }
    defaults = LLMSettings(base_url="")
    for key in _ROLE_KEYS - set(values) - {"api_key"}:
        if key in merged:
            values[key] = _typed(merged[key], getattr(defaults, key), key)
    if "context_tokens" not in merged and isinstance(values.get("max_tokens"), int):
        # Not configured: the default budget, grown for a config written for a model with
        # long answers (a reasoning model's max_tokens of 32000 must not stop its run).
        values["context_tokens"] = max(
            defaults.context_tokens or 0, values["max_tokens"] + DEFAULT_PROMPT_ROOM
        )
    settings = LLMSettings(**values)
    if settings.token_parameter not in TOKEN_PARAMETERS:
        raise AgentSetupError(
            f"api.token_parameter must be one of {', '.join(TOKEN_PARAMETERS)}, "
            f"got {settings.token_parameter!r}"
        )
    if settings.reasoning_effort is not None and not settings.reasoning_effort.strip():
        raise AgentSetupError("api.reasoning_effort must be a word such as low or high, or unset")
    if settings.context_tokens is not None and (
        settings.context_tokens < 1
        or (settings.max_tokens is not None and settings.max_tokens >= settings.context_tokens)
    ):
        raise AgentSetupError(
            f"api.context_tokens ({settings.context_tokens}) must be larger than api.max_tokens "
            f"({settings.max_tokens}), or null for no limit on the prompt"
        )
    _check_ranges(settings)
    return settings


# (setting, lowest, highest): a NaN, an infinity or a negative count would otherwise reach
# the HTTP client or the retry loop and fail every call (or never time out) hours later.
_RANGES = (
    ("retries", 0, 100),
    ("timeout", 1e-3, 86_400.0),
    ("backoff_base", 0.0, 3_600.0),
    ("backoff_max", 0.0, 86_400.0),
    ("retry_after_max", 0.0, 86_400.0),
    ("max_tokens", 1, 10_000_000),
    ("context_tokens", 1, 100_000_000),
    ("temperature", 0.0, 10.0),
    ("top_p", 0.0, 1.0),
)


def _check_ranges(settings: LLMSettings) -> None:
    """Every numeric setting finite and within its range, or one line naming it."""
    for name, low, high in _RANGES:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise AgentSetupError(f"api.{name} must be a number, got {value!r}")
        if not (math.isfinite(value) and low <= value <= high):
            raise AgentSetupError(f"api.{name} must be between {low:g} and {high:g}, got {value!r}")


def check_api_keys(api: Mapping[str, Any]) -> None:
    """The ``api:`` section's keys and roles, checked without an endpoint (offline runs)."""
    _check_keys(api, _API_KEYS, "api")
    for role, section in (api.get("roles") or {}).items():
        if role not in ROLES:
            raise AgentSetupError(f"api.roles: unknown role {role!r} (use {', '.join(ROLES)})")
        _check_keys(section or {}, _ROLE_KEYS | {"api_key_env"}, f"api.roles.{role}")


def researcher_settings(raw: Mapping[str, Any]) -> ResearcherSettings:
    settings = _section(ResearcherSettings, raw, "researcher")
    if settings.mode not in ("diff", "full"):
        raise AgentSetupError(f"researcher.mode must be 'diff' or 'full', got {settings.mode!r}")
    if settings.max_repair_turns < 0 or settings.max_code_chars < 1:
        raise AgentSetupError("researcher: max_repair_turns >= 0 and max_code_chars >= 1")
    return settings


def judge_settings(raw: Mapping[str, Any]) -> JudgeSettings:
    """A judge section that says anything but ``enabled: false`` switches the judge on."""
    data = dict(raw)
    data.setdefault("enabled", bool(raw))
    settings = _section(JudgeSettings, data, "judge")
    if not 0.0 <= settings.ratio <= 1.0:
        raise AgentSetupError(f"judge.ratio must be in [0, 1], got {settings.ratio}")
    scale = settings.scale
    if (
        len(scale) != 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in scale)
        or scale[0] == scale[1]
    ):
        raise AgentSetupError(f"judge.scale must be two different numbers [lo, hi], got {scale}")
    return dataclasses.replace(settings, scale=[float(scale[0]), float(scale[1])])


def redact_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a run configuration without API keys (for the run database and events)."""
    out = copy.deepcopy(dict(config))
    api = out.get("api")
    if isinstance(api, dict):
        api.pop("api_key", None)
        for section in (api.get("roles") or {}).values():
            if isinstance(section, dict):
                section.pop("api_key", None)
    return out


def _section(cls: type, raw: Mapping[str, Any], origin: str) -> Any:
    if not isinstance(raw, Mapping):
        raise AgentSetupError(f"{origin} must be a mapping")
    defaults = cls()
    names = {f.name for f in dataclasses.fields(cls)}
    _check_keys(raw, names, origin)
    values = {k: _typed(v, getattr(defaults, k), f"{origin}.{k}") for k, v in raw.items()}
    return dataclasses.replace(defaults, **values)


def _check_keys(section: Mapping[str, Any], allowed: set[str], origin: str) -> None:
    for key in section:
        if key not in allowed:
            raise AgentSetupError(f"{origin}: unknown setting {key!r}")


def _check_prices(prices: Any) -> None:
    if not isinstance(prices, dict):
        raise AgentSetupError("api.prices must map model -> {prompt: usd, completion: usd}")
    for model, price in prices.items():
        if not isinstance(price, dict) or not set(price) <= {"prompt", "completion"}:
            raise AgentSetupError(
                f"api.prices.{model} must be {{prompt: usd_per_1M, completion: usd_per_1M}}"
            )
        for value in price.values():
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise AgentSetupError(f"api.prices.{model}: prices must be numbers >= 0")


_OPTIONAL_FLOAT = {"temperature", "top_p"}
_OPTIONAL_INT = {"max_tokens", "seed", "context_tokens"}
_OPTIONAL_STR = {"reasoning_effort"}


def _typed(value: Any, default: Any, origin: str) -> Any:
    """Check ``value`` against the type of the default it replaces."""
    key = origin.rsplit(".", 1)[-1]
    if value is None and key in _OPTIONAL_FLOAT | _OPTIONAL_INT | _OPTIONAL_STR:
        return None
    if key in _OPTIONAL_STR:
        if isinstance(value, str):
            return value
        raise AgentSetupError(f"{origin} must be a string, got {value!r}")
    if key in _OPTIONAL_FLOAT or isinstance(default, float):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise AgentSetupError(f"{origin} must be a number, got {value!r}")
    if key in _OPTIONAL_INT or (isinstance(default, int) and not isinstance(default, bool)):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise AgentSetupError(f"{origin} must be an integer, got {value!r}")
    if isinstance(default, bool | str | list | dict) and not isinstance(value, type(default)):
        kind = type(default).__name__
        raise AgentSetupError(f"{origin} must be a {kind}, got {value!r}")
    return value
