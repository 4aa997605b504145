"""Database samplers: they choose the parent and the context nodes of each round.

``make_sampler`` builds the one a run's settings name; every sampler loads the population
from the run store itself, so building one on an existing run resumes it.

The samplers (numpy, the islands' diversity) are imported when first used, not with the
package: ``asi-evolve --version``, ``status`` and the parser only need their names
(``SAMPLER_NAMES``), and every command pays for what this package imports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.samplers.base import Sampler
    from engine.samplers.settings import SamplerSettings
    from engine.store.run_store import RunStore

# name -> (module, class): the samplers a run's ``sampler.name`` may choose.
_CLASSES = {
    "rank": ("engine.samplers.rank", "RankSampler"),
    "ucb1": ("engine.samplers.ucb1", "UCB1Sampler"),
    "greedy": ("engine.samplers.greedy", "GreedySampler"),
    "random": ("engine.samplers.random_sampler", "RandomSampler"),
    "island": ("engine.samplers.islands", "IslandSampler"),
}
SAMPLER_NAMES: tuple[str, ...] = tuple(_CLASSES)
_OTHERS = {
    "Sampler": "engine.samplers.base",
    "Population": "engine.samplers.population",
    "SamplerSettings": "engine.samplers.settings",
}


def sampler_class(name: str) -> type[Sampler]:
    """The class of the sampler called ``name``; ValueError names the known ones."""
    try:
        module, cls = _CLASSES[name]
    except KeyError:
        known = ", ".join(SAMPLER_NAMES)
        raise ValueError(f"unknown sampler {name!r} (known: {known})") from None
    return getattr(importlib.import_module(module), cls)


def make_sampler(
    settings: SamplerSettings, store: RunStore, maximize: bool = True, seed: int | None = None
) -> Sampler:
    """The sampler named by ``settings.name``, loaded with the store's population."""
    return sampler_class(settings.name)(settings, store, maximize=maximize, seed=seed)


def __getattr__(name: str) -> Any:
    """``SAMPLERS`` (name -> class) and the classes, imported on first use."""
    if name == "SAMPLERS":
        return {n: sampler_class(n) for n in SAMPLER_NAMES}
    for module, cls in _CLASSES.values():
        if cls == name:
            return getattr(importlib.import_module(module), cls)
    if name in _OTHERS:
        return getattr(importlib.import_module(_OTHERS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "SAMPLERS",
    "SAMPLER_NAMES",
    "GreedySampler",
    "IslandSampler",
    "Population",
    "RandomSampler",
    "RankSampler",
    "Sampler",
    "SamplerSettings",
    "UCB1Sampler",
    "make_sampler",
    "sampler_class",
]
