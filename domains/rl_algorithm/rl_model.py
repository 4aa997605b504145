"""The tiny char-level Llama and its cached supervised warm start.

GRPO only improves a policy that already solves some problems (a group where every
completion is wrong has zero advantage everywhere), so every candidate starts from the same
model, trained by plain supervised learning until its greedy accuracy on the validation
split first reaches ``sft_target_accuracy``. Building it takes tens of seconds, so it is
done once per distinct settings and cached in ``<cache>/<key>/`` (``key`` hashes the
settings), built in a temporary directory and renamed into place, under a file lock, so
parallel evaluators neither duplicate the work nor read a half-written model.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import random
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch
from rl_data import Problem, build_tokenizer, greedy_accuracy, make_splits
from rl_settings import WarmStartSettings

log = logging.getLogger(__name__)


def build_model(settings: WarmStartSettings, vocab_size: int):
    """A freshly initialised tiny LlamaForCausalLM (eager attention, float32)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=settings.hidden_size,
        intermediate_size=settings.intermediate_size,
        num_hidden_layers=settings.num_layers,
        num_attention_heads=settings.num_heads,
        num_key_value_heads=settings.num_heads,
        max_position_embeddings=64,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=True,
        attn_implementation="eager",
    )
    torch.manual_seed(settings.init_seed)
    return LlamaForCausalLM(config)


def _sft_batch(tokenizer, problems: list[Problem]) -> dict[str, torch.Tensor]:
    """Right-padded ``<s>prompt answer</s>`` rows; labels only on answer and EOS tokens."""
    rows, labels = [], []
    for p in problems:
        prompt_ids = tokenizer(p.prompt)["input_ids"]
        answer_ids = tokenizer(p.answer, add_special_tokens=False)["input_ids"]
        ids = prompt_ids + answer_ids + [tokenizer.eos_token_id]
        rows.append(ids)
        labels.append([-100] * len(prompt_ids) + answer_ids + [tokenizer.eos_token_id])
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    label_ids = torch.tensor([r + [-100] * (width - len(r)) for r in labels])
    attention = torch.arange(width)[None, :] < torch.tensor([len(r) for r in rows])[:, None]
    return {"input_ids": input_ids, "attention_mask": attention.long(), "labels": label_ids}


def warm_start(settings: WarmStartSettings, model, tokenizer) -> dict[str, float]:
    """Supervised warm-up in place; returns how far it went."""
    splits = make_splits(settings.max_operand, settings.n_test, settings.n_val, settings.data_seed)
    rng = random.Random(settings.init_seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.sft_lr, weight_decay=0.0)
    model.train()
    val_accuracy, step = 0.0, 0
    start = time.monotonic()
    for step in range(1, settings.sft_max_steps + 1):
        batch = _sft_batch(tokenizer, rng.sample(splits.train, settings.sft_batch_size))
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % settings.sft_eval_every == 0:
            val_accuracy = greedy_accuracy(model, tokenizer, splits.val, settings.max_new_tokens)
            if val_accuracy >= settings.sft_target_accuracy:
                break
    model.eval()
    return {
        "sft_steps": step,
        "sft_val_accuracy": val_accuracy,
        "sft_seconds": round(time.monotonic() - start, 2),
    }


def cache_root() -> Path:
    """``$ASI_EVOLVE_CACHE/rl_algorithm`` or ``~/.cache/asi-evolve/rl_algorithm``."""
    base = os.environ.get("ASI_EVOLVE_CACHE")
    root = Path(base) if base else Path.home() / ".cache" / "asi-evolve"
    return root / "rl_algorithm"


def cached_warm_start(settings: WarmStartSettings) -> Path:
    """The directory of the warm-start model and tokenizer, built on first use."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    final = root / settings.key()
    if (final / "warm_start.json").is_file():
        return final
    with open(root / f"{settings.key()}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / "warm_start.json").is_file():  # another evaluator built it meanwhile
            return final
        tmp = Path(tempfile.mkdtemp(prefix=f".{settings.key()}.", dir=root))
        try:
            tokenizer = build_tokenizer()
            model = build_model(settings, len(tokenizer))
            info = warm_start(settings, model, tokenizer)
            splits = make_splits(
                settings.max_operand, settings.n_test, settings.n_val, settings.data_seed
            )
            info["test_accuracy"] = greedy_accuracy(
                model, tokenizer, splits.test, settings.max_new_tokens
            )
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            record = {"settings": asdict(settings), **info}
            (tmp / "warm_start.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
            if final.exists():  # a stale, incomplete directory from a killed build
                shutil.rmtree(final)
            os.rename(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        log.info("warm start built in %s: %s", final, info)
    return final


def load_warm_start(directory: Path):
    """(model, tokenizer) from a warm-start directory, model in eval mode."""
    from transformers import AutoTokenizer, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = LlamaForCausalLM.from_pretrained(directory, dtype=torch.float32)
    model.eval()
    return model, tokenizer


def warm_start_accuracy(directory: Path, settings: WarmStartSettings) -> float:
    """Held-out accuracy of the warm start itself (measured once, when it was built)."""
    del settings  # the record in the directory was written for exactly these settings
    record = json.loads((directory / "warm_start.json").read_text(encoding="utf-8"))
    return float(record["test_accuracy"])


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_policy(directory: Path):  # noqa: ANN201 - (transformers model, tokenizer)
    """(model, tokenizer) of a real model directory, on the GPU when there is one."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=dtype).to(device())
    tokenizer = AutoTokenizer.from_pretrained(directory)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    return model, tokenizer
