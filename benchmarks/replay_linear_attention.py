"""The scripted researcher's designs for ``linear_attention``: what a model would propose.

Each design is written as line substitutions of the initial DeltaNet program (so it is
checked against the real baseline when loaded) and is sent to the engine as SEARCH/REPLACE
edits of whichever parent the sampler picked. They cover what a real run meets: designs
of the kind the paper found (a gated delta rule, an output gate, another short
convolution, a multi-path mixer with sigmoid gates and floors), an edit that crashes at run
time and needs the debug agent, a non-causal design the LLM reviewer refuses and a quadratic
one it hedges on (no verdict) so that the task's check stage must stop it, and malformed
answers: edits forgotten, a SEARCH retyped, an edit of the frozen import above the EVOLVE
block, an answer cut at the token limit, and one that never yields a program.
"""

from __future__ import annotations

from replay_model import Design, DomainScript

from domains.tiny_settings import LINEAR_ATTENTION

IMPORT = (
    "# EVOLVE-BLOCK-START\n",
    "# EVOLVE-BLOCK-START\nfrom fla_ref import gated_delta_rule_chunkwise\n",
)
DECAY_KNOB = (
    "SHORTCUT = 0.00  # weight of a direct path from the convolved values to the output\n",
    "SHORTCUT = 0.00  # weight of a direct path from the convolved values to the output\n"
    "DECAY_BIAS = -3.0  # softplus(DECAY_BIAS) is the initial per-token log-decay (~0.95)\n",
)
DECAY_LAYER = (
    "        nn.init.constant_(self.beta.bias, BETA_BIAS)\n",
    "        nn.init.constant_(self.beta.bias, BETA_BIAS)\n"
    "        self.decay = nn.Linear(d_model, n_heads)\n"
    "        nn.init.constant_(self.decay.bias, DECAY_BIAS)\n",
)
DECAY_RULE = (
    "        o = delta_rule_chunkwise(q, k, v, beta, chunk_size=CHUNK_SIZE, scale=scale)\n",
    "        g = -F.softplus(self.decay(x)).transpose(1, 2)  # log decay <= 0, per head and token\n"
    "        o = gated_delta_rule_chunkwise(q, k, v, beta, g, chunk_size=CHUNK_SIZE,"
    " scale=scale)\n",
)
GATED_DELTA = (IMPORT, DECAY_KNOB, DECAY_LAYER, DECAY_RULE)

OUTPUT_GATE = (
    (
        "        self.out = nn.Linear(d_model, d_model, bias=False)\n",
        "        self.out = nn.Linear(d_model, d_model, bias=False)\n"
        "        self.gate = nn.Linear(d_model, d_model, bias=False)\n",
    ),
    (
        "        return self.out(o.transpose(1, 2).reshape(batch, length, width))\n",
        "        o = o.transpose(1, 2).reshape(batch, length, width)\n"
        "        return self.out(o * torch.sigmoid(self.gate(x)))\n",
    ),
)

# A per-head gate on the memory read-out; the first answer forgets to move the head axis.
HEAD_GATE = (
    (
        "        self.out = nn.Linear(d_model, d_model, bias=False)\n",
        "        self.out = nn.Linear(d_model, d_model, bias=False)\n"
        "        self.head_gate = nn.Linear(d_model, n_heads)\n",
    ),
    (
        "        o = o + SHORTCUT * v\n",
        "        o = o + SHORTCUT * v\n"
        "        o = o * torch.sigmoid(self.head_gate(x)).transpose(1, 2).unsqueeze(-1)\n",
    ),
)
HEAD_GATE_BUG = (
    "        o = o * torch.sigmoid(self.head_gate(x)).transpose(1, 2).unsqueeze(-1)\n",
    "        o = o * torch.sigmoid(self.head_gate(x))  # [B, T, H] gate on [B, H, T, Dh]\n",
)

MULTI_PATH = (
    *GATED_DELTA,
    (
        "DECAY_BIAS = -3.0  # softplus(DECAY_BIAS) is the initial per-token log-decay (~0.95)\n",
        "DECAY_BIAS = -3.0  # softplus(DECAY_BIAS) is the initial per-token log-decay (~0.95)\n"
        "PATH_FLOOR = 0.05  # every path keeps at least this weight (no path starves early)\n",
    ),
    (
        "        self.out = nn.Linear(d_model, d_model, bias=False)\n",
        "        self.out = nn.Linear(d_model, d_model, bias=False)\n"
        "        self.paths = nn.Linear(d_model, 3 * n_heads)  # memory, local, identity\n",
    ),
    (
        "        mixed = self.conv(self.qkv(x).transpose(1, 2))[..., :length]"
        "  # causal: left padding\n",
        "        raw = self.qkv(x)\n"
        "        mixed = self.conv(raw.transpose(1, 2))[..., :length]  # causal: left padding\n",
    ),
    (
        "        o = o + SHORTCUT * v\n",
        "        direct = raw[..., 2 * width :]"
        ".reshape(batch, length, self.n_heads, self.head_dim)\n"
        "        gates = torch.sigmoid(self.paths(x)).reshape(batch, length, self.n_heads, 3)\n"
        "        gates = PATH_FLOOR + (1.0 - PATH_FLOOR) * gates.permute(0, 2, 1, 3)\n"
        "        o = gates[..., 0:1] * o + gates[..., 1:2] * v\n"
        "        o = o + gates[..., 2:3] * direct.transpose(1, 2)\n",
    ),
)

# Reads the future: a reversed running mean of the values (a "bidirectional summary").
NON_CAUSAL = (
    (
        "        o = o + SHORTCUT * v\n",
        "        o = o + SHORTCUT * v\n"
        "        remaining = torch.arange(length, 0, -1, device=x.device, dtype=x.dtype)\n"
        "        o = o + 0.5 * v.flip(2).cumsum(2).flip(2) / remaining[:, None]\n",
    ),
)

# Exact exponentially decayed attention next to the delta rule: a [T, T] matrix per head.
QUADRATIC = (
    (
        "        o = o + SHORTCUT * v\n",
        "        o = o + SHORTCUT * v\n"
        "        pos = torch.arange(length, device=x.device, dtype=x.dtype)\n"
        "        gap = pos[:, None] - pos[None, :]\n"
        "        decay = torch.where(gap >= 0, torch.exp(-0.1 * gap.clamp(min=0)), 0.0)\n"
        "        o = o + (decay * (q @ k.transpose(-1, -2))) @ v\n",
    ),
)

DESIGNS = (
    Design(
        "gated-delta-rule",
        "Add a data-dependent state decay to the delta rule (Gated DeltaNet): a per-head "
        "log-decay -softplus(w.x + b) lets the memory forget stale associations, which the "
        "pure delta rule can only overwrite key by key.",
        GATED_DELTA,
        expect="explored",
        malformed="frozen",
        frozen=(
            "from fla_ref import delta_rule_chunkwise\n",
            "from fla_ref import delta_rule_chunkwise, gated_delta_rule_chunkwise\n",
        ),
    ),
    Design(
        "output-gate",
        "Gate the mixer's output with sigmoid(W x) before the projection, as in GLA and "
        "Gated DeltaNet: the token itself decides how much of the memory read-out to pass.",
        OUTPUT_GATE,
        expect="explored",
        malformed="no-diff",
    ),
    Design(
        "bidirectional-summary",
        "Add a running summary of the values to each position so every token sees the "
        "whole sequence context.",
        NON_CAUSAL,
        expect="static-check",
    ),
    Design(
        "rambling",
        "An answer that never contains a usable edit.",
        (),
        expect="malformed",
        malformed="hopeless",
    ),
    Design(
        "head-gate",
        "A per-head sigmoid gate on the memory read-out, so heads that store nothing useful "
        "for a token can be switched off.",
        HEAD_GATE,
        expect="repaired",
        bug=HEAD_GATE_BUG,
    ),
    Design(
        "exact-decay-attention",
        "Complement the delta rule with exact exponentially decayed attention over the "
        "prefix, recovering precise recall of recent tokens.",
        QUADRATIC,
        expect="check-stage",
    ),
    Design(
        "wider-short-conv",
        "A wider causal short convolution (5 instead of 4 taps) on q, k and v gives the "
        "keys more local context for associative recall.",
        (("CONV_SIZE = 4 ", "CONV_SIZE = 5 "),),
        expect="explored",
        malformed="bad-search",
    ),
    Design(
        "multi-path-gated-fusion",
        "Fuse three paths per head - the gated delta-rule memory, the short-conv local "
        "values and the direct value projection - with sigmoid gates that each keep a floor "
        "of 0.05, as the paper's winning multi-path mixers do.",
        MULTI_PATH,
        expect="explored",
        malformed="truncated",
    ),
)

REVIEW = (
    ("(q @ k.transpose(-1, -2))", ""),  # the reviewer hedges: the check stage must decide
    (
        ".flip(",
        "Requirement 1 (causal): a reversed scan (flip + cumsum) over the time axis gives "
        "every position a summary of future values.",
    ),
)

SCRIPT = DomainScript(designs=DESIGNS, review=REVIEW, judge_scale=(0.0, 100.0))

TINY = LINEAR_ATTENTION  # seconds per design


def tiny_settings(settings: dict) -> dict:
    return {**settings, **TINY}
