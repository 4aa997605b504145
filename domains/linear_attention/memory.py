"""Shape checks and a peak GPU-memory estimate of the linear_attention settings.

Plain arithmetic (no torch import), so the evaluator can refuse settings that cannot fit a
card before it starts a child, and a test can size the ``cuda:`` settings on a machine
without a GPU.

What one training step of :mod:`training` holds at its peak (the end of the forward pass /
start of the backward pass), term by term. It is an **estimate**: the counts follow the
shipped model stack and the initial DeltaNet mixer (see ``initial.py``); a candidate mixer
that keeps more intermediates costs more, hence the ``mixer_factor`` knob and the margin the
caller should leave. Assumptions:

- The model, its gradients and AdamW's two moments are float32 (``training._train`` builds
  the model in float32 and uses no autocast / mixed precision).
- Activations kept for backward are float32, counted per token and per layer from the code:
  the block's two RMSNorms (input + normalised product, 2 x D each), the GELU MLP (its
  input D, the 4D pre-activation and the 4D GELU output); DeltaNet's qkv projection (3D),
  short-conv output (3D), SiLU output (3D), L2-normalised q and k (2D), the per-head output
  norm (2D) and the output projection's input (D); plus the bfloat16 copies of q, k, v that
  fla's kernel saves (3D x 2 bytes). The transient gradients of the layer being
  back-propagated are counted as one more layer of activations.
- fla's chunk kernels (``chunk_delta_rule``, chunk 64): per layer the WY matrix ``A``
  [B, T, H, 64] in float32 is saved; the chunk states ``h`` [B, ceil(T/64), H, dk, dv]
  (bfloat16) are recomputed in backward, where ``h`` and ``dh`` exist for one layer at a time.
- Logits [B, T, V] in float32, cross-entropy's saved log-softmax of the same size and the
  logits' gradient: 3 x B x T x V x 4 bytes.
- The caching allocator's rounding / fragmentation: x 1.2 on all tensors; a CUDA context
  (cuBLAS workspace, Triton kernels): 0.6 GiB per process. The explore and verify stages run
  the LM and MQAR children side by side on the same card, so their peaks add up.
"""

from __future__ import annotations

import math
from typing import Any

GIB = 1024**3
KERNEL_CHUNK = 64  # fla's chunk_delta_rule / chunk_gated_delta_rule default chunk size
MAX_HEAD_DIM = 256  # fla: "current kernel does not support head dimension larger than 256"
MIN_HEAD_DIM = 16  # Triton's tl.dot tiles are at least 16 wide (smaller dims are padded)
FP32, BF16 = 4, 2
BLOCK_SAVED = 2 + 2 + 1 + 4 + 4  # two RMSNorms, MLP input, pre-activation, GELU output (x D)
MIXER_SAVED = 3 + 3 + 3 + 2 + 2 + 1  # DeltaNet: qkv, conv, SiLU, q/k norm, out norm, out in
KERNEL_COPIES = 3  # bf16 q, k, v saved by fla's kernel (x D, 2 bytes)
ALLOCATOR_FACTOR = 1.2
CONTEXT_BYTES = int(0.6 * GIB)
LM_VOCAB = 256  # bytes


def model_parameters(vocab: int, width: int, heads: int, layers: int) -> int:
    """Parameters of ``training.SequenceModel`` around the initial DeltaNet mixer."""
    head_dim = width // heads
    mixer = 3 * width * width + 3 * width * 4 + 3 * width + width * heads + heads
    mixer += head_dim + width * width  # per-head norm weight, output projection
    mlp = width * 4 * width + 4 * width + 4 * width * width + width
    block = mixer + mlp + 2 * width
    return vocab * width + layers * block + width + width * vocab


def step_terms(
    vocab: int,
    width: int,
    heads: int,
    layers: int,
    seq_len: int,
    batch: int,
    mixer_factor: float = 1.0,
) -> dict[str, int]:
    """Bytes of each term of one training step's peak (see the module docstring)."""
    tokens = batch * seq_len
    head_dim = width // heads
    chunks = math.ceil(seq_len / KERNEL_CHUNK)
    params = model_parameters(vocab, width, heads, layers)
    per_layer = tokens * width * ((BLOCK_SAVED + mixer_factor * MIXER_SAVED) * FP32)
    per_layer += tokens * width * KERNEL_COPIES * BF16
    wy = tokens * heads * KERNEL_CHUNK * FP32
    states = 2 * batch * chunks * heads * head_dim * head_dim * BF16  # h and dh, one layer
    return {
        "parameters": params * FP32,
        "gradients": params * FP32,
        "adam_states": 2 * params * FP32,
        "activations": int((layers + 1) * per_layer + 2 * tokens * width * FP32),  # + embed, norm
        "attention_state": layers * wy + states,
        "logits": 3 * tokens * vocab * FP32,
    }


def step_bytes(terms: dict[str, int]) -> int:
    """One process's peak: the tensors x the allocator factor, plus its CUDA context."""
    return int(sum(terms.values()) * ALLOCATOR_FACTOR) + CONTEXT_BYTES


def check_shapes(settings: dict[str, Any]) -> list[str]:
    """Errors (one line each) of settings that cannot run; empty when consistent."""
    errors = []
    for prefix in ("", "mqar_"):
        width, heads = settings[f"{prefix}d_model"], settings[f"{prefix}n_heads"]
        name = f"{prefix}d_model={width}, {prefix}n_heads={heads}"
        if not (isinstance(width, int) and isinstance(heads, int) and width > 0 and heads > 0):
            errors.append(f"{name}: both must be positive integers")
            continue
        if width % heads:
            errors.append(f"{name}: the heads do not divide the width")
        elif width // heads > MAX_HEAD_DIM:
            errors.append(f"{name}: head dim {width // heads} > {MAX_HEAD_DIM} (fla's kernels)")
    for key in ("n_layers", "mqar_layers", "seq_len", "batch", "verify_seq_len", "mqar_batch"):
        if not (isinstance(settings[key], int) and settings[key] > 0):
            errors.append(f"{key}={settings[key]!r}: must be a positive integer")
    if isinstance(settings["mqar_pairs"], int) and settings["mqar_pairs"] > settings["mqar_keys"]:
        errors.append(
            f"mqar_pairs={settings['mqar_pairs']} > mqar_keys={settings['mqar_keys']}: "
            "the keys of a sequence are drawn without replacement"
        )
    return errors


def notes(settings: dict[str, Any]) -> list[str]:
    """Legal but wasteful shapes: head dims the kernels pad, T padded to the chunk."""
    out = []
    for prefix in ("", "mqar_"):
        head_dim = settings[f"{prefix}d_model"] // settings[f"{prefix}n_heads"]
        if head_dim < MIN_HEAD_DIM or head_dim & (head_dim - 1):
            out.append(f"{prefix}head dim {head_dim}: padded to a power of two >= 16 on GPU")
    lengths = {
        "seq_len": settings["seq_len"],
        "verify_seq_len": settings["verify_seq_len"],
        "mqar T": 4 * settings["mqar_pairs"] - 1,
    }
    for name, length in lengths.items():
        if length % KERNEL_CHUNK:
            padded = math.ceil(length / KERNEL_CHUNK) * KERNEL_CHUNK
            out.append(f"{name}={length}: the last chunk is padded to {padded} on GPU")
    return out


def estimate(settings: dict[str, Any], mixer_factor: float = 1.0) -> dict[str, Any]:
    """Peak bytes of the worst stage (explore or verify): LM + MQAR children side by side.

    Returns {"lm": terms, "mqar": terms, "lm_bytes", "mqar_bytes", "total_bytes", "seq_len"}.
    """
    s = settings
    seq_len = max(s["seq_len"], s["verify_seq_len"])  # verify trains the LM at verify_seq_len
    lm = step_terms(
        LM_VOCAB, s["d_model"], s["n_heads"], s["n_layers"], seq_len, s["batch"], mixer_factor
    )
    mqar = step_terms(
        s["mqar_keys"] + s["mqar_values"],
        s["mqar_d_model"],
        s["mqar_n_heads"],
        s["mqar_layers"],
        4 * s["mqar_pairs"] - 1,
        s["mqar_batch"],
        mixer_factor,
    )
    lm_bytes, mqar_bytes = step_bytes(lm), step_bytes(mqar)
    return {
        "lm": lm,
        "mqar": mqar,
        "lm_bytes": lm_bytes,
        "mqar_bytes": mqar_bytes,
        "total_bytes": lm_bytes + mqar_bytes,
        "seq_len": seq_len,
    }


def refusal(
    settings: dict[str, Any], capacity_bytes: int | None, margin: float = 0.9
) -> str | None:
    """One line when the settings are inconsistent or (with a known card) their estimate
    exceeds ``margin`` x ``capacity_bytes``; None when they should run."""
    errors = check_shapes(settings)
    if errors:
        return "inconsistent settings: " + "; ".join(errors)
    if capacity_bytes is None:
        return None
    need = estimate(settings)["total_bytes"]
    if need > margin * capacity_bytes:
        return (
            f"settings need an estimated {need / GIB:.1f} GiB of GPU memory (LM + MQAR side by "
            f"side), more than {margin:.0%} of this card's {capacity_bytes / GIB:.1f} GiB: "
            "lower batch, seq_len, d_model or n_layers in task.yaml's cuda: settings"
        )
    return None


def table(settings: dict[str, Any]) -> str:
    """A Markdown table of the terms (GiB) of the LM and MQAR steps."""
    est = estimate(settings)
    rows = ["| term | LM | MQAR |", "|---|---|---|"]
    for key in est["lm"]:
        rows.append(f"| {key} | {est['lm'][key] / GIB:.3f} | {est['mqar'][key] / GIB:.3f} |")
    rows.append(
        f"| peak with x{ALLOCATOR_FACTOR} allocator + context | {est['lm_bytes'] / GIB:.2f} | "
        f"{est['mqar_bytes'] / GIB:.2f} |"
    )
    return "\n".join(rows)
