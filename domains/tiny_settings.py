"""Test-size settings of the AI domains: seconds per candidate instead of minutes.

The domains' tests and the research replay (``benchmarks/research_replay.py --tiny``) run
the real evaluators at these sizes; one place, so a setting a domain adds or renames is
changed once. They prove the code paths, not the science: scores at these sizes are noise.
"""

from __future__ import annotations

from typing import Any

LINEAR_ATTENTION: dict[str, Any] = {
    "d_model": 32,
    "n_heads": 2,
    "n_layers": 1,
    "seq_len": 64,
    "batch": 4,
    "steps": 12,
    "eval_batches": 1,
    "mqar_pairs": 4,
    "mqar_keys": 8,
    "mqar_values": 8,
    "mqar_d_model": 32,
    "mqar_n_heads": 2,
    "mqar_layers": 1,
    "mqar_batch": 8,
    "mqar_steps": 12,
    "mqar_eval_batches": 2,
    "check_lengths": [16, 21],
    "cost_lengths": [64, 128, 512],
    "verify_seeds": [0],
    "verify_steps": 6,
    "verify_seq_len": 64,
    "verify_mqar_steps": 6,
}

RL_ALGORITHM: dict[str, Any] = {
    "seed": 0,
    "verify_seeds": [0],
    "check_timeout": 60,
    "train_timeout": 60,
    "warm_start": {
        "max_operand": 19,
        "n_test": 60,
        "n_val": 40,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_layers": 1,
        "num_heads": 2,
        "sft_batch_size": 32,
        "sft_max_steps": 100,
        "sft_eval_every": 50,
        "sft_target_accuracy": 0.3,
        "max_new_tokens": 3,
    },
    "rl": {"steps": 2, "prompts_per_step": 4, "group_size": 4, "max_completion_length": 3},
}
