#!/usr/bin/env bash
# Issue 14, session 17b: the same warm two-H200 machine after session17.sh, with its last ~12 device minutes.
#   G70 (GPU 1): Llama-3.1-70B compressed-tensors W4A16 (GPTQ-style, Marlin) at TP=1: chat at 1.5 and 3 req/s,
#       bursts of 16/32/64 at 1,024 tokens, the grid if time is left.
#   Q32 (GPU 0): Qwen2.5-32B INT8 W8A8: chat at 3 and 6 req/s, the same bursts.
# Held out, as session17.sh.   setsid nohup bash benchmarks/gpu/session17b.sh > /tmp/s17b.log 2>&1 < /dev/null &
set -u
S=${S17:-/tmp/s17}; mkdir -p "$S"
source benchmarks/gpu/vllm_env.sh
export PYTHONUNBUFFERED=1
gpu=$(gpu_kind)
source benchmarks/gpu/engine_timings.sh
GRID_BY=${GRID_BY:-420}
run_one() {  # tag dev port model format weight-dtype rate1 rate2
  local tag=$1 dev=$2 port=$3 model=$4 fmt=$5 wd=$6 r1=$7 r2=$8 m tok
  m=$(model_folder "/tmp/s17-models-$dev" "$model" "$fmt"); tok=$(tokenizer_folder "$m")
  export DEV=$dev PORT=$port
  if SERVE_ENV=VLLM_CACHE_ROOT=/tmp/vcache-$tag serve "$tag" "$m" "$tok" "$(meta_of "$model" "$wd" auto)"; then
    load "$tag" "chat-$r1" "$tok" "$r1"
    load "$tag" "chat-$r2" "$tok" "$r2"
    for c in 16 32 64; do burst "$tag" "$tok" "$c" 1024; done
    if [ "$SECONDS" -lt "$GRID_BY" ]; then grid "$tag" "$tok"; else echo "$tag grid skipped at $SECONDS s" >> "$S/times.txt"; fi
  fi
  stop "$tag"
}
run_one G70 1 8001 llama-3.1-70b ct-gptq gptq 1.5 3 &
run_one Q32 0 8000 qwen2.5-32b ct-int8 int8 3 6 &
wait
touch "$S/ALL_DONE_B"
