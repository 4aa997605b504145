"""One GRPO training run of a candidate from the cached warm start (the child-process side).

``train_candidate`` imports the candidate program, builds trl's GRPOConfig for the fixed
budget, trains ``CandidateGRPOTrainer`` and saves the trained weights (safetensors) plus the
training curve. It does not score anything: the evaluator's parent process loads the weights
into a model of the known shape and measures held-out accuracy itself, so a candidate that
runs in this process cannot touch the score.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from rl_checks import ContractError, load_candidate
from rl_data import Problem, exact_reward
from rl_settings import RLSettings
from rl_trainer import REF_SENTINEL_BETA, CandidateGRPOTrainer

WEIGHTS_FILE = "model.safetensors"
CURVE_FILE = "curve.json"


def reward_function(answers_by_prompt: dict[str, str]):
    """trl reward function: exact-match reward against the answer column."""

    def exact_answer(prompts, completions, answer, **kwargs) -> list[float]:
        return [exact_reward(c, a) for c, a in zip(completions, answer, strict=True)]

    exact_answer.__name__ = "exact_answer"
    return exact_answer


def train_candidate(
    program: str,
    warm_dir: Path,
    train_problems: list[Problem],
    rl: RLSettings,
    seed: int,
    out_dir: Path,
) -> dict[str, Any]:
    """Train the warm start with the candidate's GRPO; write weights and curve to out_dir."""
    from datasets import Dataset
    from transformers import AutoTokenizer, LlamaForCausalLM, PrinterCallback
    from trl import GRPOConfig

    logging.getLogger("transformers").setLevel(logging.ERROR)
    compute_advantages, policy_loss = load_candidate(program)
    tokenizer = AutoTokenizer.from_pretrained(warm_dir)
    model = LlamaForCausalLM.from_pretrained(warm_dir, dtype=torch.float32)
    dataset = Dataset.from_dict(
        {"prompt": [p.prompt for p in train_problems], "answer": [p.answer for p in train_problems]}
    )
    batch = rl.prompts_per_step * rl.group_size
    with tempfile.TemporaryDirectory(prefix="rl_grpo_") as scratch:
        config = GRPOConfig(
            output_dir=scratch,
            use_cpu=True,
            bf16=False,
            fp16=False,
            seed=seed,
            data_seed=seed,
            max_steps=rl.steps,
            per_device_train_batch_size=batch,
            gradient_accumulation_steps=1,
            num_generations=rl.group_size,
            num_iterations=rl.num_iterations,
            max_completion_length=rl.max_completion_length,
            temperature=rl.temperature,
            learning_rate=rl.learning_rate,
            lr_scheduler_type="constant",
            beta=REF_SENTINEL_BETA,
            logging_steps=1,
            save_strategy="no",
            report_to=[],
            disable_tqdm=True,
            dataloader_num_workers=0,
        )
        trainer = CandidateGRPOTrainer(
            model=model,
            reward_funcs=reward_function({}),
            args=config,
            train_dataset=dataset,
            processing_class=tokenizer,
            compute_advantages=compute_advantages,
            policy_loss=policy_loss,
        )
        trainer.remove_callback(PrinterCallback)  # the curve is summarised by the evaluator
        start = time.monotonic()
        trainer.train()
        train_seconds = time.monotonic() - start
    out_dir.mkdir(parents=True, exist_ok=True)
    trainer.model.save_pretrained(out_dir, safe_serialization=True)
    history = [row for row in trainer.state.log_history if "reward" in row]
    curve = {
        "reward": [round(float(row["reward"]), 4) for row in history],
        "kl": [round(float(row.get("kl", float("nan"))), 6) for row in history],
        "loss": [round(float(row.get("loss", float("nan"))), 6) for row in history],
        "ratio_outside": [round(float(row.get("ratio_outside_0.2", 0.0)), 4) for row in history],
        "train_seconds": round(train_seconds, 2),
    }
    (out_dir / CURVE_FILE).write_text(json.dumps(curve), encoding="utf-8")
    return curve


def child_main(program: str, job_file: str) -> int:
    """Entry point of the child process: the job is a JSON file written by the parent."""
    job = json.loads(Path(job_file).read_text(encoding="utf-8"))
    error_path = Path(job["out_dir"]) / "error.txt"
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    try:
        from rl_data import make_splits

        data = job["data"]
        splits = make_splits(data["max_operand"], data["n_test"], data["n_val"], data["seed"])
        train_candidate(
            program,
            Path(job["warm_dir"]),
            splits.train,
            RLSettings(**job["rl"]),
            int(job["seed"]),
            Path(job["out_dir"]),
        )
    except BaseException as exc:  # noqa: BLE001 - report anything, SystemExit included
        reason = str(exc) if isinstance(exc, ContractError) else f"{type(exc).__name__}: {exc}"
        Path(job["out_dir"]).mkdir(parents=True, exist_ok=True)
        error_path.write_text(reason.splitlines()[0][:500] if reason else repr(exc), "utf-8")
        import traceback

        traceback.print_exc(file=sys.stderr)
        return 1
    return 0
