"""Verify-stage check for finalists: does a tiny LM trained on the cleaned text do better?

The question curation really asks is downstream: is the cleaned corpus better training
data? Here a tiny byte-level GRU is trained for a fixed number of steps on the cleaner's
output of the held-out corpus, and its bits per byte are measured on clean reference
text it never saw (the ``lm`` part). The same model trained on the raw held-out input
(the no-op, cached per settings) is the bar: a cleaner whose model is worse by more than
``neural.margin`` bits per byte fails verification.

This is only a check, never the score: a small LM cannot tell an over-aggressive cleaner
that keeps only easy text from a good one, while the word F1 can. It costs tens of
seconds on a CPU, so it runs for promoted nodes only. Seeds and thread count are fixed,
so the same input gives the same number on the same machine.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import curation_corpus

DEFAULTS = {
    "enabled": False,
    "steps": 300,
    "batch": 32,
    "window": 64,
    "hidden": 128,
    "lr": 0.003,
    "eval_chars": 20000,
    "margin": 0.1,
    "seed": 0,
}


def settings_of(settings: dict[str, Any]) -> dict[str, Any]:
    neural = {**DEFAULTS, **(settings.get("neural") or {})}
    unknown = set(neural) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown neural settings: {', '.join(sorted(unknown))}")
    return neural


def train_and_measure(train_text: str, eval_text: str, cfg: dict[str, Any]) -> float:
    """Bits per byte on ``eval_text`` of a GRU trained on ``train_text`` for cfg steps."""
    import torch

    torch.manual_seed(int(cfg["seed"]))
    torch.set_num_threads(1)
    data = torch.tensor(list(train_text.encode("utf-8")), dtype=torch.long)
    window = int(cfg["window"])
    if len(data) <= window + 1:
        return float("inf")
    model = _Model(int(cfg["hidden"]))
    opt = torch.optim.Adam(model.parameters(), lr=float(cfg["lr"]))
    gen = torch.Generator().manual_seed(int(cfg["seed"]))
    loss_fn = torch.nn.CrossEntropyLoss()
    for _ in range(int(cfg["steps"])):
        starts = torch.randint(0, len(data) - window - 1, (int(cfg["batch"]),), generator=gen)
        batch = torch.stack([data[s : s + window + 1] for s in starts.tolist()])
        logits = model(batch[:, :-1])
        loss = loss_fn(logits.reshape(-1, 256), batch[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    evald = torch.tensor(list(eval_text.encode("utf-8")), dtype=torch.long)
    with torch.no_grad():
        logits = model(evald[None, :-1])
        nats = loss_fn(logits.reshape(-1, 256), evald[1:])
    return float(nats) / 0.6931471805599453


def check(
    program: str,
    held: Any,
    settings: dict[str, Any],
    result: dict[str, Any],
    outputs: list[str | None],
) -> str:
    """Add the neural metrics to ``result``; an error reason when the cleaner fails it."""
    cfg = settings_of(settings)
    eval_text = curation_corpus.lm_text(settings)[-int(cfg["eval_chars"]) :]
    cleaned = "\n\n".join(o for o in outputs if o)
    bpb = train_and_measure(cleaned, eval_text, cfg)
    noop = _noop_bpb(list(held["text"]), eval_text, cfg)
    result["metrics"]["heldout_neural_bpb"] = round(bpb, 4)
    result["metrics"]["heldout_neural_bpb_noop"] = round(noop, 4)
    if bpb > noop + float(cfg["margin"]):
        return (
            f"a tiny LM trained on the cleaned held-out corpus reads clean text worse than "
            f"one trained on the raw corpus ({bpb:.3f} vs {noop:.3f} bits/byte, margin "
            f"{cfg['margin']})"
        )
    return ""


def _noop_bpb(texts: list[str], eval_text: str, cfg: dict[str, Any]) -> float:
    """The raw corpus's number, computed once per (corpus, settings) and cached."""
    raw = "\n\n".join(texts)
    key = hashlib.sha256(json.dumps([cfg, raw, eval_text]).encode()).hexdigest()[:16]
    path = curation_corpus.cache_root() / f"neural-noop-{key}.json"
    if path.is_file():
        return float(json.loads(path.read_text())["bpb"])
    value = train_and_measure(raw, eval_text, cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps({"bpb": value}))
    tmp.replace(path)
    return value


def _model_class() -> type:
    import torch

    class Model(torch.nn.Module):
        """Byte embedding -> one GRU layer -> next-byte logits."""

        def __init__(self, hidden: int) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(256, 32)
            self.rnn = torch.nn.GRU(32, hidden, batch_first=True)
            self.out = torch.nn.Linear(hidden, 256)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h, _ = self.rnn(self.embed(x))
            return self.out(h)

    return Model


def _Model(hidden: int) -> Any:  # noqa: N802 - reads like the class it builds
    return _model_class()(hidden)
