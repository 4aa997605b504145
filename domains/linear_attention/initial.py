"""DeltaNet token mixer: the baseline to beat (Yang et al. 2024, "Parallelizing Linear
Transformers with the Delta Rule over Sequence Length").

q, k, v come from linear projections followed by a short causal depthwise convolution
and SiLU; q and k are L2-normalised per head; a per-head gate beta in (0, BETA_MAX)
sets how strongly each token overwrites the association stored under its key. The
state is updated by the delta rule, chunkwise (fla_ref.delta_rule_chunkwise: fla's
kernels on CUDA, a PyTorch WY form on CPU), then per-head RMS-normalised and projected.
"""

import torch
import torch.nn.functional as F
from fla_ref import delta_rule_chunkwise
from torch import nn

# EVOLVE-BLOCK-START
CONV_SIZE = 4  # width of the causal short convolution on q, k and v
CHUNK_SIZE = 32  # tokens per chunk of the chunkwise delta rule (speed, not maths)
BETA_MAX = 1.0  # beta = BETA_MAX * sigmoid(w . x + BETA_BIAS); the rule is stable up to 2
BETA_BIAS = 0.0  # initial bias of the write strength
QK_SCALE = 1.00  # multiplies the usual head_dim ** -0.5 on the queries
NORM_EPS = 1e-5  # epsilon of the per-head output RMS norm
SHORTCUT = 0.00  # weight of a direct path from the convolved values to the output


class TokenMixer(nn.Module):
    """Causal, sub-quadratic token mixing: [B, T, D] -> [B, T, D]."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads, self.head_dim = n_heads, d_model // n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.conv = nn.Conv1d(
            3 * d_model, 3 * d_model, CONV_SIZE, groups=3 * d_model, padding=CONV_SIZE - 1
        )
        self.beta = nn.Linear(d_model, n_heads)
        nn.init.constant_(self.beta.bias, BETA_BIAS)
        self.norm_weight = nn.Parameter(torch.ones(self.head_dim))
        self.out = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        mixed = self.conv(self.qkv(x).transpose(1, 2))[..., :length]  # causal: left padding
        q, k, v = F.silu(mixed).transpose(1, 2).chunk(3, dim=-1)
        q, k, v = (
            t.reshape(batch, length, self.n_heads, self.head_dim).transpose(1, 2)
            for t in (q, k, v)
        )
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        beta = BETA_MAX * torch.sigmoid(self.beta(x)).transpose(1, 2)
        scale = QK_SCALE * self.head_dim**-0.5
        o = delta_rule_chunkwise(q, k, v, beta, chunk_size=CHUNK_SIZE, scale=scale)
        o = o * torch.rsqrt(o.pow(2).mean(-1, keepdim=True) + NORM_EPS) * self.norm_weight
        o = o + SHORTCUT * v
        return self.out(o.transpose(1, 2).reshape(batch, length, width))


# EVOLVE-BLOCK-END
