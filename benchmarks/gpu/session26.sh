#!/usr/bin/env bash
# Session 26, one H200 (no multi-GPU kind lent): where Mixtral INT8's capacity is. Session 22's verify of the Mixtral
# INT8 plan at 8 req/s (held out) kept up (TTFT P50 525 ms, TPOT 125 ms) where the model, with session 22c's INT8
# experts term (moe_int8_compute_penalty 3.61, solved on bursts of 1,024-token prompts at 8,192-token steps), puts 8
# req/s just past capacity: 8x pessimistic, a knife edge. Here the plan's flags (seqs 512, 16,384 tokens chunked,
# max_model_len 16,384, FP8 KV) served twice on one GPU, one after the other:
#   MXI = Mixtral INT8 W8A8 (TRITON Int8 MoE, no tuned config), MXF = Mixtral FP8 (the same host's reference).
# Each: a prompt alone at 128-8,192 tokens (the prompt step by M, INT8 against FP8: what the penalty is at the small
# steps an open loop runs), bursts of 32 and 64 at 1,024 (session 22c's fit points, this host), then chat open loops
# with the engine steps scraped: MXI at 6, 8, 10, 9 req/s, MXF at 8 and 12. The open loops are held out.
#   setsid nohup bash benchmarks/gpu/session26.sh > /tmp/s26.log 2>&1 < /dev/null &   # poll $S/ALL_DONE, tar $S
set -u
S=${S26:-/tmp/s26}; mkdir -p "$S"
source benchmarks/gpu/vllm_env.sh
export PYTHONUNBUFFERED=1
gpu=$(gpu_kind "$S/nvidia-smi.txt")
MAX_BATCHED=16384; MAX_LEN=16384
source benchmarks/gpu/engine_timings.sh
export SCRAPE=1
one() {  # tag format weight-dtype rates...
  local tag=$1 fmt=$2 wd=$3 m tok r c; shift 3
  m=$(model_folder "/tmp/models-$tag" mixtral-8x7b "$fmt"); tok=$(tokenizer_folder "$m")
  export DEV=0 PORT=8000
  if SERVE_ENV=VLLM_CACHE_ROOT=/tmp/vcache-$tag serve "$tag" "$m" "$tok" \
      "$(meta_of mixtral-8x7b "$wd" fp8 '"max_num_seqs": 512')" --max-num-seqs 512 --kv-cache-dtype fp8; then
    grep -h -iE "Selected|Using .*Kernel|MoE|machete|marlin" "$S/$tag/server.log" | cut -c1-250 | sort | uniq -c > "$S/$tag/kernels.txt"
    c1_sweep "$tag" "$tok" 128 512 1024 2048 4096 8192
    for c in 32 64; do burst "$tag" "$tok" "$c" 1024; done
    for r in "$@"; do load "$tag" "chat-$r" "$tok" "$r"; done
  fi
  stop "$tag"
}
one MXI ct-int8 int8 6 8 10 9
one MXF fp8 fp8 8 12
touch "$S/ALL_DONE"
