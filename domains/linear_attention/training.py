"""The two proxy experiments a mixer is scored on: a byte-level LM and MQAR recall.

Both wrap the candidate's ``TokenMixer`` in the same pre-norm residual stack (RMSNorm,
mixer, RMSNorm, GELU MLP), so the mixer is the only thing that differs between
candidates. Everything random (initialisation, batches, evaluation data) comes from the
given seed, and evaluation data from a separate fixed stream, so one candidate scored
twice on one thread gets the same numbers.

- LM: next-byte prediction on :mod:`corpus`; metric: validation bits per byte on fixed,
  evenly spaced windows of the validation split.
- MQAR (multi-query associative recall, Arora et al. 2023, "Zoology"): a sequence lists
  ``pairs`` key-value pairs, then queries every key again in shuffled order; the model
  must output each key's value. Metric: accuracy on a fixed held-out set. It measures
  what small-state recurrent mixers are worst at: exact recall from context.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MixerFactory = Callable[[int, int], nn.Module]


class DivergedError(RuntimeError):
    """Training produced a non-finite loss."""


class RMSNorm(nn.Module):
    def __init__(self, width: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps, self.weight = eps, nn.Parameter(torch.ones(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class Block(nn.Module):
    def __init__(self, make_mixer: MixerFactory, width: int, heads: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = RMSNorm(width), RMSNorm(width)
        self.mixer = make_mixer(width, heads)
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mixer(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class SequenceModel(nn.Module):
    """Token embedding, ``layers`` blocks around the mixer, final norm, output head."""

    def __init__(
        self, make_mixer: MixerFactory, vocab: int, width: int, heads: int, layers: int
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.blocks = nn.ModuleList(Block(make_mixer, width, heads) for _ in range(layers))
        self.norm = RMSNorm(width)
        self.head = nn.Linear(width, vocab, bias=False)
        nn.init.normal_(self.embed.weight, std=0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))

    def mixer_parameters(self) -> int:
        return sum(p.numel() for b in self.blocks for p in b.mixer.parameters())


@dataclass(frozen=True)
class TrainConfig:
    """One training run.

    width / heads / layers: model size. seq_len / batch / steps: data per run.
    lr: peak AdamW learning rate (linear warm-up over ``warmup`` of the steps, cosine to
    10%). weight_decay, clip: AdamW decay, gradient-norm clip. seed: everything random.
    eval_batches: evaluation size (LM: windows / batch; MQAR: batches of ``batch``).
    """

    width: int
    heads: int
    layers: int
    seq_len: int
    batch: int
    steps: int
    lr: float
    seed: int
    eval_batches: int = 8
    weight_decay: float = 0.1
    clip: float = 1.0
    warmup: float = 0.1


def _lr_factor(step: int, cfg: TrainConfig) -> float:
    warm = max(1, int(cfg.warmup * cfg.steps))
    if step < warm:
        return (step + 1) / warm
    progress = (step - warm) / max(1, cfg.steps - warm)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def _train(
    model: nn.Module,
    cfg: TrainConfig,
    next_batch: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
) -> float:
    """Train in place; returns seconds per step (after the first, which warms caches)."""
    opt = torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=cfg.weight_decay
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, cfg))
    model.train()
    start = None
    for step in range(cfg.steps):
        if step == 1:
            start = time.perf_counter()
        inputs, targets = (t.to(device) for t in next_batch(step))
        logits = model(inputs)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
        if not torch.isfinite(loss):
            raise DivergedError(f"loss became {loss.item()} at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        opt.step()
        sched.step()
    if start is None or cfg.steps < 2:
        return 0.0
    return (time.perf_counter() - start) / (cfg.steps - 1)


def train_lm(
    make_mixer: MixerFactory,
    cfg: TrainConfig,
    train: np.ndarray,
    valid: np.ndarray,
    device: torch.device,
) -> dict[str, Any]:
    """Train a byte LM; {"bpb", "step_time", "params", "mixer_params"}."""
    torch.manual_seed(cfg.seed)
    model = SequenceModel(make_mixer, 256, cfg.width, cfg.heads, cfg.layers).to(device)
    rng = np.random.default_rng(cfg.seed)
    data = torch.from_numpy(train.astype(np.int64))
    span = cfg.seq_len + 1

    def next_batch(_: int) -> tuple[torch.Tensor, torch.Tensor]:
        starts = rng.integers(0, len(data) - span, size=cfg.batch)
        rows = torch.stack([data[s : s + span] for s in starts])
        return rows[:, :-1], rows[:, 1:]

    step_time = _train(model, cfg, next_batch, device)
    model.eval()
    windows = cfg.eval_batches * cfg.batch
    starts = np.linspace(0, len(valid) - span - 1, windows).astype(np.int64)
    vdata = torch.from_numpy(valid.astype(np.int64))
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, windows, cfg.batch):
            rows = torch.stack([vdata[s : s + span] for s in starts[i : i + cfg.batch]])
            rows = rows.to(device)
            logits = model(rows[:, :-1]).float()
            loss = F.cross_entropy(logits.flatten(0, 1), rows[:, 1:].flatten(), reduction="sum")
            total, count = total + loss.item(), count + rows[:, 1:].numel()
    bpb = total / count / math.log(2)
    if not math.isfinite(bpb):
        raise DivergedError(f"validation loss is {bpb}")
    return {
        "bpb": bpb,
        "step_time": step_time,
        "params": sum(p.numel() for p in model.parameters()),
        "mixer_params": model.mixer_parameters(),
    }


def mqar_batch(
    rng: np.random.Generator, batch: int, pairs: int, keys: int, values: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs [batch, 4*pairs-1] and targets (-100 except where a value must be recalled).

    Tokens 0..keys-1 are keys, keys..keys+values-1 values. The sequence is
    ``k1 v1 ... kP vP`` followed by ``kπ1 vπ1 ... kπP vπP`` (the same keys, shuffled);
    the targets are the values of the second half, predicted from the key before them.
    """
    seqs = np.empty((batch, 4 * pairs), dtype=np.int64)
    for row in range(batch):
        k = rng.choice(keys, size=pairs, replace=False)
        v = keys + rng.integers(0, values, size=pairs)
        order = rng.permutation(pairs)
        seqs[row, 0 : 2 * pairs : 2], seqs[row, 1 : 2 * pairs : 2] = k, v
        seqs[row, 2 * pairs :: 2], seqs[row, 2 * pairs + 1 :: 2] = k[order], v[order]
    seqs_t = torch.from_numpy(seqs)
    targets = torch.full_like(seqs_t[:, 1:], -100)
    targets[:, 2 * pairs :: 2] = seqs_t[:, 2 * pairs + 1 :: 2]
    return seqs_t[:, :-1], targets


def train_mqar(
    make_mixer: MixerFactory,
    cfg: TrainConfig,
    pairs: int,
    keys: int,
    values: int,
    device: torch.device,
) -> dict[str, Any]:
    """Train on fresh MQAR batches; {"mqar", "mqar_step_time"} (accuracy on a fixed set)."""
    torch.manual_seed(cfg.seed)
    model = SequenceModel(make_mixer, keys + values, cfg.width, cfg.heads, cfg.layers)
    model = model.to(device)
    rng = np.random.default_rng(cfg.seed)
    step_time = _train(
        model, cfg, lambda _: mqar_batch(rng, cfg.batch, pairs, keys, values), device
    )
    model.eval()
    test_rng = np.random.default_rng(10_000 + 7)  # the same test set for every candidate
    correct = total = 0
    with torch.no_grad():
        for _ in range(cfg.eval_batches):
            inputs, targets = mqar_batch(test_rng, cfg.batch, pairs, keys, values)
            pred = model(inputs.to(device)).argmax(-1).cpu()
            mask = targets != -100
            correct += int((pred[mask] == targets[mask]).sum())
            total += int(mask.sum())
    return {"mqar": correct / total, "mqar_step_time": step_time}
