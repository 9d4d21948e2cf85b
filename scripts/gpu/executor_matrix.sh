#!/usr/bin/env bash
# GPU machine entry: the executor matrix (see executor_matrix.py). Usage: bash scripts/gpu/executor_matrix.sh [args]
# Needs torch (2.11 on the GPU machines) plus the pure-Python wheels numpy/simpy/gguf/tokenizers/safetensors;
# the repo is used from PYTHONPATH, not installed. Everything it returns goes to $OUT (default ./matrix_out).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" NCCL_NVLS_ENABLE=0
exec python scripts/gpu/executor_matrix.py --out "${OUT:-matrix_out}" "$@"
