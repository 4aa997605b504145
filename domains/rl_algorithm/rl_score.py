"""Scoring trained weights in the evaluator's own process.

The training child only hands back a safetensors file. It is loaded into a fresh model
built from the warm start's config (which the candidate never wrote), strictly - every
tensor present with the right shape - and must be finite; then greedy accuracy on the
held-out split is the score.
"""

from __future__ import annotations

from pathlib import Path

import torch
from rl_data import greedy_accuracy, make_splits
from rl_model import WarmStartSettings


def score_weights(
    warm_dir: Path, trained_dir: Path, settings: WarmStartSettings
) -> tuple[float, str]:
    """(held-out accuracy, problem or "") for the weights in ``trained_dir``."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    weights = trained_dir / "model.safetensors"
    if not weights.is_file():
        return 0.0, "training produced no model.safetensors"
    config = LlamaConfig.from_pretrained(warm_dir)
    model = LlamaForCausalLM(config)
    state = load_file(str(weights))
    expected = model.state_dict()
    for name, tensor in expected.items():
        if name in state and state[name].shape != tensor.shape:
            return 0.0, f"trained weight {name} has shape {tuple(state[name].shape)}"
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        return 0.0, f"trained weights do not load: {str(exc).splitlines()[0]}"
    missing = [n for n in expected if n not in state and "lm_head" not in n]
    if missing:
        return 0.0, f"trained weights miss {missing[0]}"
    if config.tie_word_embeddings:
        model.tie_weights()
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        return 0.0, "trained weights contain NaN or infinity"
    tokenizer = AutoTokenizer.from_pretrained(warm_dir)
    splits = make_splits(settings.max_operand, settings.n_test, settings.n_val, settings.data_seed)
    return greedy_accuracy(model, tokenizer, splits.test, settings.max_new_tokens), ""
