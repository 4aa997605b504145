"""The verifiable-reward task: short integer addition, a char-level tokenizer, exact-match reward.

No tokenizer or data set can be downloaded, so both are built here from a seed. Every
``a+b=`` pair with ``0 <= a, b <= max_operand`` is shuffled once with the data seed and cut
into three disjoint splits: *test* (the held-out problems the score is measured on), *val*
(used only to stop the supervised warm-up at a partial accuracy) and *train* (supervised
warm-up examples and GRPO prompts). The candidate never sees the test answers: the score is
computed by the evaluator's own process from the trained weights.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass

import torch

PAD, BOS, EOS = "<pad>", "<s>", "</s>"
CHARS = "0123456789+-*= "
ANSWER_PATTERN = re.compile(r"-?\d+")


@dataclass(frozen=True)
class Problem:
    """One arithmetic question with its exact answer (both as text)."""

    prompt: str
    answer: str


@dataclass(frozen=True)
class Splits:
    """The three disjoint problem sets; see the module docstring for their roles."""

    train: list[Problem]
    val: list[Problem]
    test: list[Problem]


def build_tokenizer():
    """A char-level fast tokenizer (one token per character, BOS prepended, no merges).

    Wrapped in ``PreTrainedTokenizerFast`` so that trl's GRPOTrainer can tokenize prompts
    and decode completions with it exactly as it would a hub tokenizer.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {PAD: 0, BOS: 1, EOS: 2}
    for char in CHARS:
        vocab[char] = len(vocab)
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=PAD))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    core.decoder = decoders.Fuse()
    core.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", special_tokens=[(BOS, vocab[BOS])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token=BOS, eos_token=EOS, pad_token=PAD
    )


def make_splits(max_operand: int, n_test: int, n_val: int, seed: int) -> Splits:
    """All addition pairs up to ``max_operand``, shuffled by ``seed``, cut into splits."""
    pairs = [(a, b) for a in range(max_operand + 1) for b in range(max_operand + 1)]
    if n_test + n_val >= len(pairs):
        raise ValueError(
            f"n_test + n_val = {n_test + n_val} leaves no training pairs "
            f"(only {len(pairs)} pairs with max_operand={max_operand})"
        )
    random.Random(seed).shuffle(pairs)
    problems = [Problem(prompt=f"{a}+{b}=", answer=str(a + b)) for a, b in pairs]
    return Splits(
        test=problems[:n_test],
        val=problems[n_test : n_test + n_val],
        train=problems[n_test + n_val :],
    )


def extract_answer(completion: str) -> str | None:
    """The first integer in a completion, or None when it has none."""
    match = ANSWER_PATTERN.search(completion)
    return match.group(0) if match else None


def exact_reward(completion: str, answer: str) -> float:
    """1.0 when the completion is exactly the answer (surrounding spaces ignored), else 0.0.

    Exact, not "contains": a completion like ``"1234"`` must not earn the reward for
    answer ``"12"``, or the policy learns to babble digits.
    """
    return 1.0 if completion.strip() == answer else 0.0


def number_reward(completion: str, answer: str) -> float:
    """1.0 when the last number in the completion equals the answer's last number, else 0.0.

    For real math sets, whose answers come with working (GSM8K: ``... #### 42``) and whose
    models write working before the result; thousands separators are ignored.
    """
    got = re.findall(r"-?\d+(?:\.\d+)?", completion.replace(",", ""))
    want = re.findall(r"-?\d+(?:\.\d+)?", answer.replace(",", ""))
    if not got or not want:
        return 0.0
    try:
        return 1.0 if abs(float(got[-1]) - float(want[-1])) < 1e-6 else 0.0
    except ValueError:
        return 0.0


@torch.no_grad()
def greedy_accuracy(
    model,
    tokenizer,
    problems: list[Problem],
    max_new_tokens: int,
    batch_size: int = 256,
    reward: Callable[[str, str], float] = exact_reward,
) -> float:
    """Mean reward of the greedy completions (exact match unless told otherwise)."""
    if not problems:
        return 0.0
    was_training = model.training
    model.eval()
    tokenizer.padding_side = "left"
    correct = 0
    for start in range(0, len(problems), batch_size):
        chunk = problems[start : start + batch_size]
        encoded = tokenizer([p.prompt for p in chunk], return_tensors="pt", padding=True)
        encoded = {k: v.to(model.device) for k, v in encoded.items()}
        output = model.generate(
            **encoded,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        texts = tokenizer.batch_decode(
            output[:, encoded["input_ids"].shape[1] :], skip_special_tokens=True
        )
        correct += sum(reward(t, p.answer) for t, p in zip(texts, chunk, strict=True))
    if was_training:
        model.train()
    return correct / len(problems)
