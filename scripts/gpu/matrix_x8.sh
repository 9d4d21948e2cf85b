#!/usr/bin/env bash
# GPU machine entry for issue 9: the 8-GPU plan of executor_matrix.py (docs/multi-gpu-plan.md).
# Usage: bash scripts/gpu/matrix_x8.sh --call 1   (later arguments override, e.g. --plan x4-default-model --gguf PATH)
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" NCCL_NVLS_ENABLE=0
exec python scripts/gpu/executor_matrix.py --plan x8 --budget-s 540 --out "${OUT:-matrix_out}" "$@"
