"""linear_attention domain: the static checks reject cheating mixers, with the reason, fast;
the CPU primitives match fla's reference recurrences; the corpus is deterministic."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.domains
torch = pytest.importorskip("torch", reason="the linear_attention domain needs torch")
pytest.importorskip("fla", reason="the linear_attention domain needs flash-linear-attention")

DOMAIN = Path(__file__).resolve().parents[2] / "domains" / "linear_attention"
sys.path.insert(0, str(DOMAIN))

import corpus  # noqa: E402
import evaluate  # noqa: E402
import fla_ref  # noqa: E402

HEADER = "import torch\nimport torch.nn.functional as F\nfrom torch import nn\n\n"

CHEATS = {
    "softmax": (
        """
class TokenMixer(nn.Module):
    def __init__(self, d_model, n_heads):
        super().__init__()
        self.h = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
    def forward(self, x):
        b, t, d = x.shape
        q, k, v = (m.reshape(b, t, self.h, -1).transpose(1, 2) for m in self.qkv(x).chunk(3, -1))
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return o.transpose(1, 2).reshape(b, t, d)
""",
        "not sub-quadratic",
    ),
    "bidirectional": (
        """
class TokenMixer(nn.Module):
    def __init__(self, d_model, n_heads):
        super().__init__()
        self.proj = nn.Linear(d_model, d_model)
    def forward(self, x):
        return self.proj(x - x.mean(1, keepdim=True))
""",
        "not causal",
    ),
    "peek": (
        """
class TokenMixer(nn.Module):
    def __init__(self, d_model, n_heads):
        super().__init__()
        self.conv = nn.Conv1d(d_model, d_model, 3, padding=1, groups=d_model)
    def forward(self, x):
        return self.conv(x.transpose(1, 2)).transpose(1, 2)
""",
        "not causal",
    ),
    "batchnorm": (
        """
class TokenMixer(nn.Module):
    def __init__(self, d_model, n_heads):
        super().__init__()
        self.norm = nn.BatchNorm1d(d_model)
        self.proj = nn.Linear(d_model, d_model)
    def forward(self, x):
        return self.proj(self.norm(x.transpose(1, 2)).transpose(1, 2)).cumsum(1)
""",
        "not causal",  # its statistics span the whole sequence: train mode leaks the future
    ),
    "batch_leak": (
        """
class TokenMixer(nn.Module):
    def __init__(self, d_model, n_heads):
        super().__init__()
        self.proj = nn.Linear(d_model, d_model)
    def forward(self, x):
        return self.proj(x - x.mean(0, keepdim=True))
""",
        "not batch-independent",
    ),
    "elementwise_quadratic": (
        """
class TokenMixer(nn.Module):
    def __init__(self, d_model, n_heads):
        super().__init__()
        self.proj = nn.Linear(d_model, d_model)
    def forward(self, x):
        t = x.shape[1]
        pos = torch.arange(t, dtype=x.dtype)
        decay = torch.exp(-(pos[:, None] - pos[None, :]).clamp(min=0)).tril()
        return self.proj((decay[None, :, :, None] * x[:, None, :, :]).sum(2))
""",
        "not sub-quadratic: elements",
    ),
    "stateful": (
        """
class TokenMixer(nn.Module):
    def __init__(self, d_model, n_heads):
        super().__init__()
        self.proj = nn.Linear(d_model, d_model)
        self.calls = 0
    def forward(self, x):
        self.calls += 1
        return self.proj(x) * self.calls
""",
        "not stateless",
    ),
    "too_big": (
        """
class TokenMixer(nn.Module):
    def __init__(self, d_model, n_heads):
        super().__init__()
        self.proj = nn.Sequential(*[nn.Linear(d_model, d_model) for _ in range(8)])
    def forward(self, x):
        return self.proj(x)
""",
        "too many parameters",
    ),
    "wrong_shape": (
        """
class TokenMixer(nn.Module):
    def __init__(self, d_model, n_heads):
        super().__init__()
    def forward(self, x):
        return x[:, :, :1]
""",
        "expected the same shape",
    ),
    "no_mixer": ("X = 1\n", "defines no class TokenMixer"),
    "exits": ("import sys\nsys.exit(3)\n", "SystemExit"),
}


def settings() -> dict:
    return evaluate.load_settings(use_cuda=False)


@pytest.mark.parametrize("name", sorted(CHEATS))
def test_cheating_mixer_is_rejected_with_its_reason(tmp_path, name):
    code, reason = CHEATS[name]
    program = tmp_path / "program.py"
    program.write_text(HEADER + code, encoding="utf-8")
    started = time.monotonic()
    with pytest.raises((evaluate.EvalError, SystemExit)) as info:
        evaluate.child_check(str(program), settings())
    if name == "exits":
        assert isinstance(info.value, SystemExit)
        return
    assert reason in str(info.value)
    assert time.monotonic() - started < 20


def test_sdpa_flops_are_counted_on_cpu(tmp_path):
    import checks

    namespace: dict = {}
    exec(HEADER + CHEATS["softmax"][0], namespace)  # noqa: S102 - our own test program
    model = namespace["TokenMixer"](128, 4)
    small, large = (checks.measure_cost(model, 128, t)["flops"] for t in (256, 1024))
    assert large / small > 4**1.5  # the T^2 attention term is seen, not 0 FLOPs


def test_initial_deltanet_passes_with_linear_growth(tmp_path):
    metrics = evaluate.child_check(str(DOMAIN / "initial.py"), settings())
    assert metrics["param_ratio"] == 1.0
    assert metrics["growth_flops"] < 1.1 and metrics["growth_largest"] < 1.1


@pytest.mark.slow
def test_check_stage_through_the_cli_reports_reason(tmp_path, monkeypatch):
    program = tmp_path / "program.py"
    program.write_text(HEADER + CHEATS["peek"][0], encoding="utf-8")
    monkeypatch.setenv("ASI_EVOLVE_RESULTS", str(tmp_path / "results.json"))
    monkeypatch.setenv("ASI_EVOLVE_TASK_DIR", str(DOMAIN))
    assert evaluate.main(["--stage", "check", str(program)]) == 0
    import json

    result = json.loads((tmp_path / "results.json").read_text())
    assert result["valid"] is False
    assert result["error"].startswith("check: not causal: changing inputs from position")


def test_delta_rule_matches_fla_recurrence():
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 2, 3, 70, 16).unbind(0)
    k = torch.nn.functional.normalize(k, dim=-1)
    beta = torch.rand(2, 3, 70)
    ours = fla_ref.delta_rule_chunkwise(q, k, v, beta, chunk_size=16)
    ref, _ = fla_ref.load_naive("delta_rule").delta_rule_recurrence(q, k, v, beta)
    assert torch.allclose(ours, ref, atol=1e-5)
    g = -torch.rand(2, 3, 70) * 0.5
    gated = fla_ref.gated_delta_rule_chunkwise(q, k, v, beta, g, chunk_size=16)
    naive = fla_ref.load_naive("gated_delta_rule").naive_recurrent_gated_delta_rule
    ref, _ = naive(*[t.transpose(1, 2) for t in (q, k, v, beta, g)])
    assert torch.allclose(gated, ref.transpose(1, 2), atol=1e-5)


def test_corpus_build_is_deterministic_and_split_by_hash(tmp_path, monkeypatch):
    """On a small fake standard library: same bytes twice; a new module moves no document."""
    lib = tmp_path / "lib"
    lib.mkdir()
    for n in range(30):
        body = f"Module {n}. " + "Some prose about the module. " * 10
        (lib / f"mod{n:02d}.py").write_text(f'"""{body}"""\n\ndef f():\n    """{body}f"""\n')
    (lib / "tests").mkdir()
    (lib / "tests" / "skipped.py").write_text('"""' + "test prose " * 40 + '"""\n')
    monkeypatch.setattr(corpus.sysconfig, "get_paths", lambda: {"stdlib": str(lib)})
    first = corpus.build(valid_percent=30)
    assert first == corpus.build(valid_percent=30)
    assert b"test prose" not in first["train"] + first["valid"]
    assert first["valid"] and b"Module 7. " in first["train"] + first["valid"]
    (lib / "mod99.py").write_text('"""' + "A new module. " * 30 + '"""\n')
    second = corpus.build(valid_percent=30)
    for split in ("train", "valid"):
        old = set(first[split].split(b"\n\n"))
        assert old <= set(second[split].split(b"\n\n"))  # nothing moved between splits


@pytest.mark.slow
def test_real_corpus_is_cached_atomically(tmp_path, monkeypatch):
    monkeypatch.setenv("ASI_EVOLVE_CACHE", str(tmp_path))
    loaded = corpus.load()  # builds the real corpus into an empty cache
    assert not list(tmp_path.rglob("*.tmp*"))  # written atomically, nothing left behind
    assert len(loaded["train"]) > 1_000_000 and 40_000 < len(loaded["valid"]) < 200_000
    again = corpus.load()  # now served from the cache files
    assert loaded["valid"].tobytes() == again["valid"].tobytes()


def test_cognition_seed_has_40_sourced_items():
    from cognition.importer import load_file

    drafts = load_file(DOMAIN / "cognition.yaml", "yaml")
    assert len(drafts) >= 40
    assert all(d.source and d.content and d.title for d in drafts)
    assert any("multi-path" in d.title.lower() for d in drafts)  # the paper's finding
