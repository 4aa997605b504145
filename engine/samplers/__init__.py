"""Database samplers: they choose the parent and the context nodes of each round.

``make_sampler`` builds the one a run's settings name; every sampler loads the population
from the run store itself, so building one on an existing run resumes it.
"""

from __future__ import annotations

from engine.samplers.base import Sampler
from engine.samplers.greedy import GreedySampler
from engine.samplers.islands import IslandSampler
from engine.samplers.population import Population
from engine.samplers.random_sampler import RandomSampler
from engine.samplers.rank import RankSampler
from engine.samplers.settings import SamplerSettings
from engine.samplers.ucb1 import UCB1Sampler
from engine.store.run_store import RunStore

SAMPLERS: dict[str, type[Sampler]] = {
    "rank": RankSampler,
    "ucb1": UCB1Sampler,
    "greedy": GreedySampler,
    "random": RandomSampler,
    "island": IslandSampler,
}


def make_sampler(
    settings: SamplerSettings, store: RunStore, maximize: bool = True, seed: int | None = None
) -> Sampler:
    """The sampler named by ``settings.name``, loaded with the store's population."""
    try:
        cls = SAMPLERS[settings.name]
    except KeyError:
        known = ", ".join(SAMPLERS)
        raise ValueError(f"unknown sampler {settings.name!r} (known: {known})") from None
    return cls(settings, store, maximize=maximize, seed=seed)


__all__ = [
    "SAMPLERS",
    "GreedySampler",
    "IslandSampler",
    "Population",
    "RandomSampler",
    "RankSampler",
    "Sampler",
    "SamplerSettings",
    "UCB1Sampler",
    "make_sampler",
]
