"""GRPO: group-relative advantages and a clipped, KL-regularised policy loss.

The harness (``rl_trainer.py``) plugs these two functions into trl's GRPOTrainer:

- ``compute_advantages(rewards, group_size)``: ``rewards`` is a float tensor [N*G] of the
  completions' rewards in group order (the G completions of prompt 0, then of prompt 1, ...);
  returns one advantage per completion, shape [N*G].
- ``policy_loss(logp, old_logp, ref_logp, advantages, mask)``: per-token log-probabilities
  [B, T] of the current policy (with gradient), of the policy that sampled the completions and
  of the frozen reference model (both without gradient); ``advantages`` [B], one per
  completion; ``mask`` [B, T] is 1.0 on completion tokens and 0.0 on padding. Returns the
  scalar loss to minimise.

Plain GRPO (DeepSeekMath): the baseline is the group mean, advantages are divided by the group
standard deviation, the importance ratio is clipped to [1 - eps_low, 1 + eps_high], the KL to
the reference uses the k3 estimator, each sequence's loss is averaged over its tokens and
sequences are averaged. The constants below interpolate towards known variants (RLOO
baseline, Dr. GRPO without std or length normalisation, DAPO's clip-higher, asymmetric
treatment of positive and negative advantages).
"""

import torch

# EVOLVE-BLOCK-START
STD_WEIGHT = 1.0  # 1: divide by the group std (GRPO); 0: no scaling (Dr. GRPO)
BASELINE_MIX = 0.0  # 0: group mean baseline; 1: leave-one-out mean (RLOO)
ADV_EPS = 0.0001  # keeps the std division finite for near-constant groups
POS_WEIGHT = 1.0  # multiplies positive advantages
NEG_WEIGHT = 1.0  # multiplies negative advantages
CLIP_LOW = 0.2  # ratio may fall to 1 - CLIP_LOW
CLIP_HIGH = 0.2  # ratio may rise to 1 + CLIP_HIGH (DAPO uses a larger value)
KL_BETA = 0.04  # weight of the KL penalty to the reference policy
LENGTH_POWER = 1.0  # sequence loss = token sum / length**LENGTH_POWER (1: mean, 0: sum)


def compute_advantages(rewards, group_size):
    """Group-relative advantages: (reward - baseline) / scale, per group of completions."""
    grouped = rewards.view(-1, group_size)
    total = grouped.sum(dim=1, keepdim=True)
    mean = total / group_size
    leave_one_out = (total - grouped) / max(group_size - 1, 1)
    baseline = (1.0 - BASELINE_MIX) * mean + BASELINE_MIX * leave_one_out
    std = grouped.std(dim=1, keepdim=True) if group_size > 1 else torch.zeros_like(mean)
    scale = STD_WEIGHT * std + (1.0 - STD_WEIGHT)
    advantages = (grouped - baseline) / (scale + ADV_EPS)
    advantages = torch.where(advantages > 0, POS_WEIGHT * advantages, NEG_WEIGHT * advantages)
    return advantages.reshape(-1)


def policy_loss(logp, old_logp, ref_logp, advantages, mask):
    """Clipped surrogate plus KL penalty, averaged per sequence then over the batch."""
    adv = advantages.unsqueeze(1)
    ratio = torch.exp(logp - old_logp)
    clipped = torch.clamp(ratio, 1.0 - CLIP_LOW, 1.0 + CLIP_HIGH)
    per_token = -torch.min(ratio * adv, clipped * adv)
    if KL_BETA > 0:
        log_ref_ratio = ref_logp - logp
        per_token = per_token + KL_BETA * (torch.exp(log_ref_ratio) - log_ref_ratio - 1.0)
    lengths = mask.sum(dim=1).clamp(min=1.0)
    per_sequence = (per_token * mask).sum(dim=1) / lengths**LENGTH_POWER
    return per_sequence.mean()
# EVOLVE-BLOCK-END
