"""The ``sampler:`` section of a run configuration: how the next round's context is chosen.

Apart from the samplers themselves, so that the configuration, the candidate pool and every
sampler read one definition without importing one another.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SamplerSettings:
    """How the next round's context is chosen (the ``sampler:`` section of a run config)."""

    name: str = "rank"  # rank | ucb1 | greedy | random | island
    n_context: int = 3  # context nodes per round; the parent is the first
    ucb_c: float = 1.414  # ucb1: the paper's exploration constant
    # rank: parent weight exp(-rank / rank_tau) / (1 + visits) ** visit_power; the other
    # context nodes by (1 - context_explore) * normalised fitness + context_explore / sqrt(n).
    rank_tau: float = 4.0
    visit_power: float = 0.5
    context_explore: float = 0.3
    # Candidate pool: the parent comes from the top K1 nodes by fitness, the other context
    # nodes are drawn uniformly from the top K2 (default K1). Used by ucb1, greedy, random.
    parent_top_k: int | None = None
    context_top_k: int | None = None
    # MAP-Elites islands.
    num_islands: int = 5
    migration_interval: int = 10  # migrate every this many finished nodes (step >= 1)
    migration_rate: float = 0.1  # fraction of each island's elites copied to the next island
    exploration_ratio: float = 0.2
    exploitation_ratio: float = 0.6  # the rest is rank-weighted choice among the cell elites
    feature_dimensions: list[str] = field(default_factory=lambda: ["complexity", "diversity"])
    feature_bins: int = 10
    feature_ranges: dict[str, tuple[float, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.n_context < 1:
            raise ValueError("sampler.n_context must be at least 1")
        if self.rank_tau <= 0 or self.visit_power < 0 or not 0 <= self.context_explore <= 1:
            raise ValueError(
                "sampler.rank_tau must be > 0, visit_power >= 0, context_explore in [0, 1]"
            )
        if self.parent_top_k is not None and self.parent_top_k < 1:
            raise ValueError("sampler.parent_top_k must be at least 1")
        if self.context_top_k is not None and self.context_top_k < 1:
            raise ValueError("sampler.context_top_k must be at least 1")
        if self.num_islands < 1 or self.feature_bins < 1:
            raise ValueError("sampler.num_islands and sampler.feature_bins must be at least 1")
        ratios = (self.exploration_ratio, self.exploitation_ratio)
        if min(ratios) < 0 or sum(ratios) > 1:
            raise ValueError("sampler exploration/exploitation ratios must be >= 0, sum <= 1")
