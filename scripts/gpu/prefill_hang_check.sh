#!/usr/bin/env bash
# GPU check of the shared-process deadlock fixes (docs/perf-notes.md, sessions 4-5): the AR pipeline and SPD at
# n=4, one stage per GPU, controller + stage 1 sharing GPU 0's process, prompts of different lengths. A kernel
# launch of stage 1 can block while rank 0's NCCL receive spins on the same GPU (a new prompt length's first
# launch; eager decode steps), so rank 0 waits for stage 1's launch first (stage.prefill_needs_launch_signal,
# stage.step_needs_launch_signal). With CUDA graphs and eager (--no-cuda-graphs).
# Usage: bash scripts/gpu/prefill_hang_check.sh PROMPTS.jsonl
set -u
cd "$(dirname "$0")/../.."
prompts=${1:?usage: prefill_hang_check.sh PROMPTS.jsonl}
out=${OUT:-hang_out}
mkdir -p "$out"
run() { # name method extra...
  local name=$1 method=$2; shift 2
  timeout 150 python -m reference.commands.run --model random:smollm2-135m --method "$method" --stages 4 \
    --placement 0,0,1,2,3 --device cuda --prompts "$prompts" --max-new-tokens 48 --seed 0 --warmup 1 \
    --trace cycle --out "$out/$name" "$@" > "$out/$name.log" 2>&1
  echo "$name rc=$? $(grep -m1 'tok/s' "$out/$name.log")"
}
run arp4_graphs ar_pipeline
run arp4_eager ar_pipeline --no-cuda-graphs
run spd4_eager spd --draft replay --alpha 0.8 --no-cuda-graphs
run spd4_graphs spd --draft replay --alpha 0.8
