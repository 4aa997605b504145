"""trl's GRPOTrainer with a candidate's advantage and loss functions plugged in.

trl 1.x computes GRPO advantages inline in ``GRPOTrainer._generate_and_score_completions``
and the policy loss in ``GRPOTrainer._compute_loss(model, inputs)``. ``CandidateGRPOTrainer``
keeps trl's rollout machinery (prompt batching, sampling, EOS masking, old/reference
log-probabilities, multi-iteration reuse of a generation batch, optimiser, logging) and
replaces exactly those two computations:

- ``_calculate_rewards`` is wrapped to remember the raw rewards of the generation batch;
- ``_generate_and_score_completions`` calls trl's, then overwrites ``"advantages"`` with
  ``compute_advantages(rewards, num_generations)``;
- ``_compute_loss`` gets the per-token log-probabilities from trl's
  ``_get_per_token_logps_and_entropies`` and returns ``policy_loss(...)``.

The reference log-probabilities are always computed (trl does so only when its ``beta`` is
non-zero, so the harness sets trl's ``beta`` to a sentinel that nothing else reads); the
candidate decides how, or whether, to use them. Anything wrong with what the candidate
returns raises ``CandidateError`` with a one-line reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from rl_checks import ContractError
from trl import GRPOTrainer

REF_SENTINEL_BETA = 1e-3  # only makes trl load the reference model; the candidate owns the KL


class CandidateError(ContractError):
    """The candidate's functions broke the contract during training; the message says how."""


class CandidateGRPOTrainer(GRPOTrainer):
    """GRPOTrainer whose advantages and loss come from a candidate program."""

    def __init__(
        self,
        *args,
        compute_advantages: Callable,
        policy_loss: Callable,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.candidate_advantages = compute_advantages
        self.candidate_loss = policy_loss
        self._batch_rewards: torch.Tensor | None = None

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(
            inputs, prompts, completions, completion_ids_list
        )
        self._batch_rewards = rewards_per_func
        return rewards_per_func

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        per_func = self._batch_rewards
        weights = self.reward_weights.to(per_func.device).unsqueeze(0)
        rewards = torch.nan_to_num((per_func * weights).nansum(dim=1), nan=0.0)
        try:
            advantages = self.candidate_advantages(rewards.clone(), self.num_generations)
        except Exception as exc:  # noqa: BLE001 - any failure of the candidate is its result
            raise CandidateError(f"compute_advantages raised {type(exc).__name__}: {exc}") from exc
        advantages = check_advantages(advantages, rewards.shape[0])
        local = len(output["prompt_ids"])
        start = self.accelerator.process_index * local
        output["advantages"] = advantages[start : start + local].to(rewards.device)
        return output

    def _compute_loss(self, model, inputs):
        prompt_ids, prompt_mask = inputs["prompt_ids"], inputs["prompt_mask"]
        completion_ids, completion_mask = inputs["completion_ids"], inputs["completion_mask"]
        input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
        attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)
        logps, _, _ = self._get_per_token_logps_and_entropies(
            model, input_ids, attention_mask, completion_ids.size(1)
        )
        old = inputs.get("old_per_token_logps")
        old = logps.detach() if old is None else old
        ref = inputs.get("ref_per_token_logps")
        ref = logps.detach() if ref is None else ref
        mask = completion_mask.to(logps.dtype)
        advantages = inputs["advantages"]
        try:
            loss = self.candidate_loss(logps, old, ref, advantages, mask)
        except Exception as exc:  # noqa: BLE001
            raise CandidateError(f"policy_loss raised {type(exc).__name__}: {exc}") from exc
        check_loss(loss)
        loss = loss.reshape(())
        self._log_diagnostics(logps.detach(), old, ref, advantages, mask)
        return loss / self.current_gradient_accumulation_steps

    def _log_diagnostics(self, logps, old, ref, advantages, mask) -> None:
        """KL to the reference (k3, token mean) and how far the ratio moved, for the logs."""
        total = mask.sum().clamp(min=1.0)
        log_ref = ref - logps
        kl = ((torch.exp(log_ref) - log_ref - 1.0) * mask).sum() / total
        moved = (((logps - old).abs() > 0.2).to(mask.dtype) * mask).sum() / total
        self._metrics["train"]["kl"].append(kl.item())
        self._metrics["train"]["ratio_outside_0.2"].append(moved.item())
        self._metrics["train"]["advantage_abs_mean"].append(advantages.abs().mean().item())


def check_advantages(advantages, expected: int) -> torch.Tensor:
    """The candidate's advantages as a detached float tensor [expected], or CandidateError."""
    if not isinstance(advantages, torch.Tensor):
        raise CandidateError(
            f"compute_advantages returned {type(advantages).__name__}, expected a torch.Tensor"
        )
    if tuple(advantages.shape) not in ((expected,), (expected, 1)):
        raise CandidateError(
            f"compute_advantages returned shape {tuple(advantages.shape)}, expected ({expected},)"
        )
    advantages = advantages.detach().reshape(-1).float()
    if not torch.isfinite(advantages).all():
        raise CandidateError("compute_advantages returned NaN or infinite advantages")
    return advantages


def check_loss(loss) -> None:
    """Raise CandidateError unless ``loss`` is a finite scalar tensor with a gradient."""
    if not isinstance(loss, torch.Tensor):
        raise CandidateError(f"policy_loss returned {type(loss).__name__}, expected a tensor")
    if loss.numel() != 1:
        raise CandidateError(f"policy_loss returned shape {tuple(loss.shape)}, expected a scalar")
    if not loss.requires_grad:
        raise CandidateError("policy_loss returned a tensor without gradient (detached from logp)")
    value = loss.detach().item()
    if not math.isfinite(value):
        raise CandidateError(f"policy_loss returned a non-finite loss ({value})")
