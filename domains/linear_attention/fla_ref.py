"""Chunkwise linear-attention primitives for candidates: fla's kernels on CUDA, PyTorch on CPU.

flash-linear-attention (fla) ships Triton kernels, and Triton needs a GPU. Its pure
PyTorch references (``fla/ops/*/naive.py``) still run on CPU, but importing ``fla.ops``
pulls in Triton, so they are loaded here by file path. Every function takes the layout
that reads best in a mixer, ``[B, H, T, D]`` (and ``[B, H, T]`` for per-token gates),
pads T up to a multiple of the chunk size itself and returns outputs in the input dtype.

On a CUDA device with Triton importable, :func:`delta_rule_chunkwise` and
:func:`gated_delta_rule_chunkwise` call fla's ``chunk_*`` kernels in bfloat16 (fla's own
layout is ``[B, T, H, D]``). Otherwise :func:`delta_rule_chunkwise` uses the WY form with
a triangular solve (the same maths as fla's ``delta_rule_chunkwise``, whose Python loop
over chunk rows is several times slower on CPU), and the gated variants use fla's naive
functions. ``tests/test_linear_attention_checks.py`` pins the CPU paths to fla's exact
recurrences.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from types import ModuleType

import torch
import torch.nn.functional as F


@functools.cache
def load_naive(op: str) -> ModuleType:
    """fla's ``fla/ops/<op>/naive.py`` as a module, without importing ``fla.ops`` (Triton)."""
    spec = importlib.util.find_spec("fla")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("flash-linear-attention (fla) is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "ops" / op / "naive.py"
    if not path.is_file():
        raise ImportError(f"fla has no naive reference for {op!r} ({path})")
    module_spec = importlib.util.spec_from_file_location(f"fla_naive_{op}", path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


@functools.cache
def _triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def use_kernels(x: torch.Tensor) -> bool:
    """True when fla's Triton kernels can run on ``x`` (a CUDA tensor, Triton importable)."""
    return x.is_cuda and _triton_available()


def _pad_time(t: torch.Tensor, chunk: int, dim: int = 2) -> torch.Tensor:
    pad = (-t.shape[dim]) % chunk
    if pad == 0:
        return t
    widths = [0, 0] * (t.dim() - 1 - dim) + [0, pad]
    return F.pad(t, widths)


def delta_rule_chunkwise(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    chunk_size: int = 32,
    scale: float | None = None,
) -> torch.Tensor:
    """Causal delta rule: ``S_t = S_{t-1} + beta_t k_t (v_t - S_{t-1}^T k_t)^T``,
    ``o_t = S_t^T q_t``.

    q, k: [B, H, T, Dk] (normalise k yourself: the rule is only stable for ||k|| <= 1 and
    0 <= beta <= 2); v: [B, H, T, Dv]; beta: [B, H, T]. scale multiplies q (default
    Dk ** -0.5). Cost O(T * chunk * D) time, O(T * D + D * D) state: sub-quadratic in T.
    """
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if use_kernels(q):  # pragma: no cover - needs a GPU
        from fla.ops.delta_rule import chunk_delta_rule

        args = [t.transpose(1, 2).contiguous().to(torch.bfloat16) for t in (q, k, v)]
        b = beta.transpose(1, 2).contiguous().to(torch.bfloat16)
        out, _ = chunk_delta_rule(*args, b, scale=scale)
        return out.transpose(1, 2).to(q.dtype)
    length, dtype = q.shape[2], q.dtype
    q, k, v = (_pad_time(t.float(), chunk_size) for t in (q, k, v))
    beta = _pad_time(beta.float(), chunk_size)
    b_, h_, t_, dk = q.shape
    dv, c = v.shape[-1], chunk_size
    n = t_ // c
    q = (q * scale).view(b_, h_, n, c, dk)
    k = k.view(b_, h_, n, c, dk)
    v = (v * beta[..., None]).view(b_, h_, n, c, dv)
    k_beta = k * beta.view(b_, h_, n, c, 1)
    eye = torch.eye(c, dtype=q.dtype, device=q.device)
    lower = torch.tril(k_beta @ k.transpose(-1, -2), diagonal=-1)
    # (I + tril(beta K K^T, -1))^{-1}: the WY representation of the chunk's product of
    # Householder-like updates, solved instead of inverted row by row.
    inverse = torch.linalg.solve_triangular(
        eye + lower, eye.expand_as(lower), upper=False, unitriangular=True
    )
    u = inverse @ v
    w = inverse @ k_beta
    causal = torch.ones(c, c, dtype=torch.bool, device=q.device).tril()
    state = q.new_zeros(b_, h_, dk, dv)
    outs = []
    for i in range(n):
        q_i, k_i = q[:, :, i], k[:, :, i]
        scores = (q_i @ k_i.transpose(-1, -2)).masked_fill(~causal, 0.0)
        u_i = u[:, :, i] - w[:, :, i] @ state
        outs.append(q_i @ state + scores @ u_i)
        state = state + k_i.transpose(-1, -2) @ u_i
    out = torch.stack(outs, dim=2).reshape(b_, h_, t_, dv)
    return out[:, :, :length].to(dtype)


def gated_delta_rule_chunkwise(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    g: torch.Tensor,
    chunk_size: int = 32,
    scale: float | None = None,
) -> torch.Tensor:
    """Gated DeltaNet: the delta rule with a per-token state decay ``exp(g_t)``, g <= 0.

    Shapes as :func:`delta_rule_chunkwise`, g: [B, H, T] (log decay, e.g.
    ``-softplus(...)`` or ``logsigmoid(...)``).
    """
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if use_kernels(q):  # pragma: no cover - needs a GPU
        from fla.ops.gated_delta_rule import chunk_gated_delta_rule

        args = [t.transpose(1, 2).contiguous().to(torch.bfloat16) for t in (q, k, v)]
        gates = [t.transpose(1, 2).contiguous().float() for t in (g, beta)]
        out, _ = chunk_gated_delta_rule(*args, gates[0], gates[1].to(torch.bfloat16), scale=scale)
        return out.transpose(1, 2).to(q.dtype)
    naive = load_naive("gated_delta_rule").naive_chunk_gated_delta_rule
    args = [t.transpose(1, 2) for t in (q, k, v, g, beta)]
    out, _ = naive(*args[:3], args[3], args[4], chunk_size=chunk_size, scale=scale)
    return out.transpose(1, 2).to(q.dtype)


def gated_linear_attention_chunkwise(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    chunk_size: int = 32,
    scale: float | None = None,
) -> torch.Tensor:
    """Linear attention with a scalar per-token decay (RetNet / Mamba-2 / simple GLA):
    ``S_t = exp(g_t) S_{t-1} + k_t v_t^T``, ``o_t = S_t^T q_t``. g: [B, H, T], g <= 0
    (g = 0 everywhere is plain causal linear attention). Runs fla's naive reference.
    """
    naive = load_naive("simple_gla").naive_chunk_simple_gla
    args = [t.transpose(1, 2) for t in (q, k, v, g)]
    out, _ = naive(*args, chunk_size=chunk_size, scale=scale)
    return out.transpose(1, 2).to(q.dtype)
