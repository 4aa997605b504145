"""One GRPO training run of a candidate from the cached warm start (the child-process side).

``train_candidate`` imports the candidate program, builds trl's GRPOConfig for the fixed
budget (CPU float32 for the tiny setup; GPU and bf16 where available for a real model; never
gradient checkpointing or vLLM), trains ``CandidateGRPOTrainer`` and saves the trained
weights (safetensors) plus the training curve. It does not score anything: the evaluator's
parent process loads the weights into a model of the known shape and measures held-out
accuracy itself, so a candidate that runs in this process cannot touch the score.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from rl_checks import ContractError, load_candidate
from rl_real import ProblemSource, problem_source
from rl_settings import RLSettings, load_settings
from rl_trainer import REF_SENTINEL_BETA, CandidateGRPOTrainer

WEIGHTS_FILE = "model.safetensors"
CURVE_FILE = "curve.json"


def reward_function(reward: Callable[[str, str], float]):
    """trl reward function: the task's reward of each completion against its answer column."""

    def correct(prompts, completions, answer, **kwargs) -> list[float]:
        return [reward(c, a) for c, a in zip(completions, answer, strict=True)]

    return correct


def train_candidate(
    program: str,
    start_dir: Path,
    source: ProblemSource,
    rl: RLSettings,
    seed: int,
    out_dir: Path,
    real: bool = False,
) -> dict[str, Any]:
    """Train the starting policy with the candidate's GRPO; write weights and curve to out_dir."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback
    from trl import GRPOConfig

    logging.getLogger("transformers").setLevel(logging.ERROR)
    compute_advantages, policy_loss = load_candidate(program)
    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    tokenizer = AutoTokenizer.from_pretrained(start_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    dtype = torch.bfloat16 if (real and bf16) else torch.float32
    model = AutoModelForCausalLM.from_pretrained(start_dir, dtype=dtype)
    train = source.splits.train
    dataset = Dataset.from_dict(
        {"prompt": [p.prompt for p in train], "answer": [p.answer for p in train]}
    )
    batch = rl.prompts_per_step * rl.group_size
    with tempfile.TemporaryDirectory(prefix="rl_grpo_") as scratch:
        config = GRPOConfig(
            output_dir=scratch,
            use_cpu=not cuda,
            bf16=real and bf16,
            gradient_checkpointing=False,
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
            reward_funcs=reward_function(source.reward),
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
    if real:
        tokenizer.save_pretrained(out_dir)
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
        settings = load_settings(Path(job["task_dir"]))
        train_candidate(
            program,
            Path(job["start_dir"]),
            problem_source(settings),
            RLSettings(**job["rl"]),
            int(job["seed"]),
            Path(job["out_dir"]),
            real=settings.real_model.enabled,
        )
    except BaseException as exc:  # noqa: BLE001 - report anything, SystemExit included
        reason = str(exc) if isinstance(exc, ContractError) else f"{type(exc).__name__}: {exc}"
        Path(job["out_dir"]).mkdir(parents=True, exist_ok=True)
        error_path.write_text(reason.splitlines()[0][:500] if reason else repr(exc), "utf-8")
        import traceback

        traceback.print_exc(file=sys.stderr)
        return 1
    return 0
