"""linear_attention domain: the GPU path without a GPU (issue 24).

On CUDA, ``fla_ref`` calls fla's Triton kernels ``chunk_delta_rule`` and
``chunk_gated_delta_rule``; on CPU it runs PyTorch (our WY-form delta rule, fla's naive gated
delta rule). Triton's CPU interpreter (``TRITON_INTERPRET=1``, read when triton is imported, so
the kernels run in a child process) executes the same kernels on CPU tensors, forward and
backward, and they must agree with the PyTorch path:

- float32, forward and every input gradient: max |kernel - PyTorch| <= 1e-4 + 1e-4 * max |PyTorch|
  (measured with triton 3.9.0 / fla 0.6.0: ~1e-6 forward, ~1e-5 gradients);
- float16, forward, through fla's public ``chunk_delta_rule``: <= 1e-2 (measured ~1.2e-3 on
  outputs of magnitude ~2).

What the interpreter cannot check: bfloat16, the dtype the CUDA path uses. The interpreter
stores bfloat16 as uint16 and multiplies the bit patterns (documented: "It does not support
operations on bfloat16"; triton-lang/triton#11584), so fla's kernels give ~1e9 in bf16 there.
Float32 runs the same kernels through ``ChunkDeltaRuleFunction`` directly, because the public
``chunk_delta_rule`` asserts that float32 is not supported (a speed policy; the maths is the
same). Two interpreter shims are installed in the child, neither touching fla's kernel bodies:

1. Triton's autotuner benchmarks every config through the GPU driver ("0 active drivers ([]).
   There should only be one.") - keep the first config (configs change speed, not results);
2. the interpreter runs ``for i in range(n)`` with Python ints where compiled Triton gives int32
   scalar tensors, so fla's ``i_t.to(tl.int64)`` fails ("'int' object has no attribute 'to'")
   - rebind the loop variable as an int32 scalar tensor, as compiled Triton does.

Skipped with the reason when triton is not importable or the interpreter cannot run the
kernels (an ``InterpreterError``, no shim hook in this triton); a numerical mismatch fails.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.domains, pytest.mark.slow]
pytest.importorskip("torch", reason="the linear_attention domain needs torch")
pytest.importorskip("fla", reason="the linear_attention domain needs flash-linear-attention")
if importlib.util.find_spec("triton") is None:
    pytest.skip(
        "triton is not importable: fla's chunk kernels need it (pip install 'triton>=3.3'); "
        "the CPU interpreter then runs them",
        allow_module_level=True,
    )

DOMAIN = Path(__file__).resolve().parents[2] / "domains" / "linear_attention"

FP32_TOL = 1e-4
FP16_TOL = 1e-2

CHILD = r"""
import ast, json, sys, traceback

out = {}
try:
    import triton
    from triton.runtime import interpreter
    from triton.runtime.autotuner import Autotuner
    out["triton"] = triton.__version__
    _ = interpreter.ASTTransformer, interpreter.FunctionRewriter.ast_transformer
    _ = Autotuner.prune_configs
except Exception as e:  # no interpreter or no hook for the shims in this triton
    print(json.dumps({"skip": f"triton's interpreter is not usable here: {e!r}"}))
    sys.exit(0)

_prune = Autotuner.prune_configs
Autotuner.prune_configs = lambda self, kwargs: _prune(self, kwargs)[:1]


class _LoopVars(interpreter.ASTTransformer):
    def visit_For(self, node):
        node = self.generic_visit(node)
        f = node.iter.func if isinstance(node.iter, ast.Call) else None
        dynamic = (isinstance(f, ast.Name) and f.id == "range") or (
            isinstance(f, ast.Attribute) and f.attr == "range"
        )
        if dynamic and isinstance(node.target, ast.Name):
            name = node.target.id
            cast = ast.Call(
                func=ast.Attribute(
                    value=ast.Name(id="interpreter_semantic", ctx=ast.Load()),
                    attr="to_tensor",
                    ctx=ast.Load(),
                ),
                args=[ast.Name(id=name, ctx=ast.Load()), ast.Constant(value=False)],
                keywords=[],
            )
            target = ast.Name(id=name, ctx=ast.Store())
            node.body.insert(0, ast.Assign(targets=[target], value=cast))
        return node


interpreter.FunctionRewriter.ast_transformer = _LoopVars()

import torch
import fla

sys.path.insert(0, sys.argv[1])
import fla_ref
from fla.ops.delta_rule import chunk_delta_rule
from fla.ops.delta_rule.chunk import ChunkDeltaRuleFunction
from fla.ops.gated_delta_rule import chunk_gated_delta_rule

out["fla"] = fla.__version__
out["cases"] = {}
B, H, D = 1, 2, 32


def tr(t):
    return t.transpose(1, 2)


def inputs(t, seed):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, t, H, D, generator=g)
    k = torch.nn.functional.normalize(torch.randn(B, t, H, D, generator=g), dim=-1)
    v = torch.randn(B, t, H, D, generator=g)
    beta = torch.rand(B, t, H, generator=g)
    gate = -torch.nn.functional.softplus(torch.randn(B, t, H, generator=g))
    do = torch.randn(B, t, H, D, generator=g)
    return [x.requires_grad_() for x in (q, k, v, beta, gate)], do


def compare(name, got, ref, grads=None, ref_grads=None):
    row = {"max_err": (got.float() - ref).abs().max().item(), "ref_max": ref.abs().max().item()}
    if grads is not None:
        row["grad_err"] = max((a - b).abs().max().item() for a, b in zip(grads, ref_grads))
        row["grad_ref_max"] = max(b.abs().max().item() for b in ref_grads)
    out["cases"][name] = row


def run(name, fn):
    try:
        fn()
    except Exception as e:
        interp = isinstance(e, triton.runtime.errors.InterpreterError) or "active drivers" in str(e)
        out["cases"][name] = {
            "error": traceback.format_exception_only(e)[-1].strip()[:600],
            "interpreter": interp,
        }


for t in (64, 50):  # a chunk multiple and not
    (q, k, v, beta, gate), do = inputs(t, t)

    def delta_fp32():
        o, _ = ChunkDeltaRuleFunction.apply(q, k, v, beta, D**-0.5, None, False)
        grads = torch.autograd.grad(o, (q, k, v, beta), do)
        ref = tr(fla_ref.delta_rule_chunkwise(tr(q), tr(k), tr(v), tr(beta)))
        ref_grads = torch.autograd.grad(ref, (q, k, v, beta), do)
        compare(f"chunk_delta_rule fp32 T={t}", o, ref, grads, ref_grads)

    def gated_fp32():
        o, _ = chunk_gated_delta_rule(q, k, v, gate, beta, scale=D**-0.5)
        grads = torch.autograd.grad(o, (q, k, v, beta, gate), do)
        ref = tr(fla_ref.gated_delta_rule_chunkwise(tr(q), tr(k), tr(v), tr(beta), tr(gate)))
        ref_grads = torch.autograd.grad(ref, (q, k, v, beta, gate), do)
        compare(f"chunk_gated_delta_rule fp32 T={t}", o, ref, grads, ref_grads)

    def delta_fp16():
        half = [x.detach().half() for x in (q, k, v, beta)]
        o, _ = chunk_delta_rule(*half, scale=D**-0.5)
        ref = tr(fla_ref.delta_rule_chunkwise(*(tr(x.float()) for x in half)))
        compare(f"chunk_delta_rule fp16 T={t}", o, ref)

    run(f"chunk_delta_rule fp32 T={t}", delta_fp32)
    run(f"chunk_gated_delta_rule fp32 T={t}", gated_fp32)
    run(f"chunk_delta_rule fp16 T={t}", delta_fp16)

print(json.dumps(out))
"""


def test_fla_chunk_kernels_under_triton_interpreter_match_pytorch_path(tmp_path):
    env = {
        **os.environ,
        "TRITON_INTERPRET": "1",
        "TRITON_HOME": str(tmp_path),
        "TRITON_CACHE_DIR": str(tmp_path / "cache"),
        "FLA_CACHE_MODE": "disabled",
        "CUDA_VISIBLE_DEVICES": "",
        "PYTHONWARNINGS": "ignore",
    }
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(DOMAIN)],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if "skip" in result:
        pytest.skip(result["skip"])
    versions = f"triton {result['triton']}, fla {result['fla']}"
    cases = result["cases"]
    assert len(cases) == 6, cases
    errors = {name: row for name, row in cases.items() if "error" in row}
    broken = {name: row["error"] for name, row in errors.items() if not row["interpreter"]}
    assert not broken, f"{versions}: fla's kernels raised outside the interpreter: {broken}"
    if errors:
        name, row = next(iter(errors.items()))
        pytest.skip(f"triton's interpreter ({versions}) cannot run fla's {name}: {row['error']}")
    for name, row in cases.items():
        tol = FP16_TOL if "fp16" in name else FP32_TOL
        assert row["max_err"] <= tol * (1 + row["ref_max"]), (versions, name, row)
        if "grad_err" in row:
            assert row["grad_err"] <= tol * (1 + row["grad_ref_max"]), (versions, name, row)
    print(f"{versions}: {elapsed:.1f} s, " + json.dumps(cases))
