#!/usr/bin/env bash
# Issue 5, session 6: why is the n=4 drafter (alpha 0.49 at T=0) behind n=3 (0.63) and n=6 (0.58)? Four n=4
# drafters trained side by side, one per GPU, on the same data (session 5's seed-1 shards plus a new seed-2
# generation with more self-instruct prompts), then evaluated on the same prompts:
#   gpu 0  smollm2-pdm-n4     the committed drafter, continued (warm start: same anchors, dims, vocabulary)
#   gpu 1  smollm2base-pdm-n4 the committed recipe from scratch: the control for gpus 2 and 3
#   gpu 2  smollm2anch-pdm-n4 one anchor per stage boundary (0,8,16,23,29,30): the depth-2 token gets its
#                             16-layer features instead of the 8-layer ones
#   gpu 3  smollm2wide-pdm-n4 a wider tower and aggregation (ffn 640, rank 64): capacity
# Usage (4 GPUs, model at /var/tmp/model/smol.gguf, seed-1 data in $SEED1, prompts in $SPD_PROMPTS_DIR):
#   bash scripts/gpu/train_n4_variants.sh train GEN_S TRAIN_S   -> $OUT/ckpt.tar, $OUT/acceptance_t0.json, data
#   bash scripts/gpu/train_n4_variants.sh eval                  -> $OUT/acceptance_t1.json, $OUT/lossless.json
set -u
cd "$(dirname "$0")/../.."
mode=${1:?usage: train_n4_variants.sh train GEN_S TRAIN_S | eval}
model=/var/tmp/model/smol.gguf
work=/var/tmp/spd-train/n4v
seed1=${SEED1:-/var/tmp/spd-train/seed1}
out=${OUT:-out}
mkdir -p "$work/ckpt" "$out"
variants=(smollm2-pdm-n4 smollm2base-pdm-n4 smollm2anch-pdm-n4 smollm2wide-pdm-n4)

if [ "$mode" = train ]; then
  gen_s=${2:?GEN_S}; train_s=${3:?TRAIN_S}
  for i in 0 1 2 3; do
    CUDA_VISIBLE_DEVICES=$i timeout $((gen_s + 90)) python -m reference.training.make_data --model $model \
      --out "$work/data${i}_seed2.safetensors" --seed 2 --shard $i/4 --budget-s "$gen_s" --gen-batch 384 \
      --self-instruct 18 --no-progress > "$out/gen$i.log" 2>&1 &
  done
  wait
  cp "$work"/data*_seed2.safetensors "$work"/data*_seed2.json "$out/" 2>/dev/null
  data=$(ls "$seed1"/data*_seed1.safetensors "$work"/data*_seed2.safetensors | paste -sd, -)
  echo "data: $data"
  cp -r reference/checkpoints/smollm2-pdm-n4 "$work/ckpt/"
  common=(--model $model --data "$data" --out-dir "$work/ckpt" --methods spd --stages 4 --budget-s "$train_s"
          --batch-size 32 --seed 0 --checkpoint-every-s 60 --no-progress)
  CUDA_VISIBLE_DEVICES=0 python -m sim.cli train-draft "${common[@]}" --prefix smollm2 > "$out/train0.log" 2>&1 &
  CUDA_VISIBLE_DEVICES=1 python -m sim.cli train-draft "${common[@]}" --prefix smollm2base > "$out/train1.log" 2>&1 &
  CUDA_VISIBLE_DEVICES=2 python -m sim.cli train-draft "${common[@]}" --prefix smollm2anch \
    --anchors 0,8,16,23,29,30 > "$out/train2.log" 2>&1 &
  CUDA_VISIBLE_DEVICES=3 python -m sim.cli train-draft "${common[@]}" --prefix smollm2wide \
    --tower-ffn 640 --agg-rank 64 > "$out/train3.log" 2>&1 &
  wait
  temps=0
else
  temps=1
fi

for i in 0 1 2 3; do
  CUDA_VISIBLE_DEVICES=$i python -m sim.cli eval-acceptance --model $model --draft "$work/ckpt/${variants[$i]}" \
    --temperatures $temps --max-new-tokens 256 --seed 0 --out "$out/acc_t${temps}_$i.json" --no-progress \
    > "$out/eval_t${temps}_$i.log" 2>&1 &
done
wait
for i in 0 1 2 3; do
  python -m sim.cli eval-acceptance --from "$out/acc_t${temps}_$i.json" 2>&1 | head -20
done
if [ "$mode" = eval ]; then
  drafts=(); for v in "${variants[@]}"; do drafts+=(--draft "$work/ckpt/$v"); done
  python -m reference.training.lossless --model $model "${drafts[@]}" --workers 16 --max-new-tokens 64 \
    --budget-s "${LOSSLESS_S:-200}" --out "$out/lossless.json" > "$out/lossless.log" 2>&1
  tail -5 "$out/lossless.log"
fi
tar -C "$work/ckpt" -cf "$out/ckpt.tar" "${variants[@]}"
ls -la "$out"
