#!/usr/bin/env bash
# Losslessness of SPD on the GPU with the real default model (SmolLM2-135M-Instruct) and the trained PDMs
# (issues 4 and 5). Run from the repository root on a 2-GPU machine, the repo and wheels on PYTHONPATH:
#
#   GGUF=/var/tmp/model/smol.gguf SPD_PROMPTS_DIR=$PWD/.cache/prompts bash scripts/gpu/default_model_lossless.sh "$OUT"
#
# 1. The distributed executor (`spd run`, controller + stage 1 on GPU 0, stage 2 on GPU 1, CUDA-graph stage
#    steps and draft forwards), n=2 PDM, all 240 evaluation prompts (first turn, chat template), 32 new tokens,
#    --check-lossless: AR greedy through the same pipeline first, then SPD, compared token for token.
# 2. The same on the first 24 prompts with --no-cuda-graphs (eager steps and draft): the accept/reject sequences
#    of (1) and (2) are compared offline, a check that the replayed draft computes what the eager one does.
# 3. The in-process engine's check for every trained n (2, 3, 4, 6), resuming the committed report so only
#    the prompts it did not reach are run.
# Outputs under $1: run directories (tar.gz), summaries, lossless.json, a log.
set -u
OUT=${1:?usage: default_model_lossless.sh OUT_DIR}
GGUF=${GGUF:-/var/tmp/model/smol.gguf}
PROMPTS_DIR=${SPD_PROMPTS_DIR:?set SPD_PROMPTS_DIR to the folder of the evaluation prompts}
CK=reference/checkpoints
WORK=$(mktemp -d)
cat "$PROMPTS_DIR"/mt_bench.jsonl "$PROMPTS_DIR"/gsm8k.jsonl "$PROMPTS_DIR"/humaneval.jsonl > "$WORK/all.jsonl"
wc -l "$WORK/all.jsonl"
run() {  # name, extra args...
  local name=$1; shift
  echo "== $name"
  timeout 300 python -m reference.commands.run --method spd --stages 2 --model "$GGUF" --device cuda \
    --placement 0,0,1 --prompts "$WORK/all.jsonl" --max-new-tokens 32 --draft pdm \
    --draft-checkpoint $CK/smollm2-pdm-n2 --check-lossless --trace cycle --out "$WORK/$name" "$@" 2>&1 | tail -4
  cp "$WORK/$name/summary.json" "$OUT/${name}_summary.json" 2>/dev/null
}
run lossless240_n2_pdm
run lossless24_n2_pdm_eager --limit 24 --no-cuda-graphs
tar czf "$OUT/lossless_runs.tar.gz" -C "$WORK" lossless240_n2_pdm lossless24_n2_pdm_eager 2>/dev/null
echo "== in-process engine, n = 2, 3, 4, 6 (resuming the committed report)"
timeout 200 python -m reference.training.lossless --model "$GGUF" --workers 28 --max-new-tokens 32 --budget-s 170 \
  --resume results/h100x2/lossless_inprocess_trained_n2-n6.json --out "$OUT/lossless_inprocess.json" \
  --draft $CK/smollm2-pdm-n2 --draft $CK/smollm2-pdm-n3 --draft $CK/smollm2-pdm-n4 --draft $CK/smollm2-pdm-n6 \
  2>&1 | grep -v -e "CUDA Graph is empty" -e "super().capture_end" | tail -6
