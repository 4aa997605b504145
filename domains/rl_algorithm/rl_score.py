"""Scoring trained weights in the evaluator's own process.

The training child only hands back weights. In the tiny setup they are loaded strictly into a
fresh model built from the warm start's config (which the candidate never wrote): every
tensor present, right shapes, all finite. Greedy accuracy on the held-out split is the score.
In the real-model setup the saved model directory is loaded with ``AutoModelForCausalLM``
(no remote code) and checked for finite weights the same way.
"""

from __future__ import annotations

from pathlib import Path

import torch
from rl_model import load_policy
from rl_real import greedy_score, problem_source
from rl_settings import TaskSettings


def _load_tiny(start_dir: Path, trained_dir: Path):
    """(model, problem or "") from the child's safetensors, strictly, in the known shape."""
    from safetensors.torch import load_file
    from transformers import LlamaConfig, LlamaForCausalLM

    weights = trained_dir / "model.safetensors"
    if not weights.is_file():
        return None, "training produced no model.safetensors"
    config = LlamaConfig.from_pretrained(start_dir)
    model = LlamaForCausalLM(config)
    state = load_file(str(weights))
    expected = model.state_dict()
    for name, tensor in expected.items():
        if name in state and state[name].shape != tensor.shape:
            return None, f"trained weight {name} has shape {tuple(state[name].shape)}"
    missing = [n for n in expected if n not in state and "lm_head" not in n]
    if missing:
        return None, f"trained weights miss {missing[0]}"
    model.load_state_dict(state, strict=False)
    if config.tie_word_embeddings:
        model.tie_weights()
    model.eval()
    return model, ""


def score_weights(settings: TaskSettings, start_dir: Path, trained_dir: Path) -> tuple[float, str]:
    """(held-out accuracy, problem or "") for the weights in ``trained_dir``."""
    from transformers import AutoTokenizer

    if settings.real_model.enabled:
        if not (trained_dir / "config.json").is_file():
            return 0.0, "training produced no model directory"
        model, tokenizer = load_policy(trained_dir)
    else:
        model, problem = _load_tiny(start_dir, trained_dir)
        if problem:
            return 0.0, problem
        tokenizer = AutoTokenizer.from_pretrained(start_dir)
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        return 0.0, "trained weights contain NaN or infinity"
    return greedy_score(model, tokenizer, problem_source(settings)), ""
