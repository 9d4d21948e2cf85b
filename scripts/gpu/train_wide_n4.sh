#!/usr/bin/env bash
# Issue 5, session 9: does a wider n=4 drafter pass alpha 0.7? The committed n=4 drafter (tower FFN 256,
# aggregation rank 32, 0.681 at T=0) is widened to FFN 640 / rank 64 so that it computes the same function
# (reference/training/widen.py: new units' output weights start at zero) and training continues; session 6's
# from-scratch comparison gave the wider shape +0.024. One drafter per GPU, same seconds, same data:
#   gpu 0  smollm2w-pdm-n4    widened, lr 1e-3, batch 32
#   gpu 1  smollm2wl-pdm-n4   widened, lr 3e-4 (a gentler continuation)
#   gpu 2  smollm2c-pdm-n4    the committed shape continued, lr 1e-3: the control for the new data alone
#   gpu 3  smollm2wb-pdm-n4   widened, lr 1e-3, batch 64
# Data: a new data seed (train_and_eval.py data, one shard per GPU) plus $EXTRA_DATA (comma list; 7.3 M tokens in all is
# what fits an 80-GB card for a drafter with 6 hidden indices).
# Usage (4 GPUs, model at /var/tmp/model/smol.gguf, prompts in $SPD_PROMPTS_DIR):
#   bash scripts/gpu/train_wide_n4.sh GEN_S TRAIN_S SEED
#   -> $OUT/ckpt-a.tar (w, wl), $OUT/ckpt-b.tar (c, wb): a device call returns files of at most 16 MiB;
#      $OUT/logs.tar (train and data-generation logs, the data's provenance JSON)
# SMOKE=1 shrinks data generation and training to a CPU test of the plumbing (widening included).
set -u
cd "$(dirname "$0")/../.."
gen_s=${1:?usage: train_wide_n4.sh GEN_S TRAIN_S SEED}
train_s=${2:?TRAIN_S}
seed=${3:?SEED}
work=${WORK:-/var/tmp/spd-train/wide}
out=${OUT:-out}
mkdir -p "$work" "$out"

python scripts/gpu/train_and_eval.py data --model /var/tmp/model/smol.gguf --gpus "${GPUS:-4}" --data-seed "$seed" \
  --gen-budget-s "$gen_s" --self-instruct 18 --work "$work" --out "$out" ${SMOKE:+--smoke} > /dev/null || exit 1
new=$(cat "$out/data_files.txt")
data="$new${EXTRA_DATA:+,$EXTRA_DATA}"
echo "data: $data"

# every variant starts from the committed n=4 weights (a rerun would otherwise continue the previous run's output)
rm -rf "$work/ckpt" && mkdir -p "$work/ckpt"
for p in smollm2w smollm2wl smollm2c smollm2wb; do cp -r reference/checkpoints/smollm2-pdm-n4 "$work/ckpt/$p-pdm-n4"; done

common=(--model /var/tmp/model/smol.gguf --out-dir "$work/ckpt" --methods spd --stages 4 --data "$data"
        --budget-s "$train_s" --seed 0 --checkpoint-every-s 60 --no-progress ${SMOKE:+--max-steps 2 --holdout 1})
wide=(--tower-ffn 640 --agg-rank 64)
CUDA_VISIBLE_DEVICES=0 python -m sim.cli train-draft "${common[@]}" "${wide[@]}" --prefix smollm2w --batch-size 32 \
  --lr 1e-3 > "$out/train0.log" 2>&1 &
CUDA_VISIBLE_DEVICES=1 python -m sim.cli train-draft "${common[@]}" "${wide[@]}" --prefix smollm2wl --batch-size 32 \
  --lr 3e-4 > "$out/train1.log" 2>&1 &
CUDA_VISIBLE_DEVICES=2 python -m sim.cli train-draft "${common[@]}" --prefix smollm2c --batch-size 32 \
  --lr 1e-3 > "$out/train2.log" 2>&1 &
CUDA_VISIBLE_DEVICES=3 python -m sim.cli train-draft "${common[@]}" "${wide[@]}" --prefix smollm2wb --batch-size 64 \
  --lr 1e-3 > "$out/train3.log" 2>&1 &
rc=0
for j in $(jobs -p); do wait "$j" || rc=1; done
tail -n 2 "$out"/train?.log
[ "$rc" = 0 ] || echo "train_wide_n4: a drafter's training failed (see $out/train*.log)" >&2
rm -rf "$work/ckpt/.work"
tar -C "$work/ckpt" -cf "$out/ckpt-a.tar" smollm2w-pdm-n4 smollm2wl-pdm-n4
tar -C "$work/ckpt" -cf "$out/ckpt-b.tar" smollm2c-pdm-n4 smollm2wb-pdm-n4
(cd "$out" && tar -cf logs.tar --remove-files data.log data_files.txt train*.log data*_seed"$seed".json)
ls -la "$out"
exit "$rc"
