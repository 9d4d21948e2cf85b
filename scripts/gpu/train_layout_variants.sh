#!/usr/bin/env bash
# Issue 5, session 8: does training an n-stage drafter on the staircase of n+K stages (--layout-extra-stages K,
# more tokens in flight, each shallower) lift its acceptance at n? Session 7 found the n=3 drafter better at n=2
# than n=2's own (alpha 0.679 against 0.532, CPU, 240 prompts). One drafter per GPU, same seconds:
#   gpu 0  smollm2x3-pdm-n2  the committed n=3 weights, continued as an n=2 drafter (anchors 0,10,29,30) on the
#                            n=3 staircase (K=1)
#   gpu 1  smollm2k1-pdm-n4  the committed n=4 drafter, continued on the n=5 staircase (K=1)
#   gpu 2  smollm2c-pdm-n4   the committed n=4 drafter, continued on its own staircase: the control for gpus 1, 3
#   gpu 3  smollm2k2-pdm-n4  the committed n=4 drafter, continued on the n=6 staircase (K=2)
# Data: a new data seed (make_data, one shard per GPU) plus earlier seeds in $EXTRA_DATA (comma list). The n=4
# drafters (6 hidden indices) get the new seed plus $EXTRA_DATA_N4 only: 10.6 M tokens did not fit an H100.
# Usage (4 GPUs, model at /var/tmp/model/smol.gguf, prompts in $SPD_PROMPTS_DIR):
#   bash scripts/gpu/train_layout_variants.sh GEN_S TRAIN_S SEED   -> $OUT/ckpt.tar, $OUT/train*.log, data json
# SMOKE=1 shrinks data generation and training to a CPU test of the plumbing (warm starts included).
# (Written for session 8's narrow n=4 drafter; since session 9 the committed one is wider, so the n=4 variants here
# start from scratch, as train-draft's warm start then says, unless given --tower-ffn 640 --agg-rank 64.)
# then `python scripts/gpu/train_and_eval.py eval --checkpoints DIR ...` on the drafters of $OUT/ckpt.tar.
set -u
cd "$(dirname "$0")/../.."
gen_s=${1:?usage: train_layout_variants.sh GEN_S TRAIN_S SEED}
train_s=${2:?TRAIN_S}
seed=${3:?SEED}
model=/var/tmp/model/smol.gguf
work=${WORK:-/var/tmp/spd-train/lv}
out=${OUT:-out}
mkdir -p "$work/ckpt" "$out"

python scripts/gpu/train_and_eval.py data --model /var/tmp/model/smol.gguf --gpus "${GPUS:-4}" --data-seed "$seed" \
  --gen-budget-s "$gen_s" --self-instruct 18 --work "$work" --out "$out" ${SMOKE:+--smoke} > /dev/null || exit 1
new=$(cat "$out/data_files.txt")
all="$new${EXTRA_DATA:+,$EXTRA_DATA}"
n4data="$new${EXTRA_DATA_N4:+,$EXTRA_DATA_N4}"
echo "data (n=2): $all"
echo "data (n=4): $n4data"

# warm starts: a checkpoint directory of the same name and shape in --out-dir is continued (fresh optimizer);
# start from the committed weights every time (a rerun would otherwise continue the previous run's output)
rm -rf "$work/ckpt" && mkdir -p "$work/ckpt"
cp -r reference/checkpoints/smollm2-pdm-n3 "$work/ckpt/smollm2x3-pdm-n2"
python - "$work/ckpt/smollm2x3-pdm-n2/pdm.json" <<'EOF'
import json, sys
p = sys.argv[1]; d = json.load(open(p)); d["config"]["n"] = 2; json.dump(d, open(p, "w"), indent=1)
EOF
for p in smollm2k1 smollm2c smollm2k2; do cp -r reference/checkpoints/smollm2-pdm-n4 "$work/ckpt/$p-pdm-n4"; done

common=(--model $model --out-dir "$work/ckpt" --methods spd --budget-s "$train_s" --batch-size 32 --seed 0
        --checkpoint-every-s 60 --no-progress ${SMOKE:+--max-steps 2 --holdout 1})
CUDA_VISIBLE_DEVICES=0 python -m sim.cli train-draft "${common[@]}" --data "$all" --prefix smollm2x3 --stages 2 \
  --anchors 0,10,29,30 --layout-extra-stages 1 > "$out/train0.log" 2>&1 &
CUDA_VISIBLE_DEVICES=1 python -m sim.cli train-draft "${common[@]}" --data "$n4data" --prefix smollm2k1 --stages 4 \
  --layout-extra-stages 1 > "$out/train1.log" 2>&1 &
CUDA_VISIBLE_DEVICES=2 python -m sim.cli train-draft "${common[@]}" --data "$n4data" --prefix smollm2c --stages 4 \
  > "$out/train2.log" 2>&1 &
CUDA_VISIBLE_DEVICES=3 python -m sim.cli train-draft "${common[@]}" --data "$n4data" --prefix smollm2k2 --stages 4 \
  --layout-extra-stages 2 > "$out/train3.log" 2>&1 &
rc=0
for j in $(jobs -p); do wait "$j" || rc=1; done
tail -n 2 "$out"/train?.log
[ "$rc" = 0 ] || echo "train_layout_variants: a drafter's training failed (see $out/train*.log)" >&2
rm -rf "$work/ckpt/.work"
tar -C "$work/ckpt" -cf "$out/ckpt.tar" smollm2x3-pdm-n2 smollm2k1-pdm-n4 smollm2c-pdm-n4 smollm2k2-pdm-n4
ls -la "$out/ckpt.tar"
exit "$rc"
