#!/usr/bin/env bash
# Issue 14, session 18b: the same warm two-H200 host after session18.sh, with its last ~10 device minutes. Session
# 17's 8B INT8 (Q8) and W4A16 (G4) again on this host, beside the FP8 control F8: prompts alone at 128-8,192 tokens
# and the closed grid, so the three 8B precisions compare on one host.
set -u
S=${S18:-/tmp/s18}; mkdir -p "$S"
source benchmarks/gpu/vllm_env.sh
export PYTHONUNBUFFERED=1
gpu=$(gpu_kind)
source benchmarks/gpu/engine_timings.sh
again() {  # tag dev port format weight-dtype
  local tag=$1 dev=$2 port=$3 fmt=$4 wd=$5 m tok
  m=$(model_folder "/tmp/s18-models-$dev" llama-3.1-8b "$fmt"); tok=$(tokenizer_folder "$m")
  export DEV=$dev PORT=$port
  if SERVE_ENV=VLLM_CACHE_ROOT=/tmp/vcache-$tag serve "$tag" "$m" "$tok" "$(meta_of llama-3.1-8b "$wd" auto)"; then
    c1_sweep "$tag" "$tok" 128 512 1024 2048 4096 8192
    grid "$tag" "$tok"
  fi
  stop "$tag"
}
again Q8 0 8000 ct-int8 int8 &
again G4 1 8001 ct-gptq gptq &
wait
touch "$S/ALL_DONE_B"
