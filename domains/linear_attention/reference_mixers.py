"""Reference token mixers for the baseline table (benchmarks/linear_attention_baselines.py).

They span the range the score is calibrated on: no mixing at all (the floor), a causal
mean-pool, plain linear attention, linear attention with a short convolution, and
softmax attention with RoPE (quadratic: it is *rejected* by the task's checks and is
here only as a yardstick). DeltaNet itself is the task's initial program.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from fla_ref import gated_linear_attention_chunkwise
from torch import nn


class NoMixing(nn.Module):
    """Each token sees only itself: the MLP-only floor."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.proj = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class MeanPool(nn.Module):
    """Causal running mean of a projection of the prefix."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.inp = nn.Linear(d_model, d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps = torch.arange(1, x.shape[1] + 1, device=x.device, dtype=x.dtype)[:, None]
        return self.out(self.inp(x).cumsum(1) / steps)


class LinearAttention(nn.Module):
    """Causal linear attention with a positive feature map (elu + 1) and per-head norm."""

    def __init__(self, d_model: int, n_heads: int, conv_size: int = 0) -> None:
        super().__init__()
        self.h, self.dh = n_heads, d_model // n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.conv = (
            nn.Conv1d(
                3 * d_model, 3 * d_model, conv_size, groups=3 * d_model, padding=conv_size - 1
            )
            if conv_size
            else None
        )
        self.out = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        mixed = self.qkv(x)
        if self.conv is not None:
            mixed = F.silu(self.conv(mixed.transpose(1, 2))[..., :t].transpose(1, 2))
        q, k, v = (m.reshape(b, t, self.h, self.dh).transpose(1, 2) for m in mixed.chunk(3, -1))
        q, k = F.elu(q) + 1, F.elu(k) + 1
        g = torch.zeros(b, self.h, t, dtype=x.dtype, device=x.device)
        o = gated_linear_attention_chunkwise(q, k, v, g)
        o = o * torch.rsqrt(o.pow(2).mean(-1, keepdim=True) + 1e-5)
        return self.out(o.transpose(1, 2).reshape(b, t, d))


class LinearAttentionConv(LinearAttention):
    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__(d_model, n_heads, conv_size=4)


class SoftmaxRoPE(nn.Module):
    """Causal softmax attention with rotary position embeddings (quadratic in T)."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.h, self.dh = n_heads, d_model // n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)

    def _rope(self, x: torch.Tensor) -> torch.Tensor:
        t, half = x.shape[-2], self.dh // 2
        freq = 10000 ** (-torch.arange(half, device=x.device, dtype=x.dtype) / half)
        angle = torch.arange(t, device=x.device, dtype=x.dtype)[:, None] * freq
        cos, sin = angle.cos(), angle.sin()
        a, b = x[..., :half], x[..., half:]
        return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = (
            m.reshape(b, t, self.h, self.dh).transpose(1, 2) for m in self.qkv(x).chunk(3, -1)
        )
        o = F.scaled_dot_product_attention(self._rope(q), self._rope(k), v, is_causal=True)
        return self.out(o.transpose(1, 2).reshape(b, t, d))


MIXERS = {
    "softmax_rope": SoftmaxRoPE,
    "linear_attn_conv": LinearAttentionConv,
    "linear_attn": LinearAttention,
    "mean_pool": MeanPool,
    "no_mixing": NoMixing,
}
