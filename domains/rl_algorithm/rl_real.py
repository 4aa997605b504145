"""Where the problems, the reward and the starting policy come from: tiny setup or real model.

By default the task is the tiny synthetic one (``rl_data`` + ``rl_model``). With
``settings.real_model.model_path`` and ``dataset_path`` set, the same harness and candidate
contract run a real small causal LM from a local directory on a local ``datasets`` math set,
scored by the last number of the greedy answer - the paper's setting, for a machine with a
GPU (trl then trains on the GPU with bf16 where supported; nothing is downloaded).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from rl_data import Problem, Splits, exact_reward, make_splits, number_reward
from rl_settings import RealModelSettings, TaskSettings


@dataclass(frozen=True)
class ProblemSource:
    """What one evaluation trains and scores on.

    splits: train (GRPO prompts) and test (the score) problems.
    reward: (completion, answer) -> reward, used for training and for scoring.
    max_new_tokens, eval_batch_size: greedy decoding when scoring.
    """

    splits: Splits
    reward: Callable[[str, str], float]
    max_new_tokens: int
    eval_batch_size: int


def problem_source(settings: TaskSettings) -> ProblemSource:
    real = settings.real_model
    if real.enabled:
        return ProblemSource(
            load_math_problems(real), number_reward, real.max_new_tokens, real.eval_batch_size
        )
    ws = settings.warm_start
    return ProblemSource(
        make_splits(ws.max_operand, ws.n_test, ws.n_val, ws.data_seed),
        exact_reward,
        ws.max_new_tokens,
        256,
    )


def load_math_problems(real: RealModelSettings) -> Splits:
    """Train/test problems from a local ``datasets`` directory (see RealModelSettings)."""
    from datasets import Dataset, DatasetDict, load_from_disk

    data = load_from_disk(real.dataset_path)
    if isinstance(data, DatasetDict):
        if "train" not in data:
            raise ValueError(f"{real.dataset_path} has no 'train' split")
        train = data["train"]
        test = data.get("test")
    elif isinstance(data, Dataset):
        train, test = data, None
    else:
        raise ValueError(f"{real.dataset_path} is not a datasets directory")
    if test is None:
        test = train.select(range(min(real.n_test, len(train))))
        train = train.select(range(len(test), len(train)))
    else:
        test = test.select(range(min(real.n_test, len(test))))
    for column in (real.question_field, real.answer_field):
        if column not in train.column_names:
            raise ValueError(f"{real.dataset_path} has no column {column!r}")

    def convert(rows) -> list[Problem]:
        return [
            Problem(
                prompt=real.prompt_template.format(question=row[real.question_field]),
                answer=str(row[real.answer_field]),
            )
            for row in rows
        ]

    return Splits(train=convert(train), val=[], test=convert(test))


def starting_model_dir(settings: TaskSettings) -> Path:
    """The policy every candidate starts from: the real model, or the cached warm start."""
    if settings.real_model.enabled:
        path = Path(settings.real_model.model_path)
        if not (path / "config.json").is_file():
            raise ValueError(f"real_model.model_path {path} has no config.json")
        return path
    from rl_model import cached_warm_start

    return cached_warm_start(settings.warm_start)


def starting_accuracy(settings: TaskSettings, start_dir: Path) -> float:
    """Held-out accuracy of the starting policy (cached: measured once per setting)."""
    if not settings.real_model.enabled:
        from rl_model import warm_start_accuracy

        return warm_start_accuracy(start_dir, settings.warm_start)
    from rl_model import cache_root, load_policy

    key_text = json.dumps(asdict(settings.real_model), sort_keys=True)
    key = hashlib.sha256(key_text.encode()).hexdigest()[:16]
    record = cache_root() / f"real_baseline_{key}.json"
    if record.is_file():
        return float(json.loads(record.read_text(encoding="utf-8"))["accuracy"])
    model, tokenizer = load_policy(start_dir)
    accuracy = greedy_score(model, tokenizer, problem_source(settings))
    record.parent.mkdir(parents=True, exist_ok=True)
    tmp = record.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"accuracy": accuracy, **asdict(settings.real_model)}), "utf-8")
    os.replace(tmp, record)
    return accuracy


def greedy_score(model, tokenizer, source: ProblemSource) -> float:
    from rl_data import greedy_accuracy

    return greedy_accuracy(
        model,
        tokenizer,
        source.splits.test,
        source.max_new_tokens,
        batch_size=source.eval_batch_size,
        reward=source.reward,
    )
