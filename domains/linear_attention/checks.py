"""Static checks of a TokenMixer: seconds of work that save minutes of training.

Each check returns "" or the exact reason the candidate is rejected.

- contract: ``TokenMixer(d_model, n_heads)`` builds, maps [B, T, D] to finite [B, T, D]
  floats at two lengths (one not a multiple of common chunk sizes), and backpropagates.
- causality: outputs before t0 must not move when inputs from t0 on are replaced by large
  noise, in train and eval mode (dropout re-seeded), at two lengths and several t0.
- batch independence: row 0 of a batch equals the same row run alone (train mode too:
  BatchNorm-style statistics over the batch leak information between sequences).
- statelessness: the same input twice gives the same output (no cache across calls).
- sub-quadratic: at T = 128, 256, 1024, 4096 (batch 1, eval, no grad) count matmul FLOPs
  (``torch.utils.flop_counter``), the elements written by all ops and the largest single
  intermediate; each must grow with exponent < ``max_growth`` between consecutive
  lengths. Element counts catch quadratic element-wise tricks that FLOP counters ignore;
  SDPA is forced onto its math backend so its FLOPs are counted on CPU. Wall time is not
  used: it is far too noisy to gate on.
- parameter budget: mixer parameters <= ``budget`` x the initial DeltaNet's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

Factory = Callable[[int, int], nn.Module]


def _run(model: nn.Module, x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)  # same dropout masks on both sides of a comparison
    return model(x)


def _differs(a: torch.Tensor, b: torch.Tensor, tol: float) -> float:
    """Largest |a - b| relative to the output scale, or 0.0 when within ``tol``."""
    scale = 1.0 + float(a.abs().max())
    gap = float((a - b).abs().max()) / scale if a.numel() else 0.0
    return gap if gap > tol else 0.0


def check_contract(factory: Factory, width: int, heads: int, lengths: Sequence[int]) -> str:
    try:
        model = factory(width, heads)
    except Exception as exc:  # noqa: BLE001 - any failure is the candidate's
        return f"TokenMixer({width}, {heads}) raised {type(exc).__name__}: {exc}"
    if not isinstance(model, nn.Module):
        return "TokenMixer(...) is not a torch.nn.Module"
    for length in lengths:
        x = torch.randn(2, length, width, requires_grad=True)
        try:
            y = model(x)
        except Exception as exc:  # noqa: BLE001
            return f"forward on [2, {length}, {width}] raised {type(exc).__name__}: {exc}"
        if not isinstance(y, torch.Tensor) or tuple(y.shape) != (2, length, width):
            got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            return f"forward on [2, {length}, {width}] returned {got}, expected the same shape"
        if not y.is_floating_point() or not bool(torch.isfinite(y).all()):
            return f"forward on [2, {length}, {width}] returned non-finite or non-float values"
        try:
            y.square().mean().backward()
        except Exception as exc:  # noqa: BLE001
            return f"backward raised {type(exc).__name__}: {exc}"
        if x.grad is None or not bool(torch.isfinite(x.grad).all()):
            return "the output does not backpropagate finite gradients to the input"
    return ""


def check_causal(model: nn.Module, width: int, lengths: Sequence[int], tol: float = 1e-5) -> str:
    gen = torch.Generator().manual_seed(1)
    for train in (True, False):
        model.train(train)
        mode = "train" if train else "eval"
        for length in lengths:
            x = torch.randn(2, length, width, generator=gen)
            with torch.no_grad():
                base = _run(model, x)
                for t0 in sorted({1, length // 3, length // 2, length - 1}):
                    x2 = x.clone()
                    x2[:, t0:] = 10 * torch.randn(2, length - t0, width, generator=gen)
                    gap = _differs(base[:, :t0], _run(model, x2)[:, :t0], tol)
                    if gap:
                        return (
                            f"not causal: changing inputs from position {t0} on changed "
                            f"earlier outputs by {gap:.3g} (relative; T={length}, {mode} mode)"
                        )
    return ""


def check_batch_independent(model: nn.Module, width: int, length: int, tol: float = 1e-5) -> str:
    x = torch.randn(4, length, width, generator=torch.Generator().manual_seed(2))
    for train in (True, False):
        model.train(train)
        with torch.no_grad():
            together = _run(model, x)[:1]
            alone = _run(model, x[:1])
        gap = _differs(together, alone, tol)
        if gap:
            mode = "train" if train else "eval"
            return (
                f"not batch-independent: a sequence's output depends on the other sequences "
                f"in its batch by {gap:.3g} (relative, {mode} mode; e.g. BatchNorm)"
            )
    return ""


def check_stateless(model: nn.Module, width: int, length: int, tol: float = 1e-5) -> str:
    model.eval()
    x = torch.randn(2, length, width, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        first, second = _run(model, x), _run(model, x)
    gap = _differs(first, second, tol)
    if gap:
        return f"not stateless: calling forward twice on the same input differs by {gap:.3g}"
    return ""


class _ElementCounter(TorchDispatchMode):
    """Totals the elements every op writes and remembers the largest single output."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, torch.Tensor):
                self.total += t.numel()
                self.largest = max(self.largest, t.numel())
        return out


def measure_cost(model: nn.Module, width: int, length: int) -> dict[str, int]:
    """FLOPs, elements written and largest intermediate of one forward at batch 1."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    model.eval()
    x = torch.randn(1, length, width, generator=torch.Generator().manual_seed(4))
    flops = FlopCounterMode(display=False)
    counter = _ElementCounter()
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), flops, counter:
        model(x)
    return {"flops": flops.get_total_flops(), "elements": counter.total, "largest": counter.largest}


def check_subquadratic(
    model: nn.Module, width: int, lengths: Sequence[int], max_growth: float = 1.5
) -> tuple[str, dict[str, float]]:
    """Reject when any cost grows like T ** max_growth or faster between two lengths."""
    costs: list[dict[str, int]] = []
    growth: dict[str, float] = {}
    for i, length in enumerate(lengths):
        costs.append(measure_cost(model, width, length))
        if i == 0:
            continue
        ratio = math.log(length / lengths[i - 1])
        for name, value in costs[i].items():
            before = max(costs[i - 1][name], 1)
            exponent = math.log(max(value, 1) / before) / ratio
            growth[f"growth_{name}"] = max(growth.get(f"growth_{name}", 0.0), exponent)
            if exponent >= max_growth:
                return (
                    f"not sub-quadratic: {name} grew from {before} at T={lengths[i - 1]} to "
                    f"{value} at T={length} (exponent {exponent:.2f} >= {max_growth})"
                ), growth
    return "", growth


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def check_budget(params: int, reference: int, budget: float) -> str:
    if params > budget * reference:
        return (
            f"too many parameters: the mixer has {params}, the budget is {budget:g} x "
            f"DeltaNet's {reference} = {int(budget * reference)}"
        )
    return ""
