#!/usr/bin/env bash
# Issue 5: one new training data set, one shard per visible GPU (reference.training.make_data), for the training
# scripts of scripts/gpu/. Prints the comma list of the shards it wrote; their provenance JSON goes to $OUT.
# Usage: bash scripts/gpu/gen_data.sh GEN_S SEED WORK_DIR   (model at /var/tmp/model/smol.gguf)
# SMOKE=1 shrinks it to a CPU test of the plumbing.
set -u
gen_s=${1:?usage: gen_data.sh GEN_S SEED WORK_DIR}
seed=${2:?SEED}
work=${3:?WORK_DIR}
out=${OUT:-out}
gpus=${GPUS:-4}
mkdir -p "$work" "$out"
for ((i = 0; i < gpus; i++)); do
  CUDA_VISIBLE_DEVICES=$i timeout $((gen_s + 90)) python -m reference.training.make_data --model /var/tmp/model/smol.gguf \
    --out "$work/data${i}_seed${seed}.safetensors" --seed "$seed" --shard $i/$gpus --budget-s "$gen_s" \
    --gen-batch 384 --self-instruct 18 --no-progress \
    ${SMOKE:+--topics 2 --self-instruct 1 --doc-prompts 2 --max-prompts 6 --max-new-tokens 12} > "$out/gen$i.log" 2>&1 &
done
wait
cp "$work"/data*_seed"$seed".json "$out/" 2>/dev/null
new=$(ls "$work"/data*_seed"$seed".safetensors 2>/dev/null | paste -sd, -)
[ -n "$new" ] || { echo "gen_data: no data generated (see $out/gen*.log)" >&2; exit 1; }
echo "$new"
