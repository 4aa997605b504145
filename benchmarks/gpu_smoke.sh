#!/usr/bin/env bash
# GPU smoke test of the AI domains (issue 24): on a fresh CUDA machine, install the project
# and run check + explore of each AI domain's initial program at its CUDA settings, then
# print one table row per domain (time, score, kernel / device). Aim: under 8 minutes.
#
#   benchmarks/gpu_smoke.sh                  # CUDA machine: venv + pip install -e ".[domains]"
#   benchmarks/gpu_smoke.sh --no-install     # use $PYTHON (default .venv/bin/python) as is
#   benchmarks/gpu_smoke.sh --cpu-dry-run    # the same flow on CPU at tiny budgets (testable)
#   benchmarks/gpu_smoke.sh --domains linear_attention,rl_algorithm
#   GPU_SMOKE_CPU_DRY_RUN=1 benchmarks/gpu_smoke.sh   # the same as --cpu-dry-run
#
# How each domain picks its CUDA settings: linear_attention applies task.yaml's `cuda:`
# overrides itself when CUDA is available (and fla's Triton kernels run in its mixer);
# rl_algorithm trains on the GPU in bf16 whenever torch sees one (trl's placement);
# data_curation's explore stage is CPU work (n-gram scorer), its row says so.
# Every domain runs from a copy in a scratch dir ($ASI_EVOLVE_TASK_DIR), so the dry run can
# shrink its settings without touching the repository. Never needed by the test suite.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DRY="${GPU_SMOKE_CPU_DRY_RUN:-0}"
INSTALL=1
DOMAINS="linear_attention,rl_algorithm,data_curation"
STAGE_TIMEOUT="${GPU_SMOKE_STAGE_TIMEOUT:-300}"
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu-dry-run) DRY=1 ;;
    --no-install) INSTALL=0 ;;
    --domains) DOMAINS="$2"; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "gpu_smoke: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
[ "$DRY" = "1" ] && INSTALL=0

if [ "$DRY" != "1" ]; then
  if ! command -v nvidia-smi >/dev/null 2>&1 && ! ls /dev/nvidia0 >/dev/null 2>&1; then
    echo "gpu_smoke: CUDA is not available (no nvidia-smi, no /dev/nvidia0); use --cpu-dry-run on CPU" >&2
    exit 3
  fi
fi

if [ "$INSTALL" = "1" ]; then
  VENV="${GPU_SMOKE_VENV:-$ROOT/.venv-gpu-smoke}"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -e "$ROOT[domains]"
  PYTHON="$VENV/bin/python"
else
  PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
  [ -x "$PYTHON" ] || PYTHON="$(command -v python3)"
fi

if [ "$DRY" != "1" ]; then
  if ! "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_smoke: CUDA is not available to torch ($PYTHON); use --cpu-dry-run on CPU" >&2
    exit 3
  fi
fi

SCRATCH="$(mktemp -d "${TMPDIR:-/tmp}/gpu_smoke.XXXXXX")"
trap 'rm -rf "$SCRATCH"' EXIT
export ASI_EVOLVE_CACHE="$SCRATCH/cache"
DRY="$DRY" exec "$PYTHON" "$ROOT/benchmarks/gpu_smoke.py" \
  --root "$ROOT" --scratch "$SCRATCH" --domains "$DOMAINS" --stage-timeout "$STAGE_TIMEOUT"
