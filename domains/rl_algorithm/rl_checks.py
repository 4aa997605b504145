"""The check stage: cheap contract tests that a candidate must pass before it may train.

``rl_static.static_problems`` reads the source without running it (imports, banned
builtins). The functions here call the two functions on synthetic tensors and checks the
properties every policy-gradient method has, so that a broken candidate costs seconds
instead of a training run:

- advantages: right shape, finite (also for a group whose rewards are all equal), and
  within a group the best completion gets a larger advantage than the worst - otherwise
  the rewards do not steer the update;
- loss: a finite scalar with a gradient, zero gradient on padding, finite for large ratios,
  and at ratio 1 its gradient pushes up completions with positive advantage and down those
  with negative advantage - a loss whose gradient does not change when the advantages flip
  sign ignores the rewards.

Each check returns a list of one-line problems; empty means passed.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import torch
from rl_static import FUNCTIONS


class ContractError(Exception):
    """The program cannot be used as a candidate; the message is one line."""


def load_candidate(program: str):
    """(compute_advantages, policy_loss) from the program file, or ContractError."""
    path = Path(program).resolve()
    spec = importlib.util.spec_from_file_location("rl_candidate", path)
    if spec is None or spec.loader is None:
        raise ContractError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    functions = []
    for name in FUNCTIONS:
        function = getattr(module, name, None)
        if not callable(function):
            raise ContractError(f"program defines no function {name}()")
        functions.append(function)
    return functions[0], functions[1]


def advantage_problems(compute_advantages) -> list[str]:
    """Shape, finiteness and reward-monotonicity of compute_advantages."""
    cases = [
        (4, [1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0]),
        (8, [0, 1, 0, 0, 1, 0, 0, 0, 0.2, 0.9, 0.5, 0.5, 0.1, 0.7, 0.3, 0.0]),
        (2, [1, 0, 0, 1, 1, 1]),
    ]
    for group_size, values in cases:
        rewards = torch.tensor(values, dtype=torch.float32)
        label = f"rewards {values} with group_size {group_size}"
        try:
            advantages = compute_advantages(rewards.clone(), group_size)
        except Exception as exc:  # noqa: BLE001
            return [f"compute_advantages raised {type(exc).__name__}: {exc} (on {label})"]
        if not isinstance(advantages, torch.Tensor):
            return [f"compute_advantages returned {type(advantages).__name__}, not a tensor"]
        if tuple(advantages.shape) not in ((rewards.numel(),), (rewards.numel(), 1)):
            return [
                f"compute_advantages returned shape {tuple(advantages.shape)} for "
                f"{rewards.numel()} rewards, expected ({rewards.numel()},)"
            ]
        flat = advantages.detach().reshape(-1).float()
        if not torch.isfinite(flat).all():
            return [f"compute_advantages returned NaN or infinity on {label}"]
        grouped_r = rewards.view(-1, group_size)
        grouped_a = flat.view(-1, group_size)
        for index, (r, a) in enumerate(zip(grouped_r, grouped_a, strict=True)):
            if r.max() > r.min() and not a[r.argmax()] > a[r.argmin()]:
                return [
                    "advantages ignore the rewards: in group "
                    f"{r.tolist()} the best completion got {a[r.argmax()].item():.4g} "
                    f"and the worst {a[r.argmin()].item():.4g} (group {index} of {label})"
                ]
    return []


def _loss_and_grad(policy_loss, logp0, old, ref, advantages, mask):
    logp = logp0.clone().requires_grad_(True)
    loss = policy_loss(logp, old, ref, advantages, mask)
    if not isinstance(loss, torch.Tensor):
        raise TypeError(f"policy_loss returned {type(loss).__name__}, not a tensor")
    if loss.numel() != 1:
        raise ValueError(f"policy_loss returned shape {tuple(loss.shape)}, expected a scalar")
    if not loss.requires_grad:
        raise ValueError("policy_loss returned a tensor without gradient (detached from logp)")
    value = loss.detach().item()
    if not math.isfinite(value):
        raise ValueError(f"policy_loss returned a non-finite loss ({value})")
    (grad,) = torch.autograd.grad(loss.reshape(()), logp, allow_unused=True)
    if grad is None:
        raise ValueError("policy_loss does not depend on logp (no gradient)")
    if not torch.isfinite(grad).all():
        raise ValueError("policy_loss has a NaN or infinite gradient")
    return value, grad


def loss_problems(policy_loss) -> list[str]:
    """Scalar, finite, masked, and reward-directed gradients of policy_loss."""
    generator = torch.Generator().manual_seed(0)
    batch, width = 8, 6
    logp = -torch.rand(batch, width, generator=generator) * 3.0 - 0.05
    mask = torch.ones(batch, width)
    lengths = [6, 4, 3, 5, 2, 6, 1, 4]
    for row, length in enumerate(lengths):
        mask[row, length:] = 0.0
    advantages = torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0, -1.0, 1.0, -1.0])
    ref = logp.clone()
    try:
        _, grad = _loss_and_grad(policy_loss, logp, logp.clone(), ref, advantages, mask)
        _, flipped = _loss_and_grad(policy_loss, logp, logp.clone(), ref, -advantages, mask)
        far_old = logp - 5.0 * torch.rand(batch, width, generator=generator)
        far_ref = logp + 4.0 * torch.rand(batch, width, generator=generator)
        _loss_and_grad(policy_loss, logp, far_old, far_ref, advantages * 3.0, mask)
        _loss_and_grad(policy_loss, logp, logp.clone(), ref, torch.zeros(batch), mask)
    except Exception as exc:  # noqa: BLE001
        return [f"policy_loss failed: {type(exc).__name__}: {exc}"]
    problems = []
    padding = grad[mask == 0].abs().max().item() if (mask == 0).any() else 0.0
    if padding > 1e-7:
        problems.append(f"policy_loss has gradient {padding:.3g} on padding tokens (mask 0)")
    scale = grad.abs().max().item() + flipped.abs().max().item()
    if scale == 0.0 or (grad - flipped).abs().max().item() <= 1e-6 * max(scale, 1e-12):
        problems.append(
            "policy_loss ignores the advantages: its gradient is the same when they flip sign"
        )
        return problems
    positive = grad[advantages > 0].mul(mask[advantages > 0]).sum().item()
    negative = grad[advantages < 0].mul(mask[advantages < 0]).sum().item()
    if not (positive < 0 < negative):
        problems.append(
            "policy_loss pushes the wrong way: at ratio 1 it should lower the loss by raising "
            "log-probs of positive-advantage completions and lowering negative ones "
            f"(gradient sums {positive:.3g} and {negative:.3g})"
        )
    return problems
