"""The scripted researcher's designs for ``rl_algorithm`` (the shorter replay).

Three loss designs from the GRPO literature (DAPO's token-level loss, clip-higher without
the KL term, an RLOO baseline without std scaling), one of them first sent with a SEARCH
text retyped instead of copied, and Dr. GRPO's constant length normaliser, whose first
version indexes a dimension the mask does not have and crashes in the check stage until
the debug agent fixes it.
"""

from __future__ import annotations

from replay_model import Design, DomainScript

from domains.tiny_settings import RL_ALGORITHM

TOKEN_LEVEL = (
    (
        "    lengths = mask.sum(dim=1).clamp(min=1.0)\n"
        "    per_sequence = (per_token * mask).sum(dim=1) / lengths**LENGTH_POWER\n"
        "    return per_sequence.mean()\n",
        "    # DAPO: every token of the batch weighs the same, long answers are not discounted\n"
        "    return (per_token * mask).sum() / mask.sum().clamp(min=1.0)\n",
    ),
)
CLIP_HIGHER = (
    ("CLIP_HIGH = 0.2 ", "CLIP_HIGH = 0.28 "),
    ("KL_BETA = 0.04 ", "KL_BETA = 0.0 "),
)
RLOO = (
    ("STD_WEIGHT = 1.0 ", "STD_WEIGHT = 0.0 "),
    ("BASELINE_MIX = 0.0 ", "BASELINE_MIX = 1.0 "),
)
CONSTANT_NORM = (
    (
        "    lengths = mask.sum(dim=1).clamp(min=1.0)\n"
        "    per_sequence = (per_token * mask).sum(dim=1) / lengths**LENGTH_POWER\n",
        "    # Dr. GRPO: one constant normaliser (the generation budget), no length bias\n"
        "    per_sequence = (per_token * mask).sum(dim=1) / mask.size(1)\n",
    ),
)
CONSTANT_NORM_BUG = (
    "    per_sequence = (per_token * mask).sum(dim=1) / mask.size(1)\n",
    "    per_sequence = (per_token * mask).sum(dim=1) / mask.size(2)\n",
)

DESIGNS = (
    Design(
        "token-level-loss",
        "Average the surrogate over all tokens of the batch instead of per sequence (DAPO): "
        "per-sequence means give tokens of short answers more weight.",
        TOKEN_LEVEL,
        expect="explored",
    ),
    Design(
        "clip-higher-no-kl",
        "Raise the upper clip to 0.28 and drop the KL penalty, as DAPO does: the low upper "
        "clip limits exploration of unlikely correct answers.",
        CLIP_HIGHER,
        expect="explored",
        malformed="bad-search",
    ),
    Design(
        "constant-length-normaliser",
        "Normalise every sequence's loss by the same constant (Dr. GRPO) instead of its "
        "own length, which biases towards long wrong answers.",
        CONSTANT_NORM,
        expect="repaired",
        bug=CONSTANT_NORM_BUG,
    ),
    Design(
        "rloo-baseline",
        "Leave-one-out baseline without std scaling (RLOO / Dr. GRPO): unbiased advantages "
        "that do not inflate near-constant groups.",
        RLOO,
        expect="explored",
    ),
)

SCRIPT = DomainScript(designs=DESIGNS)

TINY = RL_ALGORITHM


def tiny_settings(settings: dict) -> dict:
    return dict(TINY)
